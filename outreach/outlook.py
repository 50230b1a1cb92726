"""The Outlook mailbox: Microsoft Graph through httpx, tokens through msal. A message is sent as a
draft created from our own MIME and then sent, so the recipient gets exactly the bytes we
planned; with immutable ids the draft's id is also the id of its copy in Sent Items."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import msal
from msal.exceptions import MsalServiceError

from outreach.mailbox import (
    RESYNC_MESSAGES,
    DailyLimitReached,
    Delivered,
    MailboxError,
    PermanentFailure,
)
from outreach.pacing import Pacer
from store.clock import Clock, utcnow
from tracking.inbound import Incoming
from tracking.replies import RESYNC_WINDOW

GRAPH_URL = "https://graph.microsoft.com/v1.0"
SCOPES = ["https://graph.microsoft.com/Mail.Send", "https://graph.microsoft.com/Mail.ReadWrite"]
# Exchange Online accepts 30 messages a minute from one mailbox; beyond that it queues or refuses.
MAX_SENDS_PER_MINUTE = 30

# Graph errors after which this mailbox can send nothing for hours: the campaign pauses rather
# than retrying. The recipient-rate limit (10,000 a day) surfaces as Exchange's
# SubmissionQuotaExceededException, in the code or only in the message; a full mailbox cannot
# even save the draft.
_LIMIT_CODES = frozenset(
    {"ErrorSubmissionQuotaExceeded", "ErrorQuotaExceeded", "ErrorMessageSubmissionBlocked"}
)
_LIMIT_TEXT = "SubmissionQuotaExceeded"
INBOX_DELTA = "/me/mailFolders/inbox/messages/delta"
# A listed Inbox message: its conversationId and receivedDateTime (ISO 8601, UTC).
_Listed = tuple[str | None, str]


class MsalHttpClient:
    """msal's `http_client` interface over an httpx.Client: sign-in and Graph share one HTTP
    library (httpx.Response already has the status_code, text, headers and raise_for_status()
    msal reads)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.client.get(url, params=_present(params), headers=_present(headers))

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | str | None = None,
        headers: Mapping[str, str | None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        if isinstance(data, str):
            return self.client.post(
                url, params=_present(params), content=data, headers=_present(headers)
            )
        return self.client.post(
            url, params=_present(params), data=_present(data), headers=_present(headers)
        )

    def close(self) -> None:
        self.client.close()


def _present(values: Mapping[str, Any] | None) -> dict[str, Any]:
    # msal passes None for headers and fields it has no value for; httpx would send them empty.
    return {key: value for key, value in (values or {}).items() if value is not None}


class GraphTokens:
    """Access tokens for one Outlook mailbox, from the refresh token `mailbeacon connect outlook`
    stored. msal keeps the access token until it expires. Microsoft sends a new refresh token with
    every new access token, and the one stored at sign-in expires after 90 days: each new one goes
    to `on_new_refresh_token`, so the stored one is always the newest."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        refresh_token: str,
        address: str,
        tenant: str = "common",
        authority_host: str = "https://login.microsoftonline.com",
        http_client: Any = None,
        on_new_refresh_token: Callable[[str], None] | None = None,
    ) -> None:
        self.address = address
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._authority = f"{authority_host.rstrip('/')}/{tenant}"
        self._http_client = http_client or MsalHttpClient(httpx.Client(timeout=30))
        self._on_new_refresh_token = on_new_refresh_token
        self._app: Any = None

    def access_token(self, *, refresh: bool = False) -> str:
        """A valid access token; `refresh` when Graph refused the one msal had cached."""
        try:
            app = self._application()
            result = None
            accounts = app.get_accounts()
            if accounts:
                result = app.acquire_token_silent(
                    SCOPES, account=accounts[0], force_refresh=refresh
                )
            if not result or "access_token" not in result:
                result = app.acquire_token_by_refresh_token(self._refresh_token, scopes=SCOPES)
        except (httpx.HTTPError, MsalServiceError) as exc:
            raise MailboxError(
                f"could not reach Microsoft sign-in for {self.address}: {exc}"
            ) from exc
        if "access_token" in result:
            self._keep(result.get("refresh_token"))
            return str(result["access_token"])
        reason = f"{result.get('error')}: {result.get('error_description')}"
        if result.get("error") == "invalid_client":
            raise MailboxError(
                f"Microsoft refused mailbeacon's Outlook app credentials ({reason}): check the "
                "Outlook client id and client secret in the configuration (secrets expire)"
            )
        raise MailboxError(
            f"Outlook sign-in expired for {self.address} ({reason}): "
            f"run `mailbeacon connect outlook --as {self.address}` again"
        )

    def _keep(self, refresh_token: str | None) -> None:
        if refresh_token and refresh_token != self._refresh_token:
            self._refresh_token = refresh_token
            if self._on_new_refresh_token is not None:
                self._on_new_refresh_token(refresh_token)

    def _application(self) -> Any:
        # Built on first use: msal fetches the tenant's OpenID configuration when it starts.
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._client_secret,
                    authority=self._authority,
                    # The authority is given whole (a national cloud, or a local fake in tests):
                    # no asking login.microsoftonline.com whether it knows it.
                    instance_discovery=False,
                    http_client=self._http_client,
                )
            except ValueError as exc:  # msal's word for an authority it cannot use
                raise MailboxError(f"Outlook sign-in is misconfigured: {exc}") from exc
        return self._app


class OutlookMailbox:
    """One Outlook mailbox. Requests go one at a time (a sync client), well inside Graph's four
    concurrent requests per mailbox; sends are paced to `max_per_minute`."""

    def __init__(
        self,
        address: str,
        tokens: GraphTokens,
        *,
        base_url: str = GRAPH_URL,
        transport: httpx.BaseTransport | None = None,
        max_per_minute: int = MAX_SENDS_PER_MINUTE,
        clock: Clock = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.address = address
        self._tokens = tokens
        self._http = httpx.Client(
            base_url=base_url,
            transport=transport,
            headers={"Prefer": 'IdType="ImmutableId"'},
            timeout=30,
        )
        self._clock = clock
        self._pacer = Pacer(max_per_minute, timedelta(minutes=1), clock, sleep)
        # Message-ID -> what its draft becomes once sent, while a send of it is unfinished:
        # a retry sends the same draft instead of leaving one behind per attempt.
        self._drafts: dict[str, Delivered] = {}

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        # Graph threads a MIME message by its own In-Reply-To and References: thread_id (a
        # conversationId) has nothing to add.
        message_id = str(message["Message-ID"])
        self._pacer.wait()
        draft = self._drafts.get(message_id)
        if draft is None:
            draft = self._create_draft(message)
            self._drafts[message_id] = draft
        path = f"/me/messages/{quote(draft.provider_message_id, safe='')}/send"
        sent = self._request("POST", path, missing_ok=True)
        del self._drafts[message_id]
        if sent.status_code == 404:  # deleted in Outlook meanwhile: the retry makes a new one
            raise MailboxError(f"the draft of {message_id} was deleted before it was sent")
        return draft

    def find_sent(self, message_id: str) -> Delivered | None:
        # Sent Items, or the Outbox while Exchange is still submitting it.
        for folder in ("sentitems", "outbox"):
            for item in self._find(folder, message_id):
                return _delivered(item, message_id)
        # A draft made just before the sender stopped was never sent: delete it, so the retry
        # sends one fresh draft and the recipient gets the message once.
        for item in self._find("drafts", message_id):
            self._request("DELETE", f"/me/messages/{quote(item['id'], safe='')}", missing_ok=True)
        self._drafts.pop(message_id, None)
        return None

    def incoming(
        self, cursor: str | None, threads: Sequence[str] = ()
    ) -> tuple[list[Incoming], str | None]:
        """What changed in the Inbox since `cursor` (a deltaLink), and the new deltaLink. With
        no cursor, or one Graph no longer knows (410 Gone: syncStateNotFound, resyncRequired),
        a fresh delta round lists the Inbox of the resync window, and its messages in `threads`
        (our emails' conversations) and the newest others (for bounces) are read. Reply sync
        records each message once: nothing is counted twice."""
        changed = self._delta(cursor) if cursor is not None else None
        fresh = changed is None
        if changed is None:
            changed = self._delta(_fresh_round(self._clock() - RESYNC_WINDOW))
        if changed is None:
            raise MailboxError("Microsoft Graph answered 410 Gone to a fresh Inbox delta round")
        items, delta_link = changed
        if fresh:
            items = _worth_reading(items, threads)
        found = []
        for message_id, (conversation_id, _) in items.items():
            path = f"/me/messages/{quote(message_id, safe='')}/$value"
            raw = self._request("GET", path, missing_ok=True)
            if raw.status_code != 404:  # deleted since the delta round saw it: nothing to read
                found.append(Incoming(message_id, raw.content, conversation_id))
        return found, delta_link

    def _delta(self, url: str) -> tuple[dict[str, _Listed], str] | None:
        """Every page of one delta round from `url` (a path or an absolute nextLink or
        deltaLink): message id -> (conversationId, receivedDateTime), and the closing
        deltaLink; None for 410."""
        items: dict[str, _Listed] = {}
        while True:
            response = self._request("GET", url, accept=(410,))
            if response.status_code == 410:
                return None
            page = response.json()
            for item in page.get("value", []):
                if "@removed" in item:  # gone from the Inbox: nothing to read
                    items.pop(item["id"], None)
                else:
                    items[item["id"]] = (
                        item.get("conversationId"),
                        item.get("receivedDateTime") or "",
                    )
            if "@odata.nextLink" not in page:
                return items, str(page["@odata.deltaLink"])
            url = str(page["@odata.nextLink"])

    def close(self) -> None:
        self._http.close()

    def _create_draft(self, message: EmailMessage) -> Delivered:
        mime = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        response = self._request(
            "POST",
            "/me/messages",
            content=base64.b64encode(mime),
            headers={"Content-Type": "text/plain"},
        )
        # Graph keeps the MIME's Message-ID as internetMessageId; what it says is what is sent.
        return _delivered(response.json(), str(message["Message-ID"]))

    def _find(self, folder: str, message_id: str) -> list[dict[str, Any]]:
        query = {
            "$filter": f"internetMessageId eq {odata_string(message_id)}",
            "$select": "id,internetMessageId,conversationId",
        }
        # Spaces as %20, not the form encoding's "+", which OData does not read as a space.
        query_string = urlencode(query, quote_via=quote, safe="$,")
        response = self._request("GET", f"/me/mailFolders/{folder}/messages?{query_string}")
        found: list[dict[str, Any]] = response.json()["value"]
        return found

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        accept: Collection[int] = (),
    ) -> httpx.Response:
        """`path` is relative to the Graph base URL, or an absolute URL Graph handed out (a
        nextLink or deltaLink), used as is. A status in `accept` is answered, not raised."""
        # A 401 means the cached access token was revoked or expired early: refresh it, once.
        for refresh in (False, True):
            token = self._tokens.access_token(refresh=refresh)
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError as exc:
                raise MailboxError(f"could not reach Microsoft Graph: {exc}") from exc
            if response.status_code != 401:
                break
        if (
            response.is_success
            or (missing_ok and response.status_code == 404)
            or response.status_code in accept
        ):
            return response
        raise graph_error(response, self.address)


def _delivered(item: Mapping[str, Any], message_id: str) -> Delivered:
    return Delivered(
        item.get("internetMessageId") or message_id, item["id"], item.get("conversationId")
    )


def odata_string(value: str) -> str:
    """An OData string literal: quoted, with quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


def graph_error(response: httpx.Response, address: str) -> MailboxError:
    """What a failed Graph response means for the campaign sender."""
    try:
        error = response.json()["error"]
        code, text = str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        code, text = "", response.text[:200]
    status = response.status_code
    if code in _LIMIT_CODES or _LIMIT_TEXT in code or _LIMIT_TEXT in text:
        return DailyLimitReached(f"{text} ({code})")
    if status == 429 or status >= 500:
        return MailboxError(
            f"Microsoft Graph is busy ({status} {code}): {text}",
            retry_after=_retry_after(response),
        )
    if status == 401:
        return MailboxError(
            f"Microsoft Graph refused the sign-in for {address} ({code}: {text}): "
            f"run `mailbeacon connect outlook --as {address}` again"
        )
    # Any other 4xx will be refused the same way every time: that email fails, the rest go on.
    return PermanentFailure(f"Microsoft Graph refused the request ({status} {code}): {text}")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None  # absent, or an HTTP date (Graph sends seconds)
    return seconds if seconds >= 0 else None


def _fresh_round(since: datetime) -> str:
    """A delta round from the start, of the Inbox messages received since then: the only
    filter Graph takes on a message delta."""
    query = {
        "$select": "id,conversationId,receivedDateTime",
        "$filter": f"receivedDateTime ge {since:%Y-%m-%dT%H:%M:%SZ}",
    }
    return f"{INBOX_DELTA}?{urlencode(query, quote_via=quote, safe='$,:')}"


def _worth_reading(items: dict[str, _Listed], threads: Sequence[str]) -> dict[str, _Listed]:
    """Of a fresh round: the messages in our threads, and the newest RESYNC_MESSAGES others."""
    ours = set(threads)
    others = sorted(
        (message_id for message_id, (conversation, _) in items.items() if conversation not in ours),
        key=lambda message_id: items[message_id][1],
        reverse=True,
    )
    skipped = set(others[RESYNC_MESSAGES:])
    return {message_id: item for message_id, item in items.items() if message_id not in skipped}
