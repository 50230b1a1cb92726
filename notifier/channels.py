"""Where alerts go. A channel is one small class with `send` (the Channel protocol); the
composition root (mailbeacon/channels.py) names the ones this server has, and a new one is
one more entry there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from notifier.alerts import Alert
from outreach.mailbox import Mailbox, MailboxError
from outreach.maildir import build_message
from outreach.oauth import OAuthError
from store.crypto import CredentialsUnreadable


@dataclass(frozen=True)
class Recipient:
    user_id: int
    email: str
    name: str
    slack_user_id: str | None = None


class ChannelError(Exception):
    """This attempt failed; the delivery is tried again later."""


class Channel(Protocol):
    def send(self, recipient: Recipient, alert: Alert, key: str) -> None:
        """Deliver the alert. `key` is the same at every attempt of one delivery: a channel
        that can look it up sends nothing twice."""
        ...


class EmailChannel:
    """An email to the user, from their own mailbox (the one they send from)."""

    def __init__(self, mailbox_for: Callable[[Recipient], Mailbox]) -> None:
        self._mailbox_for = mailbox_for

    def send(self, recipient: Recipient, alert: Alert, key: str) -> None:
        message_id = f"<alert.{key}@mailbeacon>"
        try:
            mailbox = self._mailbox_for(recipient)
            if mailbox.find_sent(message_id) is not None:  # sent before a crash: done
                return
            message = build_message(
                sender=recipient.email,
                to=[recipient.email],
                subject=alert.title,
                html=alert.html(),
                text=f"{alert.title}\n\n{alert.details}\n",
            )
            message.replace_header("Message-ID", message_id)
            mailbox.send(message)
        except (MailboxError, OAuthError, CredentialsUnreadable) as exc:
            # A mailbox that cannot be opened (its key lost, its app not configured) is as
            # much a failed attempt as one that refuses the message.
            raise ChannelError(str(exc)) from exc
