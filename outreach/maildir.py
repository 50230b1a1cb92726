"""The embedded default mailbox: sent mail goes to the `.Sent` folder of a Maildir (Maildir++
layout, as mbsync and offlineimap keep it), which any mail client can read."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid
from pathlib import Path

from outreach.mailbox import Delivered


def build_message(
    *,
    sender: str,
    to: list[str],
    subject: str,
    html: str,
    text: str,
    cc: list[str] | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = " ".join([*(references or []), in_reply_to])
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class MaildirMailbox:
    def __init__(self, folder: Path, address: str) -> None:
        self.folder = folder
        self.address = address

    def _sent(self) -> mailbox.Maildir:
        root = mailbox.Maildir(self.folder, create=True)
        return (
            root.add_folder("Sent")
            if "Sent" not in root.list_folders()
            else root.get_folder("Sent")
        )

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        # Maildir delivery writes into tmp/ and renames into new/: a message is there whole or
        # not at all, so find_sent() after a crash is exact.
        sent = self._sent()
        try:
            key = sent.add(message)
        finally:
            sent.close()
        return Delivered(message["Message-ID"], key, thread_id)

    def find_sent(self, message_id: str) -> Delivered | None:
        sent = self._sent()
        parser = BytesHeaderParser()
        try:
            for key in sent.iterkeys():
                with sent.get_file(key) as f:
                    if parser.parse(f)["Message-ID"] == message_id:  # type: ignore[arg-type]
                        return Delivered(message_id, key)
        finally:
            sent.close()
        return None
