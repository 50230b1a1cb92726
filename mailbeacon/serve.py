"""`mailbeacon serve`: the app under uvicorn; the recorder is flushed on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Literal

import uvicorn
from sqlalchemy import Engine

from mailbeacon.server import create_app
from mailbeacon.settings import Settings
from mailbeacon.slackbot import slack_state
from mailbeacon.worker import start_jobs

GRACEFUL_SHUTDOWN_SECONDS = 5


def uvicorn_config(
    settings: Settings,
    engine: Engine,
    host: str,
    port: int,
    log_level: str = "info",
    *,
    run_jobs: bool = True,
) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings, engine, run_jobs=run_jobs),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=settings.server.trusted_proxies,
        access_log=False,  # hits are recorded as events; a log of IPs would leak them
        log_level=log_level,
        lifespan="on",
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
    # The event loop and the recorder's writer thread hand the interpreter lock over every
    # 1 ms instead of 5 ms: bench/tracking.py measured +17% hits/s and half the p99.
    sys.setswitchinterval(0.001)
    print(f"mailbeacon: serving on http://{host}:{port} (tracking at {settings.tracking.base_url})")
    print(f"mailbeacon: {slack_state(settings)}")
    config = uvicorn_config(settings, engine, host, port, run_jobs=role == "all")
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
