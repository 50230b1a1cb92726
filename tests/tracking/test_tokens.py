from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking.tokens import Claims, TokenKind, TokenSigner

KEY, OLD_KEY = "k" * 32, "o" * 32


def test_a_signed_token_verifies_to_its_claims() -> None:
    signer = TokenSigner([KEY])
    token = signer.click_token(123456789, 7)
    assert signer.verify(token, TokenKind.CLICK) == Claims(TokenKind.CLICK, 123456789, 7)
    assert signer.verify(signer.open_token(5), TokenKind.OPEN) == Claims(TokenKind.OPEN, 5)


def test_tokens_are_url_safe_and_carry_no_readable_data() -> None:
    token = TokenSigner([KEY]).open_token(42)
    assert token.isascii() and all(c.isalnum() or c in "-_" for c in token)
    assert "42" not in token


def test_the_tag_has_at_least_128_bits() -> None:
    signer = TokenSigner([KEY])
    token = signer.open_token(1)
    # Flipping any character of the tag part must fail verification.
    for position in range(len(token) - 21, len(token)):
        flipped = "A" if token[position] != "A" else "B"
        assert (
            signer.verify(token[:position] + flipped + token[position + 1 :], TokenKind.OPEN)
            is None
        )


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda t: t[:-1], id="truncated"),
        pytest.param(lambda t: t + "A", id="extended"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
        pytest.param(lambda t: "é" * len(t), id="unicode"),
        pytest.param(lambda t: "%" * len(t), id="not-base64"),
        pytest.param(lambda t: t[:5] + ("B" if t[5] == "A" else "A") + t[6:], id="payload-edited"),
    ],
)
def test_mangled_tokens_are_refused(mangle: object) -> None:
    signer = TokenSigner([KEY])
    token = signer.click_token(99, 1)
    assert callable(mangle)
    assert signer.verify(mangle(token), TokenKind.CLICK) is None


def test_a_token_of_another_kind_is_refused() -> None:
    signer = TokenSigner([KEY])
    assert signer.verify(signer.open_token(3), TokenKind.CLICK) is None
    assert signer.verify(signer.user_token(3), TokenKind.OPEN) is None


def test_a_token_signed_with_an_unknown_key_is_refused() -> None:
    forged = TokenSigner(["f" * 32]).open_token(3)
    assert TokenSigner([KEY]).verify(forged, TokenKind.OPEN) is None


def test_rotation_old_keys_still_verify_and_only_the_first_signs() -> None:
    old_token = TokenSigner([OLD_KEY]).open_token(8)
    rotated = TokenSigner([KEY, OLD_KEY])
    assert rotated.verify(old_token, TokenKind.OPEN) == Claims(TokenKind.OPEN, 8)
    assert TokenSigner([KEY]).verify(rotated.open_token(8), TokenKind.OPEN) is not None
    # Once the old key is retired, its tokens stop working.
    assert TokenSigner([KEY]).verify(old_token, TokenKind.OPEN) is None


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _with(token: str, old: str, new: str) -> str:
    assert old in token
    return token.replace(old, new, 1)


def _token_with(character: str) -> str:
    """A click token that has `character` in it."""
    signer = TokenSigner([KEY])
    return next(t for i in range(1000) if character in (t := signer.click_token(i, 1)))


def _last_bits(token: str, flip: int) -> str:
    # 28 bytes are 37 characters and 2 bits: the last character's low 4 bits are padding.
    return token[:-1] + ALPHABET[ALPHABET.index(token[-1]) ^ flip]


@pytest.mark.parametrize(
    "mangle",
    [
        *(
            pytest.param(lambda t, f=flip: _last_bits(t, f), id=f"padding-bits-{flip}")
            for flip in (1, 2, 4, 8, 15)
        ),
        pytest.param(lambda t: t + "=", id="padded"),
        pytest.param(lambda t: t + "==", id="padded-twice"),
        pytest.param(lambda t: t + "\n", id="newline"),
        pytest.param(lambda t: " " + t[1:], id="space"),
    ],
)
def test_only_the_canonical_spelling_of_a_token_verifies(mangle: object) -> None:
    signer = TokenSigner([KEY])
    token = signer.click_token(99, 1)
    assert callable(mangle)
    assert signer.verify(token, TokenKind.CLICK) is not None
    assert signer.verify(mangle(token), TokenKind.CLICK) is None


@pytest.mark.parametrize(("url_safe", "standard"), [("-", "+"), ("_", "/")])
def test_standard_base64_characters_do_not_verify(url_safe: str, standard: str) -> None:
    signer = TokenSigner([KEY])
    token = _token_with(url_safe)
    assert signer.verify(token, TokenKind.CLICK) is not None
    assert signer.verify(_with(token, url_safe, standard), TokenKind.CLICK) is None


def test_every_signed_token_verifies() -> None:
    signer = TokenSigner([KEY])
    for ident in [0, 1, 2**32, 2**64 - 1, *range(2, 500, 7)]:
        for kind in TokenKind:
            for link_idx in (0, 1, 2**16 - 1):
                claims = Claims(kind, ident, link_idx)
                assert signer.verify(signer.sign(claims), kind) == claims


def test_a_feed_token_carries_the_feed_version() -> None:
    signer = TokenSigner([KEY])
    assert signer.verify(signer.feed_token(4, 9), TokenKind.FEED) == Claims(TokenKind.FEED, 4, 9)


@given(text=st.text(max_size=60) | st.text(alphabet=ALPHABET + "+/=", min_size=36, max_size=40))
def test_any_text_is_refused_or_is_the_one_spelling_of_its_claims(text: str) -> None:
    signer = TokenSigner([KEY])
    for kind in TokenKind:
        claims = signer.verify(text, kind)
        assert claims is None or signer.sign(claims) == text
