"""The audience filter language: `company.region = "West Coast" and company.products has "A"
and role = "decision maker"` to a syntax tree and back to text. Pure."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

Scope = Literal["enduser", "company"]
Op = Literal["=", "!=", "<", ">", "<=", ">="]
Value = str | int | float | bool

OPS: tuple[Op, ...] = ("=", "!=", "<", ">", "<=", ">=")
KEYWORDS = frozenset({"and", "or", "not", "has", "contains", "in", "is", "empty", "true", "false"})
# Bounds that keep parsing and the SQL it becomes small: checked as the text is read, before
# anything deep is built, so no filter reaches Python's recursion limit or the databases' own.
MAX_LENGTH = 10_000  # characters
MAX_DEPTH = 32  # parentheses and `not`s around a comparison
MAX_TERMS = 200  # comparisons, each value listed after `in` counted as one
MAX_INTEGER = 2**63 - 1  # what both databases bind as an integer
FIELDS_HELP = (
    "email, name, role, company, company.name, company.domain, company.<attribute>, "
    "attributes.<attribute> or a bare <attribute> of the enduser"
)


class AudienceError(Exception):
    """A mistake in an audience; `position` is the 0-based column where it was found."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        # Columns are counted from 1 here, as an editor counts them.
        return f"at column {self.position + 1}: {self.message}"

    def pretty(self, text: str) -> str:
        """The text, a ^ under the mistake, and what was wrong."""
        shown = "".join(" " if char.isspace() else char for char in text)
        return f"{shown}\n{' ' * self.position}^\n{self}"


# --- The syntax tree -------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    scope: Scope  # the enduser's own, or their company's
    name: str  # a column (email, name, role; company: name, domain) or an attribute key
    is_attribute: bool = False


@dataclass(frozen=True)
class Compare:
    field: Field
    op: Op
    value: Value


@dataclass(frozen=True)
class Has:
    """A JSON list attribute holds the value."""

    field: Field
    value: str | int | float


@dataclass(frozen=True)
class Contains:
    field: Field
    text: str


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]


@dataclass(frozen=True)
class IsEmpty:
    """NULL, a missing key, "" or []; `negated` for `is not empty`."""

    field: Field
    negated: bool = False


@dataclass(frozen=True)
class Not:
    operand: Expr


@dataclass(frozen=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Compare | Has | Contains | In | IsEmpty | Not | And | Or

_COLUMNS = {
    "email": Field("enduser", "email"),
    "name": Field("enduser", "name"),
    "role": Field("enduser", "role"),
    "company": Field("company", "name"),
}
_COMPANY_COLUMNS = frozenset({"name", "domain"})


# --- Tokens ----------------------------------------------------------------------------------

TokenKind = Literal["name", "string", "number", "op", "(", ")", ",", "end"]


@dataclass(frozen=True)
class _Token:
    kind: TokenKind
    text: str  # as typed
    start: int
    value: Value = ""  # strings and numbers

    def is_keyword(self, *words: str) -> bool:
        return self.kind == "name" and self.text.lower() in words

    def describe(self) -> str:
        if self.kind == "end":
            return "end of input"
        if self.kind == "string":
            return f"the text {self.text}"
        return f"'{self.text}'"


_NAME = re.compile(r"[^\W\d][\w-]*(?:\.[\w-]*)*")
_WORD = re.compile(r"[\w.+-]+")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
# Slack on a Mac may type curly quotes: double and single ones quote too.
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019"}
_OP_CHARS = "=!<>~"
_PUNCTUATION: dict[str, TokenKind] = {"(": "(", ")": ")", ",": ","}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char in _QUOTES:
            value, end = _string(text, i)
            tokens.append(_Token("string", text[i:end], i, value))
            i = end
        elif char in _PUNCTUATION:
            tokens.append(_Token(_PUNCTUATION[char], char, i))
            i += 1
        elif char in _OP_CHARS:
            end = i
            while end < len(text) and text[end] in _OP_CHARS:
                end += 1
            tokens.append(_Token("op", text[i:end], i))
            i = end
        elif number := _NUMBER.match(text, i):
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "_."):
                word = (_WORD.match(text, i) or number).group()
                raise AudienceError(f"{word!r} is not a number: put text in quotes", i)
            literal_ = number.group()
            tokens.append(_Token("number", literal_, i, _number(literal_, i)))
            i = end
        elif name := _NAME.match(text, i):
            tokens.append(_Token("name", name.group(), i))
            i = name.end()
        else:
            hint = ": put email addresses and other text in quotes" if char == "@" else ""
            raise AudienceError(f"unexpected character {char!r}{hint}", i)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _number(literal_: str, at: int) -> int | float:
    shown = literal_ if len(literal_) <= 24 else f"{literal_[:20]}…"
    if any(c in literal_ for c in ".eE"):
        parsed = float(literal_)
        if not math.isfinite(parsed):
            raise AudienceError(f"{shown} is too large a number", at)
        return parsed
    # Digits are bounded before int() reads them: int() refuses more than 4,300 digits.
    whole = int(literal_) if len(literal_.lstrip("+-")) <= 19 else MAX_INTEGER + 1
    if abs(whole) > MAX_INTEGER:
        raise AudienceError(
            f"{shown} is too large a whole number (the largest is {MAX_INTEGER}): "
            "write larger numbers with an exponent, like 1e30",
            at,
        )
    return whole


def _string(text: str, start: int) -> tuple[str, int]:
    """A quoted string's value and the index after its closing quote; backslash escapes."""
    closing = _QUOTES[text[start]]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
        elif text[i] == closing:
            return "".join(chars), i + 1
        else:
            chars.append(text[i])
            i += 1
    raise AudienceError(f"unterminated string: add the closing {closing}", start)


# --- Parsing ---------------------------------------------------------------------------------


def parse(text: str) -> Expr:
    """The filter's syntax tree; AudienceError says where and what is wrong."""
    if len(text) > MAX_LENGTH:
        raise AudienceError(
            f"the filter is {len(text):,} characters long, more than {MAX_LENGTH:,}: "
            "shorten it, or choose the audience in smaller parts",
            MAX_LENGTH,
        )
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # parentheses and `not`s open around the current token
        self.terms = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Expr:
        if self.peek().kind == "end":
            raise AudienceError(
                'empty audience: give email addresses or a filter such as role = "admin"', 0
            )
        expr = self.or_()
        token = self.peek()
        if token.kind == ")":
            raise AudienceError("unexpected ')': there is no '(' to close", token.start)
        if token.kind != "end":
            raise AudienceError(
                f"expected 'and', 'or' or end of input, found {token.describe()}", token.start
            )
        return expr

    def or_(self) -> Expr:
        operands = [self.and_()]
        while self.peek().is_keyword("or"):
            self.advance()
            operands.append(self.and_())
        return _joined(Or, operands)

    def and_(self) -> Expr:
        operands = [self.not_()]
        while self.peek().is_keyword("and"):
            self.advance()
            operands.append(self.not_())
        return _joined(And, operands)

    def not_(self) -> Expr:
        token = self.peek()
        if not (token.is_keyword("not") or token.kind == "("):
            return self.predicate()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise AudienceError(
                f"nested more than {MAX_DEPTH} deep in parentheses and 'not': "
                "write the filter with fewer levels",
                token.start,
            )
        expr = self.nested(token)
        self.depth -= 1
        return expr

    def count_term(self, token: _Token) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise AudienceError(
                f"more than {MAX_TERMS} comparisons (each value after 'in' counts as one): "
                "shorten the filter, or choose the audience in smaller parts",
                token.start,
            )

    def nested(self, token: _Token) -> Expr:
        """What follows a `not` or a '('."""
        self.advance()
        if token.is_keyword("not"):
            return Not(self.not_())
        expr = self.or_()
        closing = self.peek()
        if closing.kind != ")":
            raise AudienceError(
                f"expected ')' to close the '(' at column {token.start + 1}, "
                f"found {closing.describe()}",
                closing.start,
            )
        self.advance()
        return expr

    def predicate(self) -> Expr:
        token = self.advance()
        if token.kind != "name" or token.text.lower() in KEYWORDS:
            raise AudienceError(
                f"expected a field such as role or company.region, '(' or 'not', "
                f"found {token.describe()}",
                token.start,
            )
        subject = _field(token)
        self.count_term(token)
        negated = self.peek().is_keyword("not") and self.tokens[self.i + 1].is_keyword(
            "has", "contains", "in"
        )
        if negated:  # `role not in (...)` reads better than `not role in (...)`
            self.advance()
        expr = self.condition(token, subject)
        return Not(expr) if negated else expr

    def condition(self, subject_token: _Token, subject: Field) -> Expr:
        token = self.advance()
        if token.kind == "op":
            if token.text not in OPS:
                raise AudienceError(
                    f"unknown operator '{token.text}': use =, !=, <, >, <=, >=, has, contains, "
                    "in or is empty",
                    token.start,
                )
            op: Op = token.text
            value, at = self.value(after=token.text)
            _check_comparison(subject_token, subject, op, value, at)
            return Compare(subject, op, value)
        if token.is_keyword("has"):
            if not subject.is_attribute:
                raise AudienceError(
                    f"'has' looks inside a list attribute, and {subject_token.text} is text: "
                    "use = or contains",
                    token.start,
                )
            value, at = self.value(after="has")
            if isinstance(value, bool):
                raise AudienceError("'has' takes text or a number, not true or false", at)
            return Has(subject, value)
        if token.is_keyword("contains"):
            value, at = self.value(after="contains")
            if not isinstance(value, str):
                raise AudienceError(f"'contains' takes text in quotes, like \"{value}\"", at)
            return Contains(subject, value)
        if token.is_keyword("in"):
            return In(subject, self.values(subject_token, subject))
        if token.is_keyword("is"):
            negated = self.peek().is_keyword("not")
            if negated:
                self.advance()
            empty = self.advance()
            if not empty.is_keyword("empty"):
                raise AudienceError(
                    f"expected 'empty' or 'not empty' after 'is', found {empty.describe()}",
                    empty.start,
                )
            return IsEmpty(subject, negated)
        raise AudienceError(
            f"expected an operator after '{subject_token.text}' (=, !=, <, >, <=, >=, has, "
            f"contains, in or is empty), found {token.describe()}",
            token.start,
        )

    def value(self, after: str) -> tuple[Value, int]:
        """The value and where it starts."""
        token = self.peek()
        if token.kind in ("string", "number"):
            self.advance()
            return token.value, token.start
        if token.is_keyword("true", "false"):
            self.advance()
            return token.text.lower() == "true", token.start
        bare_word = token.kind == "name" and token.text.lower() not in KEYWORDS
        hint = f': put text in quotes, like "{token.text}"' if bare_word else ""
        raise AudienceError(
            f"expected a value after '{after}', found {token.describe()}{hint}", token.start
        )

    def values(self, subject_token: _Token, subject: Field) -> tuple[Value, ...]:
        opening = self.advance()
        if opening.kind != "(":
            raise AudienceError(
                f"expected '(' after 'in', like in (\"a\", \"b\"), found {opening.describe()}",
                opening.start,
            )
        values: list[Value] = []
        after = "("
        while True:
            if after == ",":  # the first value was counted with its field
                self.count_term(self.peek())
            value, at = self.value(after=after)
            _check_comparison(subject_token, subject, "=", value, at)
            values.append(value)
            token = self.advance()
            if token.kind == ")":
                return tuple(values)
            if token.kind != ",":
                raise AudienceError(
                    f"expected ',' or ')' in the list after 'in', found {token.describe()}",
                    token.start,
                )
            after = ","


def _joined(kind: type[And] | type[Or], operands: list[Expr]) -> Expr:
    """One operand as itself; nested ones of the same kind flattened: (a and b) and c."""
    if len(operands) == 1:
        return operands[0]
    flat: list[Expr] = []
    for operand in operands:
        flat.extend(operand.operands if isinstance(operand, kind) else [operand])
    return kind(tuple(flat))


def _field(token: _Token) -> Field:
    head, *rest = token.text.split(".")
    prefix = head.lower()
    if not rest:
        return _COLUMNS.get(prefix) or Field("enduser", head, is_attribute=True)
    if prefix not in ("company", "attributes"):
        raise AudienceError(
            f"unknown field '{token.text}': the prefixes are company. and attributes.; "
            f"fields are {FIELDS_HELP}",
            token.start,
        )
    key = rest[0]
    if not key:
        raise AudienceError(
            f"expected an attribute name after '{head}.'", token.start + len(head) + 1
        )
    if len(rest) > 1:
        raise AudienceError(
            f"'{token.text}': an attribute has no parts; write {head}.{key}",
            token.start + len(head) + len(key) + 1,
        )
    if prefix == "attributes":
        return Field("enduser", key, is_attribute=True)
    if key.lower() in _COMPANY_COLUMNS:
        return Field("company", key.lower())
    return Field("company", key, is_attribute=True)


def _check_comparison(token: _Token, subject: Field, op: Op, value: Value, at: int) -> None:
    if not subject.is_attribute and not isinstance(value, str):
        shown = json.dumps(value)
        raise AudienceError(
            f'{token.text} is text: compare it with text in quotes, like "{shown}"', at
        )
    if isinstance(value, bool) and op not in ("=", "!="):
        raise AudienceError(f"true and false can only be compared with = or !=, not {op}", at)


# --- Back to text ----------------------------------------------------------------------------


def render(expr: Expr) -> str:
    """The filter as text that parses back to the same tree."""
    match expr:
        case Compare(subject, op, value):
            return f"{_render_field(subject)} {op} {_render_value(value)}"
        case Has(subject, value):
            return f"{_render_field(subject)} has {_render_value(value)}"
        case Contains(subject, text):
            return f"{_render_field(subject)} contains {_render_value(text)}"
        case In(subject, values):
            listed = ", ".join(_render_value(value) for value in values)
            return f"{_render_field(subject)} in ({listed})"
        case IsEmpty(subject, negated):
            return f"{_render_field(subject)} is {'not ' if negated else ''}empty"
        case Not(operand):
            inner = render(operand)
            return f"not ({inner})" if isinstance(operand, And | Or) else f"not {inner}"
        case And(operands):
            return " and ".join(
                f"({render(o)})" if isinstance(o, And | Or) else render(o) for o in operands
            )
        case Or(operands):
            return " or ".join(
                f"({render(o)})" if isinstance(o, Or) else render(o) for o in operands
            )


def _render_field(subject: Field) -> str:
    if subject == _COLUMNS["company"]:
        return "company"
    if subject.scope == "company":
        return f"company.{subject.name}"
    if not subject.is_attribute:
        return subject.name
    bare = subject.name.lower() not in KEYWORDS and subject.name.lower() not in _COLUMNS
    return subject.name if bare else f"attributes.{subject.name}"


def _render_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    return repr(value)
