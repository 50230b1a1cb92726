"""What every mailbox (gmail, outlook, smtp, maildir) offers the campaign sender."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

# A resync (the provider forgot our cursor) reads our threads, and this many of the newest other
# inbox messages for bounces, which start threads of their own.
RESYNC_MESSAGES = 500


@dataclass(frozen=True)
class Delivered:
    message_id: str  # the RFC Message-ID the recipient sees
    provider_message_id: str
    thread_id: str | None = None


class MailboxError(Exception):
    """The provider failed or refused; `retry_after` (seconds) when it said when to retry."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DailyLimitReached(MailboxError):
    """The mailbox may send no more today: the campaign pauses and resumes later."""


class PermanentFailure(MailboxError):
    """This message will never go out as it is (a refused address, say): it is marked failed
    and the campaign goes on with the next."""


class Mailbox(Protocol):
    address: str

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered: ...

    def find_sent(self, message_id: str) -> Delivered | None:
        """The message with this Message-ID if the provider already has it (the one that was
        in flight when a sender stopped), so it is never sent twice."""
        ...
