"""A stateful fake of Microsoft Graph mail (drafts from MIME, send, Sent Items, $filter on
internetMessageId, Inbox delta rounds, raw MIME by $value) and of the Microsoft identity
platform (OpenID configuration and a token endpoint that redeems refresh tokens), served
through httpx.MockTransport: no sockets."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs

import httpx

from outreach.outlook import MsalHttpClient

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "fake-client-secret"
TENANT_ID = "72f988bf-0000-0000-0000-000000000000"
AUTHORITY_HOST = "https://login.fake.example"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIdentity:
    """The Microsoft identity platform for one app: redeems the refresh tokens it issued (and
    those given to `grant`), rotating them as Microsoft does, and issues access tokens that a
    FakeGraph accepts."""

    def __init__(self, address: str, *, tenant: str = "common") -> None:
        self.address = address
        self.tenant = tenant
        self.requests: list[httpx.Request] = []
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self._serial = itertools.count(1)

    def grant(self) -> str:
        """A refresh token, as `mailbeacon connect outlook` would have stored it."""
        token = f"rt-{next(self._serial)}"
        self.refresh_tokens.add(token)
        return token

    def expire_refresh_token(self, token: str) -> None:
        """That refresh token stops working, as Microsoft's do 90 days after they were issued."""
        self.refresh_tokens.discard(token)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (as when one is revoked)."""
        self.access_tokens.clear()

    def http_client(self) -> MsalHttpClient:
        return MsalHttpClient(httpx.Client(transport=httpx.MockTransport(self.handle)))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        base = f"/{self.tenant}"
        if (
            request.method == "GET"
            and request.url.path == f"{base}/v2.0/.well-known/openid-configuration"
        ):
            return httpx.Response(200, json=self._openid_configuration())
        if request.method == "POST" and request.url.path == f"{base}/oauth2/v2.0/token":
            form = {key: values[0] for key, values in parse_qs(request.content.decode()).items()}
            return self._token(form)
        return httpx.Response(
            404, json={"error": "not_found", "error_description": request.url.path}
        )

    def _openid_configuration(self) -> dict[str, Any]:
        authority = f"{AUTHORITY_HOST}/{self.tenant}"
        return {
            "issuer": f"{AUTHORITY_HOST}/{TENANT_ID}/v2.0",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
            "token_endpoint": f"{authority}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
            "response_types_supported": ["code", "id_token", "code id_token"],
        }

    def _token(self, form: dict[str, str]) -> httpx.Response:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return oauth_error(
                401, "invalid_client", "AADSTS7000215: Invalid client secret provided."
            )
        if form.get("grant_type") != "refresh_token":
            return oauth_error(400, "unsupported_grant_type", "AADSTS70003: not supported here.")
        if form.get("refresh_token") not in self.refresh_tokens:
            return oauth_error(
                400,
                "invalid_grant",
                "AADSTS70008: The provided authorization code or refresh token has expired due "
                "to inactivity.",
            )
        serial = next(self._serial)
        access_token, refresh_token = f"at-{serial}", f"rt-{serial}"
        self.access_tokens.add(access_token)
        self.refresh_tokens.add(refresh_token)  # the old one stays valid until it expires
        body = token_answer(
            form,
            access_token,
            refresh_token,
            {"preferred_username": self.address},
            expires=True,
        )
        return httpx.Response(200, json=body)


def token_answer(
    form: dict[str, str],
    access_token: str,
    refresh_token: str,
    claims: dict[str, Any],
    *,
    expires: bool = False,
) -> dict[str, Any]:
    """A Microsoft identity platform token answer, with an unsigned ID token (msal does not
    check the signature) carrying the standard claims plus `claims`."""
    now = int(time.time())
    all_claims = {
        "aud": CLIENT_ID,
        "iss": f"{AUTHORITY_HOST}/{TENANT_ID}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "sub": "fake-subject",
        "oid": "00000000-0000-0000-0000-00000000beef",
        "tid": TENANT_ID,
        "ver": "2.0",
        **claims,
    }
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": form.get("scope", ""),
        "expires_in": 3600,
        "access_token": access_token,
        "refresh_token": refresh_token,
        "id_token": ".".join(
            [_b64url(b'{"alg":"none","typ":"JWT"}'), _b64url(json.dumps(all_claims).encode()), ""]
        ),
    }
    if expires:
        body["ext_expires_in"] = 3600
    if form.get("client_info") == "1":
        body["client_info"] = _b64url(
            json.dumps({"uid": all_claims["oid"], "utid": TENANT_ID}).encode()
        )
    return body


def oauth_error(status: int, error: str, description: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "error_description": description})


@dataclass
class GraphMessage:
    id: str
    folder: str  # drafts, outbox, sentitems or inbox
    mime: bytes
    internet_message_id: str
    conversation_id: str
    subject: str
    change: int = 0  # the Inbox change counter when it arrived there
    received: datetime = field(default_factory=lambda: datetime.now(UTC))

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "internetMessageId": self.internet_message_id,
            "conversationId": self.conversation_id,
            "subject": self.subject,
            "isDraft": self.folder == "drafts",
            "parentFolderId": self.folder,
        }


@dataclass
class _Failure:
    status: int
    code: str
    retry_after: float | None
    times: int
    on: str


@dataclass
class FakeGraph:
    """The /me mail of one mailbox, accepting the access tokens `identity` issued."""

    identity: FakeIdentity
    daily_limit: int | None = None  # sends allowed before ErrorSubmissionQuotaExceeded
    requests: list[httpx.Request] = field(default_factory=list)
    responses: list[httpx.Response] = field(default_factory=list)  # one for each request
    messages: dict[str, GraphMessage] = field(default_factory=dict)  # in order of arrival
    sends: int = 0
    delta_page_size: int = 2  # Inbox delta items a page, so that rounds span nextLinks
    _failures: list[_Failure] = field(default_factory=list)
    # Inbox delta state: a counter each change raises, the changes that were removals, and a
    # generation that expire_delta() moves on (tokens of an older one answer 410).
    _changes: int = 0
    _removed: dict[str, int] = field(default_factory=dict)
    _generation: int = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def fail_next(
        self,
        status: int,
        code: str,
        retry_after: float | None = None,
        times: int = 1,
        *,
        on: str = "",
    ) -> None:
        """The next `times` requests whose "METHOD /path" contains `on` fail with Graph's error
        shape (and a Retry-After header when given)."""
        self._failures.append(_Failure(status, code, retry_after, times, on))

    def put(self, mime: bytes, folder: str) -> GraphMessage:
        """A message already in a folder, as a sender that stopped midway would have left it."""
        message = self._message(mime, folder)
        self.messages[message.id] = message
        return message

    def deliver(
        self, mime: bytes, conversation_id: str | None = None, received: datetime | None = None
    ) -> GraphMessage:
        """A message arriving in the Inbox (at `received`, else now): in `conversation_id` when
        given, else in the conversation of the message it answers (by In-Reply-To and
        References), else a new one."""
        message = self._message(mime, "inbox")
        if conversation_id is not None:
            message.conversation_id = conversation_id
        if received is not None:
            message.received = received
        self._changes += 1
        message.change = self._changes
        self.messages[message.id] = message
        return message

    def expire_delta(self) -> None:
        """Every deltaLink and nextLink handed out so far answers 410 (syncStateNotFound)."""
        self._generation += 1

    def in_folder(self, folder: str) -> list[GraphMessage]:
        return [message for message in self.messages.values() if message.folder == folder]

    def sent(self) -> list[EmailMessage]:
        return [_parse(message.mime) for message in self.in_folder("sentitems")]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = self._answer(request)
        self.responses.append(response)
        return response

    def _answer(self, request: httpx.Request) -> httpx.Response:
        authorization = request.headers.get("Authorization", "")
        if authorization.removeprefix("Bearer ") not in self.identity.access_tokens:
            return _graph_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        # Ids must survive the move from Drafts to Sent Items: every request asks for them.
        assert request.headers.get("Prefer") == 'IdType="ImmutableId"', request.headers
        route = f"{request.method} {request.url.path.removeprefix('/v1.0')}"
        for failure in self._failures:
            if failure.times > 0 and failure.on in route:
                failure.times -= 1
                headers = (
                    {} if failure.retry_after is None else {"Retry-After": str(failure.retry_after)}
                )
                return _graph_error(failure.status, failure.code, f"fake {failure.code}", headers)
        if route == "POST /me/messages":
            return self._create(request)
        if match := re.fullmatch(r"POST /me/messages/([^/]+)/send", route):
            return self._send(match[1])
        if match := re.fullmatch(r"GET /me/messages/([^/]+)", route):
            return self._get(match[1])
        if match := re.fullmatch(r"GET /me/messages/([^/]+)/\$value", route):
            return self._value(match[1])
        if route == "GET /me/mailFolders/inbox/messages/delta":
            return self._delta(request)
        if match := re.fullmatch(r"DELETE /me/messages/([^/]+)", route):
            return self._delete(match[1])
        if match := re.fullmatch(r"GET /me/mailFolders/([^/]+)/messages", route):
            return self._list(match[1], request.url.params.get("$filter"))
        return _graph_error(400, "BadRequest", f"fake Graph has no {route}")

    def _create(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Content-Type") != "text/plain":
            return _graph_error(400, "BadRequest", "fake Graph only creates drafts from MIME")
        try:
            mime = base64.b64decode(request.content, validate=True)
        except binascii.Error:
            return _graph_error(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME."
            )
        message = self.put(mime, "drafts")
        return httpx.Response(201, json=message.resource())

    def _send(self, message_id: str) -> httpx.Response:
        message = self.messages.get(message_id)
        if message is None:
            return _item_not_found()
        if message.folder != "drafts":
            return _graph_error(400, "ErrorInvalidOperation", "The item was already sent.")
        if self.daily_limit is not None and self.sends >= self.daily_limit:
            return _graph_error(
                403,
                "ErrorSubmissionQuotaExceeded",
                "Cannot submit message: the sender's submission quota was exceeded "
                "(SubmissionQuotaExceededException).",
            )
        self.sends += 1
        # The immutable id stays; the item moves to the end, as the newest in Sent Items.
        del self.messages[message_id]
        message.folder = "sentitems"
        self.messages[message_id] = message
        return httpx.Response(202)

    def _get(self, message_id: str) -> httpx.Response:
        message = self.messages.get(message_id)
        return (
            _item_not_found() if message is None else httpx.Response(200, json=message.resource())
        )

    def _value(self, message_id: str) -> httpx.Response:
        message = self.messages.get(message_id)
        if message is None:
            return _item_not_found()
        return httpx.Response(200, content=message.mime, headers={"Content-Type": "text/plain"})

    def _delete(self, message_id: str) -> httpx.Response:
        message = self.messages.pop(message_id, None)
        if message is None:
            return _item_not_found()
        if message.folder == "inbox":
            self._changes += 1
            self._removed[message_id] = self._changes
        return httpx.Response(204)

    def _delta(self, request: httpx.Request) -> httpx.Response:
        """One page of an Inbox delta round. With neither token, every message in the Inbox;
        $deltatoken=G.N: the changes after N; $skiptoken=G.N.S: that round from its S-th item.
        `$filter=receivedDateTime ge <time>` (kept in the links handed out) leaves out older
        messages."""
        params = request.url.params
        token = params.get("$skiptoken") or params.get("$deltatoken")
        received_since = datetime.min.replace(tzinfo=UTC)
        if "$filter" in params:
            match = re.fullmatch(r"receivedDateTime ge (\S+Z)", params["$filter"])
            if match is None:
                return _graph_error(400, "BadRequest", f"Unsupported filter: {params['$filter']}")
            received_since = datetime.fromisoformat(match[1])
        since, start = 0, 0
        if token is not None:
            generation, since, *rest = (int(part) for part in token.split("."))
            if generation != self._generation:
                return _graph_error(
                    410,
                    "syncStateNotFound",
                    "The sync state generation is not found. Restart the sync without a token.",
                )
            start = rest[0] if rest else 0
        items: list[dict[str, Any]] = [
            {
                "@odata.type": "#microsoft.graph.message",
                "id": m.id,
                "conversationId": m.conversation_id,
                "receivedDateTime": f"{m.received:%Y-%m-%dT%H:%M:%SZ}",
            }
            for m in self.in_folder("inbox")
            if m.change > since and m.received >= received_since
        ]
        if since:  # an initial round lists only what is there
            items += [
                {
                    "@odata.type": "#microsoft.graph.message",
                    "id": i,
                    "@removed": {"reason": "deleted"},
                }
                for i, change in self._removed.items()
                if change > since
            ]
        page = items[start : start + self.delta_page_size]
        kept = {"$filter": params["$filter"]} if "$filter" in params else {}
        link = request.url.copy_with(query=None).copy_merge_params(kept)
        body: dict[str, Any] = {"value": page}
        if start + self.delta_page_size < len(items):
            skip = f"{self._generation}.{since}.{start + self.delta_page_size}"
            body["@odata.nextLink"] = str(link.copy_merge_params({"$skiptoken": skip}))
        else:
            delta = f"{self._generation}.{self._changes}"
            body["@odata.deltaLink"] = str(link.copy_merge_params({"$deltatoken": delta}))
        return httpx.Response(200, json=body)

    def _list(self, folder: str, filter_: str | None) -> httpx.Response:
        found = self.in_folder(folder)
        if filter_ is not None:
            match = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", filter_)
            if match is None:
                return _graph_error(400, "BadRequest", f"Invalid filter clause: {filter_}")
            wanted = match[1].replace("''", "'")
            found = [message for message in found if message.internet_message_id == wanted]
        return httpx.Response(200, json={"value": [message.resource() for message in found]})

    def _message(self, mime: bytes, folder: str) -> GraphMessage:
        parsed = _parse(mime)
        internet_message_id = str(parsed["Message-ID"] or f"<{uuid.uuid4().hex}@fake.outlook>")
        return GraphMessage(
            id="AAMkAG" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode(),
            folder=folder,
            mime=mime,
            internet_message_id=internet_message_id,
            conversation_id=self._conversation(parsed),
            subject=str(parsed["Subject"] or ""),
        )

    def _conversation(self, parsed: EmailMessage) -> str:
        # A reply joins the conversation of the message it answers; anything else starts one.
        references = f"{parsed['In-Reply-To'] or ''} {parsed['References'] or ''}".split()
        for message in self.messages.values():
            if message.internet_message_id in references:
                return message.conversation_id
        return "AAQkAD" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()


def _parse(mime: bytes) -> EmailMessage:
    # MIME travels with CRLF line ends; Graph, like any mail client, reads lines, not "\r".
    message = message_from_bytes(mime.replace(b"\r\n", b"\n"), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "innerError": {"request-id": "fake"}}}
    return httpx.Response(status, json=body, headers=headers)


def _item_not_found() -> httpx.Response:
    return _graph_error(
        404, "ErrorItemNotFound", "The specified object was not found in the store."
    )
