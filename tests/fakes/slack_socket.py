"""A fake of Slack's Socket Mode, on loopback: `apps.connections.open` on a FakeSlack answers
with this fake's WebSocket URL; a client that connects is greeted with `hello`, is sent the
envelopes a test pushes (a slash command as Slack sends it), and its acks are kept. With
`answer_close=False` it never answers the client's close, as a peer gone silent would not."""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.slack import FakeSlack, Json, command_body

T = TypeVar("T")
WAIT_SECONDS = 10


class FakeSocketMode:
    def __init__(self, slack: FakeSlack, *, answer_close: bool = True) -> None:
        self.slack = slack
        self.answer_close = answer_close
        self.acks: dict[str, Json] = {}  # envelope id -> the client's ack
        self.connections = 0  # clients greeted so far
        self.closed = 0  # connections the client ended
        self._open: list[web.WebSocketResponse] = []
        self._changed = threading.Condition()
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-socket-mode")
        self._runner: web.AppRunner | None = None
        self._silent = asyncio.Event()  # set at the end: a silent fake stops holding on
        self._port = 0

    def __enter__(self) -> FakeSocketMode:
        self._thread.start()
        self._run(self._start())
        self.slack.methods["apps.connections.open"] = self._connections_open
        return self

    def __exit__(self, *exc: object) -> None:
        self.slack.methods.pop("apps.connections.open", None)
        self._run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/link/"

    def wait_connected(self, count: int = 1) -> None:
        """Until `count` clients have been greeted."""
        self._wait(lambda: self.connections >= count, f"{count} Socket Mode connection(s)")

    def wait_closed(self, count: int = 1) -> None:
        """Until the client has closed `count` connections."""
        self._wait(lambda: self.closed >= count, f"{count} closed Socket Mode connection(s)")

    def push(self, type: str, payload: Json) -> str:
        """An envelope to the newest connection; its id."""
        envelope_id = f"envelope-{next(self._ids)}"
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": type != "events_api",
        }
        self._run(self._send(envelope))
        return envelope_id

    def command(self, text: str, user: str, response_url: str, command: str = "/beacon") -> str:
        """A slash command over the socket: the fields Slack would post, as a JSON payload."""
        payload = dict(parse_qsl(command_body(text, user, response_url, command)))
        return self.push("slash_commands", payload)

    def ack(self, envelope_id: str) -> Json:
        """The client's ack of an envelope, once it has come."""
        self._wait(lambda: envelope_id in self.acks, f"the ack of {envelope_id}")
        return self.acks[envelope_id]

    # --- the server, in its own thread and loop ---------------------------------------------

    def _connections_open(self, arguments: Json) -> Json:
        return {"ok": True, "url": f"{self.url}?ticket={next(self._ids)}"}

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        self._silent.set()
        for ws in list(self._open):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoclose=self.answer_close)  # and answers pings itself
        await ws.prepare(request)
        self._open.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._open),
                "debug_info": {"host": "fake-socket-mode"},
                "connection_info": {"app_id": "A0001"},
            }
        )
        self._note(lambda: setattr(self, "connections", self.connections + 1))
        try:
            while (message := await ws.receive()).type == WSMsgType.TEXT:
                self._note(functools.partial(self._acked, json.loads(message.data)))
            if message.type == WSMsgType.CLOSE:  # the client's, not ours at the end
                self._note(lambda: setattr(self, "closed", self.closed + 1))
                await self._silent.wait()
        finally:
            self._open.remove(ws)
        return ws

    def _acked(self, ack: Json) -> None:
        self.acks[ack["envelope_id"]] = ack

    async def _send(self, envelope: Json) -> None:
        assert self._open, "no Socket Mode client is connected"
        await self._open[-1].send_json(envelope)

    def _note(self, change: Callable[[], None]) -> None:
        with self._changed:
            change()
            self._changed.notify_all()

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                assert left > 0, f"no {what} within {WAIT_SECONDS} s"
                self._changed.wait(left)

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(WAIT_SECONDS)
