"""The embedded default mailbox: sent mail is written to a Maildir that any mail client,
mbsync or offlineimap can read."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path


def build_message(
    *, sender: str, to: list[str], subject: str, html: str, text: str, cc: list[str] | None = None
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def deliver(folder: Path, message: EmailMessage) -> str:
    """Write the message into the Maildir (created if needed); returns its Maildir key."""
    box = mailbox.Maildir(folder, create=True)
    try:
        return box.add(message)
    finally:
        box.close()
