"""Mailbox credentials at rest: JSON encrypted with Fernet. The first key encrypts and every key
decrypts, so a new key can be put in front of the old one and the rows re-encrypted at leisure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class CredentialsUnreadable(Exception):
    """Stored credentials that none of the configured keys can decrypt."""


UNREADABLE = (
    "the stored mailbox credentials cannot be decrypted: the encryption key changed since they "
    "were saved. Connect the mailbox again (mailbeacon connect gmail|outlook --as <email>), or "
    "put the old key back into secrets.encryption_keys (after the new one, to rotate)"
)


class CredentialCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def encrypt(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data, separators=(",", ":")).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            plain = self._fernet.decrypt(token)
        except InvalidToken:
            raise CredentialsUnreadable(UNREADABLE) from None
        return cast(dict[str, Any], json.loads(plain))

    def rotate(self, token: bytes) -> bytes:
        """The same credentials, encrypted with the first key."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise CredentialsUnreadable(UNREADABLE) from None
