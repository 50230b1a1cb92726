from __future__ import annotations

import pytest

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
