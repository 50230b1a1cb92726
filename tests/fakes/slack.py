"""A stateful fake of the Slack Web API methods mailbeacon calls, on loopback, for the real
slack_sdk WebClient (`base_url`): users.lookupByEmail, conversations.open (a DM per user),
chat.postMessage (kept, with its metadata) and conversations.history. It checks the bot token,
records every call, and can answer 429 with Retry-After, as Slack's rate limits do."""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BOT_TOKEN = "xoxb-fake-bot-token"
Json = dict[str, Any]


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[Json]
    metadata: Json | None


@dataclass
class FakeSlack:
    members: dict[str, str] = field(default_factory=dict)  # email -> user id
    calls: list[tuple[str, Json]] = field(default_factory=list)  # (method, arguments)
    posted: list[Posted] = field(default_factory=list)
    _limited: dict[str, int] = field(default_factory=dict)  # method -> 429s still to answer
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                url = urlsplit(self.path)
                arguments: Json = dict(parse_qsl(url.query))
                if "json" in (self.headers.get("Content-Type") or ""):
                    arguments.update(json.loads(body or "{}"))
                else:
                    arguments.update(parse_qsl(body))
                method = url.path.removeprefix("/api/")
                status, answer, headers = fake.answer(
                    method, arguments, self.headers.get("Authorization", "")
                )
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        """The base URL to give slack_sdk's WebClient."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def rate_limit(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer 429 with Retry-After."""
        self._limited[method] = times

    def answer(self, method: str, arguments: Json, authorization: str) -> tuple[int, Json, Json]:
        self.calls.append((method, arguments))
        if authorization != f"Bearer {BOT_TOKEN}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if self._limited.get(method):
            self._limited[method] -= 1
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"}
        if method == "users.lookupByEmail":
            user = self.members.get(str(arguments.get("email", "")).lower())
            if user is None:
                return 200, {"ok": False, "error": "users_not_found"}, {}
            return 200, {"ok": True, "user": {"id": user}}, {}
        if method == "conversations.open":
            return 200, {"ok": True, "channel": {"id": f"D{arguments['users']}"}}, {}
        if method == "chat.postMessage":
            ts = f"1764200000.{next(self._ts):06d}"
            self.posted.append(
                Posted(
                    str(arguments["channel"]),
                    ts,
                    str(arguments.get("text", "")),
                    list(arguments.get("blocks") or []),
                    arguments.get("metadata"),
                )
            )
            return 200, {"ok": True, "channel": arguments["channel"], "ts": ts}, {}
        if method == "conversations.history":
            with_metadata = str(arguments.get("include_all_metadata")) in ("1", "true", "True")
            messages = [
                {
                    "type": "message",
                    "ts": p.ts,
                    "text": p.text,
                    **({"metadata": p.metadata} if with_metadata and p.metadata else {}),
                }
                for p in reversed(self.posted)
                if p.channel == arguments.get("channel")
            ]
            limit = int(arguments.get("limit") or 100)
            return 200, {"ok": True, "messages": messages[:limit]}, {}
        return 200, {"ok": False, "error": "unknown_method"}, {}

    def posted_to(self, user: str) -> list[Posted]:
        return [p for p in self.posted if p.channel == f"D{user}"]
