"""What the outreach package needs to know, filled in from config by mailbeacon.settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutreachSettings:
    # Template files (Markdown or HTML with a YAML front matter), loaded at start.
    # Your own templates; `mailbeacon init` creates the folder with one example. The shipped
    # config.yaml points at the repository's examples instead.
    templates_dir: str = "templates"
    # The embedded default mailbox: sent mail goes to <maildir>/.Sent. Empty: <data_dir>/Maildir.
    maildir: str = ""
    # A send-out to more endusers than this needs an admin.
    admin_send_threshold: int = 200
    # The connected mailbox that users without one of their own send from (its address).
    # Empty: the embedded Maildir.
    default_mailbox: str = ""
