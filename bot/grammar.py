"""Words of a `/beacon` command: the tokenizer every command parser reads, and the error a
parser raises. Pure."""

from __future__ import annotations

from dataclasses import dataclass


class CommandError(Exception):
    """What was wrong with the words typed; the registry adds the command's usage line."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nusage: {self.usage}" if self.usage else self.message


@dataclass(frozen=True)
class Token:
    text: str  # as typed, quotes included
    start: int
    end: int

    @property
    def word(self) -> str:
        return self.text.lower()


def tokens(text: str) -> list[Token]:
    """Whitespace-separated words; a quoted stretch ("..." or '...') stays inside one word."""
    found: list[Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        start, quote = i, ""
        while i < len(text) and (quote or not text[i].isspace()):
            if quote and text[i] == "\\":
                i += 1
            elif text[i] == quote:
                quote = ""
            elif not quote and text[i] in "\"'":
                quote = text[i]
            i += 1
        if quote:
            raise CommandError(f"a quote ({quote}) is not closed")
        found.append(Token(text[start:i], start, i))
    return found


def unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def words(args: list[Token]) -> list[str]:
    return [arg.word for arg in args]


def strip_flag(args: list[Token], *flag: str) -> tuple[list[Token], bool]:
    """`args` without the trailing words `flag` (e.g. "include", "machine"), and whether they
    were there."""
    n = len(flag)
    if len(args) >= n and tuple(words(args[-n:])) == flag:
        return args[:-n], True
    return args, False


def campaign_ref(token: Token) -> str:
    """A campaign as typed: a number (12 or #12) or a name."""
    return unquoted(token.text)
