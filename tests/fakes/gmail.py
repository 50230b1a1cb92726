"""A stateful fake of the Gmail REST API (v1, the part mailbeacon uses) on a real loopback HTTP
server, so tests drive the real google-api-python-client against it through `api_endpoint`."""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, MIMEPart
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

Json = dict[str, Any]

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
MESSAGES = {  # what Gmail says for each reason
    "rateLimitExceeded": "Resource has been exhausted (e.g. check quota).",
    "userRateLimitExceeded": "User-rate limit exceeded.",
    "dailyLimitExceeded": "Daily user sending limit exceeded.",
    "notFound": "Requested entity was not found.",
    "backendError": "Backend Error",
    "authError": "Request had invalid authentication credentials.",
}
USAGE_LIMITS = {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"}
HIDDEN_LABELS = {"SPAM", "TRASH"}
PAGE_SIZE = 100


class GmailError(Exception):
    """Answered as Gmail's JSON error body."""

    def __init__(
        self, status: int, reason: str, message: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message or MESSAGES.get(reason) or HTTPStatus(status).phrase)
        self.status, self.reason, self.retry_after = status, reason, retry_after

    def response(self) -> tuple[int, dict[str, str], Json]:
        message = str(self)
        domain = "usageLimits" if self.reason in USAGE_LIMITS else "global"
        error = {
            "code": self.status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": self.reason}],
            "status": STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return self.status, headers, {"error": error}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    history_id: int
    internal_date: int  # ms since the epoch, as Gmail counts

    @property
    def email(self) -> EmailMessage:
        return parse(self.raw)

    @property
    def message_id(self) -> str:
        return str(self.email["Message-ID"] or "").strip()


@dataclass
class _Failure:
    error: GmailError
    times: int
    only: str | None


@dataclass
class FakeGmail:
    """One mailbox (`address`) that accepts `Authorization: Bearer {token}` only."""

    address: str = "me@us.example"
    token: str = "fake-token"
    daily_limit: int | None = None  # sends accepted before 403 dailyLimitExceeded
    replace_message_ids: bool = False  # assign Gmail's own Message-ID even when one is set
    requests: list[Request] = field(default_factory=list, init=False)
    errors: list[str] = field(default_factory=list, init=False)  # the fake's own crashes

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: dict[str, StoredMessage] = {}
        self._threads: dict[str, list[str]] = {}
        self._history: list[Json] = []
        self._history_id = 1000
        self._oldest_history_id = self._history_id
        self._ids = itertools.count(0x18F0000000000000)
        self._failures: list[_Failure] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeGmail:
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,))
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self.errors and exc is None:
            raise AssertionError("the fake Gmail crashed:\n" + "\n".join(self.errors))

    @property
    def url(self) -> str:
        """The `api_endpoint` to give the client."""
        assert self._server is not None, "use the fake in a with block"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- test hooks --------------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        reason: str,
        retry_after: int | None = None,
        times: int = 1,
        *,
        message: str | None = None,
        only: str | None = None,
    ) -> None:
        """Answer the next `times` requests (those starting `only`, e.g. "GET /gmail/v1/users/me/
        messages/", when given) with this error instead."""
        with self._lock:
            error = GmailError(status, reason, message, retry_after)
            self._failures.append(_Failure(error, times, only))

    def deliver(
        self, raw: bytes, thread_id: str | None = None, label_ids: Iterable[str] = ("INBOX",)
    ) -> StoredMessage:
        """Drop an incoming message (a reply, an auto-reply, a bounce) into the mailbox. Without
        `thread_id` it joins the thread of a message it names in In-Reply-To or References."""
        with self._lock:
            if thread_id is None:
                thread_id = self._referenced_thread(parse(raw))
            return self._store(raw, thread_id, list(label_ids))

    def sent(self) -> list[EmailMessage]:
        with self._lock:
            return [m.email for m in self._messages.values() if "SENT" in m.label_ids]

    @property
    def messages(self) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages.values())

    @property
    def history_id(self) -> int:
        return self._history_id

    def expire_history(self) -> None:
        """Gmail keeps history for a limited time: older startHistoryIds now answer 404."""
        with self._lock:
            self._oldest_history_id = self._history_id
            self._history.clear()

    # -- HTTP --------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, str], Json]:
        with self._lock:
            self.requests.append(request)
            try:
                if request.headers.get("authorization") != f"Bearer {self.token}":
                    raise GmailError(401, "authError")
                self._injected_failure(request)
                for method, pattern, handler in ROUTES:
                    match = re.fullmatch(pattern, request.path)
                    if match and request.method == method:
                        user, *names = match.groups()
                        self._check_user(user)
                        return 200, {}, handler(self, request, *names)
                raise GmailError(
                    404, "notFound", f"the fake Gmail has no {request.method} {request.path}"
                )
            except GmailError as exc:
                return exc.response()

    def _injected_failure(self, request: Request) -> None:
        for failure in self._failures:
            if failure.only is None or f"{request.method} {request.path}".startswith(failure.only):
                failure.times -= 1
                if failure.times == 0:
                    self._failures.remove(failure)
                raise failure.error

    def _check_user(self, user: str) -> None:
        if user not in ("me", self.address):
            raise GmailError(403, "forbidden", f"Delegation denied for {self.address}")

    # -- the API -----------------------------------------------------------------------------

    def _send(self, request: Request) -> Json:
        body = json.loads(request.body or b"{}")
        if "raw" not in body:
            raise GmailError(
                400,
                "invalidArgument",
                "'raw' RFC822 payload message string or uploading message via /upload/* URL "
                "required",
            )
        try:
            raw = base64.urlsafe_b64decode(body["raw"] + "=" * (-len(body["raw"]) % 4))
        except ValueError as exc:
            raise GmailError(
                400, "invalidArgument", f"Invalid value for ByteString: {exc}"
            ) from exc
        message = parse(raw)
        if not any(message.get_all(name) for name in ("To", "Cc", "Bcc")):
            raise GmailError(400, "invalidArgument", "Recipient address required")
        sent = sum("SENT" in m.label_ids for m in self._messages.values())
        if self.daily_limit is not None and sent >= self.daily_limit:
            raise GmailError(403, "dailyLimitExceeded")
        if self.replace_message_ids:
            del message["Message-ID"]
            raw = message.as_bytes()
        stored = self._store(raw, self._thread_for(message, body.get("threadId")), ["SENT"])
        return {"id": stored.id, "threadId": stored.thread_id, "labelIds": stored.label_ids}

    def _get(self, request: Request, message_id: str) -> Json:
        stored = self._messages.get(message_id)
        if stored is None:
            raise GmailError(404, "notFound")
        return resource(stored, request.query.get("format", ["full"])[0], request.query)

    def _get_thread(self, request: Request, thread_id: str) -> Json:
        if thread_id not in self._threads:
            raise GmailError(404, "notFound")
        kind = request.query.get("format", ["full"])[0]
        found = [resource(self._messages[i], kind, request.query) for i in self._threads[thread_id]]
        return {"id": thread_id, "messages": found}

    def _list(self, request: Request) -> Json:
        found = [m for m in reversed(self._messages.values()) if self._matches(m, request.query)]
        page, token = paged(found, request.query)
        listed: Json = {"resultSizeEstimate": len(found)}
        if page:
            listed["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if token:
            listed["nextPageToken"] = token
        return listed

    def _matches(self, message: StoredMessage, query: dict[str, list[str]]) -> bool:
        if query.get("includeSpamTrash") != ["true"] and HIDDEN_LABELS & set(message.label_ids):
            return False
        if not set(query.get("labelIds", [])) <= set(message.label_ids):
            return False
        for term in " ".join(query.get("q", [])).split():
            name, _, value = term.partition(":")
            if name != "rfc822msgid":
                raise GmailError(400, "invalidArgument", f"the fake Gmail cannot search {term}")
            if message.message_id.strip("<>") != value.strip("<>"):
                return False
        return True

    def _history_list(self, request: Request) -> Json:
        try:
            start = int(request.query["startHistoryId"][0])
        except (KeyError, ValueError) as exc:
            raise GmailError(400, "invalidArgument", "Invalid startHistoryId") from exc
        if start < self._oldest_history_id:
            raise GmailError(404, "notFound")
        label = request.query.get("labelId", [None])[0]
        types = request.query.get("historyTypes", ["messageAdded"])
        records = [
            record
            for record in self._history
            if int(record["id"]) > start
            and "messageAdded" in types
            and (label is None or label in record["messagesAdded"][0]["message"]["labelIds"])
        ]
        page, token = paged(records, request.query)
        listed: Json = {"historyId": str(self._history_id)}
        if page:
            listed["history"] = page
        if token:
            listed["nextPageToken"] = token
        return listed

    def _profile(self, request: Request) -> Json:
        return {
            "emailAddress": self.address,
            "messagesTotal": len(self._messages),
            "threadsTotal": len(self._threads),
            "historyId": str(self._history_id),
        }

    # -- state -------------------------------------------------------------------------------

    def _thread_for(self, message: EmailMessage, thread_id: str | None) -> str | None:
        """Gmail files a sent message into the requested thread only if its Subject matches and
        its In-Reply-To or References name a message there; otherwise it starts a new one."""
        if thread_id is None:
            return None
        if thread_id not in self._threads:
            raise GmailError(404, "notFound")
        first = self._messages[self._threads[thread_id][0]].email
        if subject_key(message) != subject_key(first):
            return None
        return thread_id if self._referenced_thread(message) == thread_id else None

    def _referenced_thread(self, message: EmailMessage) -> str | None:
        named = {
            address.strip("<>")
            for header in ("In-Reply-To", "References")
            for address in str(message.get(header, "")).split()
        }
        for stored in self._messages.values():
            if stored.message_id.strip("<>") in named:
                return stored.thread_id
        return None

    def _store(self, raw: bytes, thread_id: str | None, label_ids: list[str]) -> StoredMessage:
        message_id = f"{next(self._ids):016x}"
        if parse(raw)["Message-ID"] is None:
            newline = b"\r\n" if b"\r\n" in raw else b"\n"
            raw = f"Message-ID: <{message_id}.fake@mail.gmail.com>".encode() + newline + raw
        self._history_id += 1
        stored = StoredMessage(
            message_id,
            thread_id or message_id,  # a new thread takes the id of its first message
            raw,
            label_ids,
            self._history_id,
            int(time.time() * 1000),
        )
        self._messages[stored.id] = stored
        self._threads.setdefault(stored.thread_id, []).append(stored.id)
        added = {"id": stored.id, "threadId": stored.thread_id, "labelIds": label_ids}
        self._history.append(
            {
                "id": str(self._history_id),
                "messages": [{"id": stored.id, "threadId": stored.thread_id}],
                "messagesAdded": [{"message": added}],
            }
        )
        return stored


Handler = Callable[..., Json]
ROUTES: list[tuple[str, str, Handler]] = [
    ("POST", r"/gmail/v1/users/([^/]+)/messages/send", FakeGmail._send),
    ("GET", r"/gmail/v1/users/([^/]+)/messages", FakeGmail._list),
    ("GET", r"/gmail/v1/users/([^/]+)/messages/([^/]+)", FakeGmail._get),
    ("GET", r"/gmail/v1/users/([^/]+)/history", FakeGmail._history_list),
    ("GET", r"/gmail/v1/users/([^/]+)/threads/([^/]+)", FakeGmail._get_thread),
    ("GET", r"/gmail/v1/users/([^/]+)/profile", FakeGmail._profile),
]


def parse(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def subject_key(message: EmailMessage) -> str:
    return re.sub(r"^((re|fwd?|aw|sv)\s*:\s*)+", "", str(message["Subject"] or ""), flags=re.I)


def paged(items: list[Any], query: dict[str, list[str]]) -> tuple[list[Any], str | None]:
    start = int(query.get("pageToken", ["0"])[0])
    size = min(int(query.get("maxResults", [str(PAGE_SIZE)])[0]), 500)
    end = start + size
    return items[start:end], str(end) if end < len(items) else None


def resource(stored: StoredMessage, format: str, query: dict[str, list[str]]) -> Json:
    """A Message as messages.get answers it in each `format`."""
    message = stored.email
    text = message.get_body(preferencelist=("plain",))
    found: Json = {
        "id": stored.id,
        "threadId": stored.thread_id,
        "labelIds": stored.label_ids,
        "snippet": " ".join(text.get_content().split())[:200] if text else "",
        "historyId": str(stored.history_id),
        "internalDate": str(stored.internal_date),
        "sizeEstimate": len(stored.raw),
    }
    if format == "raw":
        found["raw"] = base64.urlsafe_b64encode(stored.raw).decode("ascii")
    elif format == "metadata":
        wanted = {name.lower() for name in query.get("metadataHeaders", [])}
        headers = [h for h in headers_of(message) if not wanted or h["name"].lower() in wanted]
        found["payload"] = {"mimeType": message.get_content_type(), "headers": headers}
    elif format == "full":
        found["payload"] = part_resource(message, "")
    elif format != "minimal":
        raise GmailError(400, "invalidArgument", f"Invalid value at 'format' ({format})")
    return found


def part_resource(part: MIMEPart, part_id: str) -> Json:
    found: Json = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": headers_of(part),
    }
    if part.get_content_maintype() == "multipart":
        found["body"] = {"size": 0}
        found["parts"] = [
            part_resource(child, f"{part_id}.{n}" if part_id else str(n))
            for n, child in enumerate(part.iter_parts())
        ]
        return found
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):  # message/rfc822 (a bounce): the enclosed message
        data = bytes(part.get_content())
    found["body"] = {"size": len(data), "data": base64.urlsafe_b64encode(data).decode("ascii")}
    return found


def headers_of(part: MIMEPart) -> list[dict[str, str]]:
    return [{"name": name, "value": str(value)} for name, value in part.items()]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that connects and never asks does not hold up shutdown for long

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            self.command,
            url.path,
            parse_qs(url.query),
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length),
        )
        try:
            status, headers, body = self.server.fake.handle(request)
        except Exception:
            self.server.fake.errors.append(traceback.format_exc())
            status, headers, body = GmailError(500, "backendError").response()
        payload = json.dumps(body).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")  # one request a connection: nothing lingers
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for every answer to finish

    def __init__(self, fake: FakeGmail) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        TCPServer.server_bind(self)  # no reverse DNS lookup of 127.0.0.1
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]
