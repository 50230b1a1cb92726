"""The Gmail mailbox: sends raw MIME from the user's own account through the Gmail API
(google-api-python-client) and finds again what it already sent.

Gmail's limits, and how they are respected:
- 100 recipients a message (To, Cc and Bcc together): refused here, before the API is called.
- 2,000 messages a day for a Workspace user (500 for a free or trial account), shared with the
  web UI and SMTP. Over it Gmail answers 429 "User-rate limit exceeded ... (Mail sending)", for
  hours, or 403 dailyLimitExceeded: both are DailyLimitReached, and the campaign pauses.
- 250 quota units a second per user, 100 of them per send: 429, or 403 rateLimitExceeded /
  userRateLimitExceeded, is a MailboxError with the `Retry-After` it came with.
The client never retries on its own (`num_retries=0`): retries and backoff are the campaign
runner's, which knows what is in flight.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses, parsedate_to_datetime
from http.client import responses
from types import TracebackType
from typing import Any, cast

import httplib2
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError, RefreshError
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

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

MAX_RECIPIENTS = 100
# messages.send costs 100 quota units of the 250 a user may spend each second.
MAX_SENDS_PER_SECOND = 2
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
DAILY_LIMIT_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded"})


class GmailMailbox:
    """One account. Not thread-safe (httplib2 is not): one sender, one instance; close() it."""

    def __init__(
        self,
        address: str,
        credentials: Credentials,
        *,
        api_endpoint: str | None = None,
        http: httplib2.Http | None = None,
        clock: Clock = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        max_per_second: int = MAX_SENDS_PER_SECOND,
    ) -> None:
        self.address = address
        self._clock = clock
        self._pacer = Pacer(max_per_second, timedelta(seconds=1), clock, sleep)
        # build() takes credentials or an http, not both: a given http is authorized here.
        auth: dict[str, Any] = (
            {"credentials": credentials}
            if http is None
            else {"http": AuthorizedHttp(credentials, http=http)}
        )
        self._service = build(
            "gmail",
            "v1",
            static_discovery=True,  # the discovery document ships with the library
            cache_discovery=False,
            client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
            **auth,
        )
        self._messages = self._service.users().messages()

    def close(self) -> None:
        self._service.close()

    def __enter__(self) -> GmailMailbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        ours = message["Message-ID"]
        if ours is None:
            raise ValueError("a message to send needs a Message-ID: find_sent() looks it up")
        count = len(recipients(message))
        if count > MAX_RECIPIENTS:
            raise PermanentFailure(
                f"{message['Subject']!r} is addressed to {count} people: Gmail refuses a message "
                f"to more than {MAX_RECIPIENTS} recipients (To, Cc and Bcc together); send it "
                "as several messages"
            )
        self._pacer.wait()
        body = {"raw": base64.urlsafe_b64encode(message.as_bytes()).decode("ascii")}
        if thread_id is not None:
            body["threadId"] = thread_id
        sent = self._execute(self._messages.send(userId="me", body=body))
        try:
            message_id = self._message_id(sent["id"]) or str(ours)
        except MailboxError:
            # Gmail has taken the message: failing now would make the runner send it again.
            # Ours stands in; it is what Gmail reports unless Gmail replaced it.
            message_id = str(ours)
        return Delivered(message_id, sent["id"], sent.get("threadId"))

    def find_sent(self, message_id: str) -> Delivered | None:
        # Gmail's search takes the id without its angle brackets (rfc822msgid:abc@example.com).
        query = f"rfc822msgid:{message_id.strip().strip('<>')}"
        found = self._execute(self._messages.list(userId="me", q=query, includeSpamTrash=True))
        if not found.get("messages"):
            return None
        first = found["messages"][0]
        return Delivered(message_id, first["id"], first.get("threadId"))

    def incoming(
        self, cursor: str | None, threads: Sequence[str] = ()
    ) -> tuple[list[Incoming], str | None]:
        """What arrived in the inbox since `cursor` (a historyId), and the new cursor. With no
        cursor, or one Gmail no longer keeps (404), it resyncs: every message not sent by us in
        `threads` (our emails' threads), and the newest inbox messages for bounces, which start
        threads of their own. Reply sync records each message once: nothing is counted twice."""
        users = self._service.users()
        latest = str(self._execute(users.getProfile(userId="me"))["historyId"])
        ids = self._added_since(cursor) if cursor is not None else None
        if ids is None:
            ids = self._in_threads(threads)
            listed = self._execute(
                self._messages.list(userId="me", labelIds=["INBOX"], maxResults=RESYNC_MESSAGES)
            )
            ids = list(dict.fromkeys([*ids, *(m["id"] for m in listed.get("messages", []))]))
        found = []
        for provider_id in ids:
            message = self._execute(self._messages.get(userId="me", id=provider_id, format="raw"))
            raw = base64.urlsafe_b64decode(message["raw"] + "=" * (-len(message["raw"]) % 4))
            found.append(Incoming(provider_id, raw, message.get("threadId")))
        return found, latest

    def _in_threads(self, threads: Sequence[str]) -> list[str]:
        ids: list[str] = []
        for thread_id in threads:
            request = (
                self._service.users().threads().get(userId="me", id=thread_id, format="minimal")
            )
            thread = self._execute(request, missing_ok=True)  # another mailbox's thread: none
            ids += [
                m["id"] for m in thread.get("messages", []) if "SENT" not in m.get("labelIds", [])
            ]
        return ids

    def _added_since(self, cursor: str) -> list[str] | None:
        """Ids of inbox messages added after the historyId; None when it is too old (404)."""
        ids: list[str] = []
        page: str | None = None
        while True:
            request = (
                self._service.users()
                .history()
                .list(
                    userId="me",
                    startHistoryId=cursor,
                    historyTypes=["messageAdded"],
                    labelId="INBOX",
                    pageToken=page,
                )
            )
            answer = self._execute(request, missing_ok=True)
            if not answer:  # every real answer has a historyId
                return None
            for record in answer.get("history", []):
                ids += [added["message"]["id"] for added in record.get("messagesAdded", [])]
            page = answer.get("nextPageToken")
            if not page:
                return list(dict.fromkeys(ids))

    def _message_id(self, provider_id: str) -> str | None:
        """The Message-ID Gmail reports: it may have set its own."""
        found = self._execute(
            self._messages.get(
                userId="me", id=provider_id, format="metadata", metadataHeaders=["Message-ID"]
            )
        )
        for header in found.get("payload", {}).get("headers", []):
            if header["name"].lower() == "message-id":
                return str(header["value"])
        return None

    def _execute(self, request: Any, *, missing_ok: bool = False) -> dict[str, Any]:
        """The answer; with missing_ok, an empty dict for a 404."""
        try:
            return cast(dict[str, Any], request.execute(num_retries=0))
        except HttpError as exc:
            if missing_ok and exc.resp.status == 404:
                return {}
            raise gmail_error(
                exc.resp.status, exc.content, exc.resp.get("retry-after"), self._clock()
            ) from exc
        except RefreshError as exc:
            raise MailboxError(
                f"Google no longer accepts the authorization of {self.address} ({exc}): "
                "connect the mailbox again"
            ) from exc
        except (httplib2.HttpLib2Error, GoogleAuthError, OSError) as exc:
            raise MailboxError(f"could not reach Gmail for {self.address}: {exc!r}") from exc


def recipients(message: EmailMessage) -> list[str]:
    values = [str(value) for name in ("To", "Cc", "Bcc") for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


def gmail_error(
    status: int, content: bytes, retry_after: str | None, now: datetime
) -> MailboxError:
    """What an error answer from Gmail means for the sender."""
    try:
        error = json.loads(content)["error"]
        message = str(error.get("message") or "")
        reasons = {str(e.get("reason")) for e in error.get("errors", []) if isinstance(e, dict)}
    except (ValueError, KeyError, TypeError, AttributeError):
        message, reasons = "", set()
    named = f" {', '.join(sorted(reasons))}" if reasons else ""
    said = f"Gmail answered {status}{named}: {message or responses.get(status, 'no explanation')}"
    if status in (403, 429) and (reasons & DAILY_LIMIT_REASONS or mentions_a_day(message)):
        return DailyLimitReached(said)
    if status == 429 or status >= 500 or (status == 403 and reasons & RATE_LIMIT_REASONS):
        return MailboxError(said, seconds_until(retry_after, now))
    if status == 401:
        return MailboxError(f"{said} (connect the mailbox again)")
    return PermanentFailure(said)  # a 400 for this message will be a 400 every time


def mentions_a_day(message: str) -> bool:
    text = message.lower()
    return "daily" in text or "per day" in text or "(mail sending)" in text


def seconds_until(retry_after: str | None, now: datetime) -> float | None:
    """A `Retry-After` value (seconds, or an HTTP date) as seconds from now."""
    if retry_after is None:
        return None
    if retry_after.strip().isdigit():
        return float(retry_after)
    try:
        when = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
