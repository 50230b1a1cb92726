"""The mailbox each user sends from (their own, else the default one, else the embedded Maildir),
for campaigns and for alerts by email alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from mailbeacon.settings import Settings
from outreach.accounts import credential_keeper, mailbox_for_user
from outreach.mailbox import Mailbox
from store.crypto import CredentialCipher


def user_mailboxes(settings: Settings, engine: Engine) -> Callable[[int, str], Mailbox]:
    """(user id, user's address) -> the mailbox that user sends from."""
    cipher = CredentialCipher(settings.secrets.encryption_keys)
    keep = credential_keeper(engine, cipher)

    def mailbox_of(user_id: int, address: str) -> Mailbox:
        with engine.connect() as connection:
            return mailbox_for_user(
                connection,
                user_id,
                cipher,
                oauth=settings.oauth,
                maildir_folder=Path(settings.outreach.maildir),
                address=address,
                keep_credentials=keep,
            )

    return mailbox_of
