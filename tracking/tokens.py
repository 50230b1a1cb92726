"""The one place that knows the token format.

A token is url-safe base64 (no padding) of
    version (1 byte) | kind (1) | id (8, big-endian) | link index (2) | HMAC-SHA256 tag (16)
The tag is 128 bits, the payload carries no personal data, and any of several keys verifies it
(the first one signs), so keys can be rotated without breaking links in old emails. Each token
has exactly one spelling: any other (`+`/`/`, other padding bits) does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
TAG_BYTES = 16
_PAYLOAD = struct.Struct(">BBQH")
TOKEN_BYTES = _PAYLOAD.size + TAG_BYTES


class TokenKind(IntEnum):
    OPEN = 1
    CLICK = 2
    USER = 3  # marks an internal user's own browser (their opens are not the recipient's)
    FEED = 4  # reads an internal user's desktop alerts (/alerts)


@dataclass(frozen=True)
class Claims:
    kind: TokenKind
    id: int  # email id, or user id for USER and FEED tokens
    link_idx: int = 0  # CLICK: the link's index; FEED: the user's feed version


class TokenSigner:
    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        # Each key's HMAC state is set up once: a tag is then a copy and one update.
        self._keys = [
            hmac.new(k.encode() if isinstance(k, str) else k, digestmod=hashlib.sha256)
            for k in keys
        ]

    def sign(self, claims: Claims) -> str:
        payload = _PAYLOAD.pack(VERSION, claims.kind, claims.id, claims.link_idx)
        return _encode(payload + _tag(self._keys[0], payload))

    def open_token(self, email_id: int) -> str:
        return self.sign(Claims(TokenKind.OPEN, email_id))

    def click_token(self, email_id: int, link_idx: int) -> str:
        return self.sign(Claims(TokenKind.CLICK, email_id, link_idx))

    def user_token(self, user_id: int) -> str:
        return self.sign(Claims(TokenKind.USER, user_id))

    def feed_token(self, user_id: int, version: int = 0) -> str:
        """`version`: the user's feed version (users.feed_version); a new one revokes the old."""
        return self.sign(Claims(TokenKind.FEED, user_id, version))

    def verify(self, token: str, kind: TokenKind) -> Claims | None:
        """The claims of a genuine token of that kind, or None for anything else. It runs on
        every hit: each step is the cheapest that refuses what it must."""
        # The alphabet and the length, and the last character's unused low bits all zero.
        if not _ENCODED.fullmatch(token) or token[-1] not in _LAST:
            return None
        raw = base64.urlsafe_b64decode(token + _PADDING)
        payload, tag = raw[: _PAYLOAD.size], raw[_PAYLOAD.size :]
        for key in self._keys:
            if hmac.compare_digest(_tag(key, payload), tag):
                break
        else:
            return None
        version, token_kind, ident, link_idx = _PAYLOAD.unpack(payload)
        if version != VERSION or token_kind != kind:
            return None
        return Claims(kind, ident, link_idx)


def _tag(key: hmac.HMAC, payload: bytes) -> bytes:
    mac = key.copy()
    mac.update(payload)
    return mac.digest()[:TAG_BYTES]


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_LENGTH = len(_encode(bytes(TOKEN_BYTES)))
_ENCODED = re.compile(f"[A-Za-z0-9_-]{{{_LENGTH}}}")
_PADDING = "=" * (-_LENGTH % 4)
# The characters whose bits past the token's last byte are zero: the one spelling of a token.
_ALPHABET = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
_LAST = frozenset(_ALPHABET[:: 1 << (_LENGTH * 6 - TOKEN_BYTES * 8)])
