"""`mailbeacon serve`: the app under uvicorn; the hit journal is synced on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Literal

import uvicorn
from sqlalchemy import Engine
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mailbeacon.server import create_app
from mailbeacon.settings import Settings
from mailbeacon.slackbot import slack_state
from mailbeacon.worker import start_jobs

GRACEFUL_SHUTDOWN_SECONDS = 5
# What a client may take: a request head of at most 64 KiB, sent within 10 s of connecting
# (or of the previous response), and 5 s of idle keep-alive between requests.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
REQUEST_HEAD_SECONDS = 10.0
KEEP_ALIVE_SECONDS = 5


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the fast one), with the two bounds it lacks: a request head
    of at most MAX_REQUEST_HEAD_BYTES (else 431 and the connection is closed), sent within
    REQUEST_HEAD_SECONDS (else the connection is closed). A request being answered (an open
    /alerts stream) is not cut."""

    _head_deadline: asyncio.TimerHandle | None = None
    _head_bytes: int | None = 0  # None: the head is complete, its request is being answered
    _head_since = 0.0  # when the awaited head could start (loop time)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        """One timer per connection, moved on only when it fires: not a timer per request."""
        self._head_bytes = 0
        self._head_since = self.loop.time()
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_at(
                self._head_since + REQUEST_HEAD_SECONDS, self._head_overdue
            )

    def _head_overdue(self) -> None:
        self._head_deadline = None
        if self._head_bytes is None or self.transport.is_closing():
            return  # a request is being answered: its end awaits the next head
        deadline = self._head_since + REQUEST_HEAD_SECONDS
        if self.loop.time() >= deadline:
            self.transport.close()
        else:
            self._head_deadline = self.loop.call_at(deadline, self._head_overdue)

    def _refuse_head(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()


def uvicorn_config(
    settings: Settings,
    engine: Engine,
    host: str,
    port: int,
    log_level: str = "info",
    *,
    run_jobs: bool = True,
    load_hits: bool = True,
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, engine, run_jobs=run_jobs, load_hits=load_hits),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.server.trusted_proxies,
        access_log=False,  # hits are recorded as events; a log of IPs would leak them
        log_level=log_level,
        lifespan="on",
        # httptools (h11 measured 30% fewer hits/s), with the limits it lacks added.
        http=BoundedHttpProtocol,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # An open /alerts page never ends its stream: at shutdown, requests get this long to
        # finish, then the streams are cut (their pages reconnect to another server).
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


Role = Literal["all", "web", "worker"]


def serve(settings: Settings, engine: Engine, role: Role = "all") -> int:
    """`all`: the HTTP endpoints and the jobs (reply sync, alerts, digests), for one machine.
    `web`: only the endpoints, for as many processes as the load needs. `worker`: only the
    jobs; several may run, and one at a time is active (mailbeacon.worker.Worker)."""
    if role == "worker":
        return asyncio.run(_work(settings, engine))
    host, port = settings.server.host, settings.server.port
    # A thread doing the database work of a command hands the interpreter lock back to the
    # event loop every 1 ms instead of 5 ms, so hits are not held behind it.
    sys.setswitchinterval(0.001)
    print(f"mailbeacon: serving on http://{host}:{port} (tracking at {settings.tracking.base_url})")
    print(f"mailbeacon: {slack_state(settings)}")
    config = uvicorn_config(settings, engine, host, port, run_jobs=role == "all")
    # What is built by now lives as long as the process: the collector need not walk it again
    # on each full collection, which held every answer for 50-100 ms (bench/tracking.py).
    gc.freeze()
    uvicorn.Server(config).run()
    return 0


async def _work(settings: Settings, engine: Engine) -> int:
    jobs = start_jobs(settings, engine)
    state = "active" if jobs.worker.active else "standing by for the active worker"
    print(f"mailbeacon: worker {jobs.worker.owner} started, {state}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await jobs.stop()
    print("mailbeacon: worker stopped", flush=True)
    return 0


@contextlib.contextmanager
def running_in_thread(config: uvicorn.Config) -> Iterator[uvicorn.Server]:
    """Run a server in a background thread until the block ends (the demo and tests)."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mailbeacon-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
