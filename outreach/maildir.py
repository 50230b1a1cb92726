"""The embedded default mailbox: sent mail goes to the `.Sent` folder of a Maildir (Maildir++
layout, as mbsync and offlineimap keep it), which any mail client can read."""

from __future__ import annotations

import contextlib
import mailbox
import os
from collections.abc import Sequence
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import formatdate, make_msgid
from pathlib import Path

from outreach.mailbox import Delivered
from tracking.inbound import Incoming


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
        self._box: mailbox.Maildir | None = None
        self._sent_ids: dict[str, str] | None = None  # Message-ID -> key, built on first lookup

    def _sent(self) -> mailbox.Maildir:
        if self._box is None:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            # Mail is private: folders we create are the owner's only (as the data folder is).
            for sub in ("", "tmp", "new", "cur", ".Sent", ".Sent/tmp", ".Sent/new", ".Sent/cur"):
                (self.folder / sub).mkdir(mode=0o700, exist_ok=True)
            self._box = mailbox.Maildir(self.folder).get_folder("Sent")
        return self._box

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        # Maildir delivery writes into tmp/ and renames into new/: a message is there whole or
        # not at all, so find_sent() after a crash is exact.
        key = self._sent().add(message)
        # mailbox writes 0666 less the umask; a message we deliver (to new/) is 0600.
        with contextlib.suppress(FileNotFoundError):  # a mail client took it already
            os.chmod(self.folder / ".Sent" / "new" / key, 0o600)
        if self._sent_ids is not None:
            self._sent_ids[message["Message-ID"]] = key
        return Delivered(message["Message-ID"], key, thread_id)

    def incoming(
        self, cursor: str | None, threads: Sequence[str] = ()
    ) -> tuple[list[Incoming], str | None]:
        """Every message in the inbox (the Maildir's top folder), as mbsync or offlineimap
        keep it; no cursor: reply sync records each message once, however often it runs."""
        self._sent()  # creates the folders on first use
        inbox = mailbox.Maildir(self.folder)
        found = []
        for key in sorted(inbox.iterkeys()):
            with inbox.get_file(key) as f:
                found.append(Incoming(key, f.read()))
        return found, None

    def find_sent(self, message_id: str) -> Delivered | None:
        if self._sent_ids is None:
            parser = BytesHeaderParser()
            box = self._sent()
            self._sent_ids = {}
            for key in box.iterkeys():
                with box.get_file(key) as f:
                    self._sent_ids[str(parser.parse(f)["Message-ID"])] = key  # type: ignore[arg-type]
        found = self._sent_ids.get(message_id)
        return None if found is None else Delivered(message_id, found)
