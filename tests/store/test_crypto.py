from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from store.crypto import CredentialCipher, CredentialsUnreadable

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))
SECRETS = {"refresh_token": "1//0g-very-secret-refresh-token", "scopes": ["a", "b"], "port": 587}


def test_credentials_round_trip_and_are_not_readable_at_rest() -> None:
    cipher = CredentialCipher([NEW])
    token = cipher.encrypt(SECRETS)
    assert cipher.decrypt(token) == SECRETS
    assert b"very-secret" not in token and b"refresh_token" not in token


def test_each_encryption_is_different() -> None:
    cipher = CredentialCipher([NEW])
    assert cipher.encrypt(SECRETS) != cipher.encrypt(SECRETS)


def test_rotation_the_first_key_encrypts_and_every_key_decrypts() -> None:
    written_before = CredentialCipher([OLD]).encrypt(SECRETS)
    rotating = CredentialCipher([NEW, OLD])
    assert rotating.decrypt(written_before) == SECRETS
    # New writes, and rotated old ones, need only the new key.
    new_only = CredentialCipher([NEW])
    assert new_only.decrypt(rotating.encrypt(SECRETS)) == SECRETS
    assert new_only.decrypt(rotating.rotate(written_before)) == SECRETS
    with pytest.raises(CredentialsUnreadable):
        new_only.decrypt(written_before)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(CredentialCipher([OTHER]).encrypt(SECRETS), id="another key"),
        pytest.param(b"not a fernet token", id="garbage"),
        pytest.param(CredentialCipher([NEW]).encrypt(SECRETS)[:-4], id="truncated"),
    ],
)
def test_unreadable_credentials_say_the_key_changed_and_what_to_do(token: bytes) -> None:
    cipher = CredentialCipher([NEW, OLD])
    for read in (cipher.decrypt, cipher.rotate):
        with pytest.raises(CredentialsUnreadable) as raised:
            read(token)
        message = str(raised.value)
        assert "encryption key changed" in message
        assert "mailbeacon connect" in message and "secrets.encryption_keys" in message


def test_a_cipher_needs_a_key() -> None:
    with pytest.raises(ValueError):
        CredentialCipher([])
