"""Sending through any SMTP server (send only: an SMTP server cannot be asked what it sent).

In flight at a crash: `find_sent` cannot ask the server, so our own record decides and the
message is sent again. A duplicate needs a crash in the few milliseconds between the server's
"250 OK" and our commit; the other mailboxes close even that gap.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

from outreach.mailbox import DailyLimitReached, Delivered, MailboxError, PermanentFailure

# What servers say when a mailbox may send no more today (Gmail, Microsoft 365, Postfix
# policy daemons): "550 5.4.5 Daily user sending quota exceeded", "554 5.2.0 …SubmissionQuota".
DAILY_LIMIT_MARKERS = ("5.4.5", "quota", "daily", "limit exceeded")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    timeout: float = 30.0


class SmtpMailbox:
    def __init__(self, address: str, settings: SmtpSettings) -> None:
        self.address = address
        self._settings = settings

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        try:
            with self._connect() as smtp:
                # Addresses refused while others were accepted come back later as bounces.
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(
                f"every recipient was refused: {_refusals(exc.recipients)}"
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _error(exc.smtp_code, exc.smtp_error) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise MailboxError(
                f"cannot reach {self._settings.host}:{self._settings.port}: {exc}"
            ) from None
        return Delivered(message["Message-ID"], message["Message-ID"], thread_id)

    def find_sent(self, message_id: str) -> Delivered | None:
        return None

    def _connect(self) -> smtplib.SMTP:
        s = self._settings
        if s.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if s.username:
            smtp.login(s.username, s.password)
        return smtp


def _error(code: int, reply: bytes | str) -> MailboxError:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    message = f"the SMTP server answered {code} {text}"
    if code < 500:
        return MailboxError(message)  # 4xx: try again later
    if any(marker in text.lower() for marker in DAILY_LIMIT_MARKERS):
        return DailyLimitReached(message)
    return PermanentFailure(message)


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{who} ({code} {reply.decode(errors='replace')})"
        for who, (code, reply) in recipients.items()
    )
