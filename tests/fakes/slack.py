"""A stateful fake of the Slack Web API methods mailbeacon calls, on loopback, for the real
slack_sdk clients (`base_url`): auth.test, users.info, users.lookupByEmail, conversations.open
(a DM per user), chat.postMessage (kept, with its metadata), chat.update and
conversations.history, and files_upload_v2's three steps (files.getUploadURLExternal, a POST of
the bytes to the URL it gave, files.completeUploadExternal); and response URLs (`/response/<n>`),
as Slack gives one with each command. It checks the bot token (not scopes), records every call,
and can answer 429 with Retry-After, as Slack's rate limits do. `signed()` signs a request to
the app as Slack would."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"  # app-level: Socket Mode's apps.connections.open
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"
Json = dict[str, Any]


def signed(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The headers Slack sends with `body`: its timestamp and signature."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body) or ""
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def command_body(text: str, user: str, response_url: str, command: str = "/beacon") -> str:
    """A slash command as Slack posts it (form-encoded)."""
    return urlencode(
        {
            "token": "unused",
            "team_id": "T0001",
            "channel_id": "C0001",
            "user_id": user,
            "command": command,
            "text": text,
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    )


def action_body(action_id: str, value: str, user: str, response_url: str) -> str:
    """A button press as Slack posts it: `payload=` with the JSON."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "channel": {"id": "C0001"},
        "response_url": response_url,
        "trigger_id": "1.2.4",
        "actions": [{"action_id": action_id, "value": value, "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)})


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[Json]
    metadata: Json | None


@dataclass
class Uploaded:
    id: str
    filename: str
    length: int  # as announced in files.getUploadURLExternal
    alt_txt: str | None
    data: bytes | None = None  # what was posted to the upload URL
    title: str | None = None  # the rest as files.completeUploadExternal said
    channel: str | None = None
    initial_comment: str | None = None


@dataclass
class FakeSlack:
    members: dict[str, str] = field(default_factory=dict)  # email -> user id
    responses: list[tuple[str, Json]] = field(default_factory=list)  # (response URL, message)
    # More methods, by name: (arguments) -> the answer. Other fakes extend this one so.
    methods: dict[str, Callable[[Json], Json]] = field(default_factory=dict)
    calls: list[tuple[str, Json]] = field(default_factory=list)  # (method, arguments)
    posted: list[Posted] = field(default_factory=list)
    files: list[Uploaded] = field(default_factory=list)  # uploads completed, in order
    _uploads: dict[str, Uploaded] = field(default_factory=dict)  # by file id, not yet complete
    _limited: dict[str, int] = field(default_factory=dict)  # method -> 429s still to answer
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _file_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
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
                data = self.rfile.read(length)
                url = urlsplit(self.path)
                if url.path.startswith("/upload/"):  # the file's bytes, raw, as Slack's edge
                    self._reply(*fake.upload(url.path.removeprefix("/upload/"), data))
                    return
                body = data.decode()
                arguments: Json = dict(parse_qsl(url.query))
                if "json" in (self.headers.get("Content-Type") or ""):
                    arguments.update(json.loads(body or "{}"))
                else:
                    arguments.update(parse_qsl(body))
                if url.path.startswith("/response/"):
                    fake.responses.append((url.path, json.loads(body or "{}")))
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    return
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

            def _reply(self, status: int, text: str) -> None:
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # bursts of response-URL posts, as Slack takes them

        self._server = Server(("127.0.0.1", 0), Handler)
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

    def response_url(self, name: str = "1") -> str:
        """A response URL that this fake keeps what is posted to."""
        return self.url.replace("/api/", f"/response/{name}")

    def said(self, name: str = "1") -> list[Json]:
        """What was posted to that response URL, in order."""
        return [message for path, message in self.responses if path == f"/response/{name}"]

    def upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        """A POST to an upload URL: kept until files.completeUploadExternal."""
        self.calls.append(("upload", {"file_id": file_id, "length": len(data)}))
        uploaded = self._uploads.get(file_id)
        if uploaded is None:
            return 404, "not found"
        uploaded.data = data
        return 200, f"OK - {len(data)}"

    def rate_limit(self, method: str, times: int = 1) -> None:
        """The next `times` calls of `method` answer 429 with Retry-After."""
        self._limited[method] = times

    def answer(self, method: str, arguments: Json, authorization: str) -> tuple[int, Json, Json]:
        self.calls.append((method, arguments))
        token = APP_TOKEN if method.startswith("apps.") else BOT_TOKEN
        if authorization != f"Bearer {token}":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        if self._limited.get(method):
            self._limited[method] -= 1
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"}
        if method in self.methods:
            return 200, self.methods[method](arguments), {}
        if method == "auth.test":
            return 200, {"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": "T0001"}, {}
        if method == "users.info":
            emails = {user: email for email, user in self.members.items()}
            email = emails.get(str(arguments.get("user")))
            if email is None:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            profile = {"email": email, "real_name": email.split("@")[0].title()}
            return 200, {"ok": True, "user": {"id": arguments["user"], "profile": profile}}, {}
        if method == "chat.update":
            for p in self.posted:
                if p.channel == arguments.get("channel") and p.ts == arguments.get("ts"):
                    p.text = str(arguments.get("text", ""))
                    p.blocks = list(arguments.get("blocks") or [])
                    return 200, {"ok": True, "channel": p.channel, "ts": p.ts}, {}
            return 200, {"ok": False, "error": "message_not_found"}, {}
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
        if method == "files.getUploadURLExternal":
            if not arguments.get("filename") or not str(arguments.get("length", "")).isdigit():
                return 200, {"ok": False, "error": "invalid_arguments"}, {}
            file_id = f"F{next(self._file_ids):08d}"
            self._uploads[file_id] = Uploaded(
                file_id,
                str(arguments["filename"]),
                int(arguments["length"]),
                arguments.get("alt_txt"),
            )
            upload_url = self.url.replace("/api/", f"/upload/{file_id}")
            return 200, {"ok": True, "upload_url": upload_url, "file_id": file_id}, {}
        if method == "files.completeUploadExternal":
            return 200, self._complete(arguments), {}
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

    def _complete(self, arguments: Json) -> Json:
        listed = arguments.get("files")
        wanted = json.loads(listed) if isinstance(listed, str) else listed
        if not wanted:
            return {"ok": False, "error": "invalid_arguments"}
        found = [self._uploads.get(str(f.get("id"))) for f in wanted]
        if any(u is None or u.data is None for u in found):
            return {"ok": False, "error": "file_not_found"}
        done: list[Json] = []
        for f, uploaded in zip(wanted, found, strict=True):
            assert uploaded is not None
            del self._uploads[uploaded.id]
            uploaded.title = f.get("title") or uploaded.filename
            uploaded.channel = arguments.get("channel_id") or arguments.get("channels")
            uploaded.initial_comment = arguments.get("initial_comment")
            self.files.append(uploaded)
            done.append({"id": uploaded.id, "name": uploaded.filename, "title": uploaded.title})
        return {"ok": True, "files": done}

    def posted_to(self, user: str) -> list[Posted]:
        return [p for p in self.posted if p.channel == f"D{user}"]

    def files_to(self, user: str) -> list[Uploaded]:
        return [f for f in self.files if f.channel == f"D{user}"]
