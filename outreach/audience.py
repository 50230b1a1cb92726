"""Who an email goes to: a list of addresses, or a filter such as
`company.region = "West Coast" and company.products has "A" and role = "decision maker"`.

Parsing a filter and compiling it to SQL are pure; `resolve_audience` does the reads and writes.

Semantics, the same on SQLite and PostgreSQL:
- A value compares only with values of its own JSON type: `seats > 10` compares numbers,
  `signed_up >= "2024"` compares text (by code point), `vip = true` compares booleans. A number
  stored as text ("40") is text.
- A comparison on a missing attribute (or a company field of an enduser without a company) is
  false, `!=` included, as NULL is in SQL: `seats != 10` leaves out endusers without seats.
  `not` is the plain complement, so `not seats = 10` keeps them.
- `=` on text is case-sensitive, except `email` and `company.domain`, which are stored lower-case.
- `contains` ignores the case of ASCII letters only: SQLite's lower() knows no other letters, so
  PostgreSQL is made to fold the same way.
"""

from __future__ import annotations

import json
import math
import operator
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    Boolean,
    Connection,
    Float,
    Row,
    Select,
    String,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType
from sqlalchemy.types import TypeEngine

from outreach.importer import CompanyDirectory, CompanyRef, normalize_email
from store.schema import companies, endusers

Scope = Literal["enduser", "company"]
Op = Literal["=", "!=", "<", ">", "<=", ">="]
Value = str | int | float | bool

OPS: tuple[Op, ...] = ("=", "!=", "<", ">", "<=", ">=")
KEYWORDS = frozenset({"and", "or", "not", "has", "contains", "in", "is", "empty", "true", "false"})
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
            parsed = float(literal_) if any(c in literal_ for c in ".eE") else int(literal_)
            if not math.isfinite(parsed):
                raise AudienceError(f"{literal_} is too large a number", i)
            tokens.append(_Token("number", literal_, i, parsed))
            i = end
        elif name := _NAME.match(text, i):
            tokens.append(_Token("name", name.group(), i))
            i = name.end()
        else:
            hint = ": put email addresses and other text in quotes" if char == "@" else ""
            raise AudienceError(f"unexpected character {char!r}{hint}", i)
    tokens.append(_Token("end", "", len(text)))
    return tokens


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
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.i = 0

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
        if token.is_keyword("not"):
            self.advance()
            return Not(self.not_())
        if token.kind == "(":
            self.advance()
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
        return self.predicate()

    def predicate(self) -> Expr:
        token = self.advance()
        if token.kind != "name" or token.text.lower() in KEYWORDS:
            raise AudienceError(
                f"expected a field such as role or company.region, '(' or 'not', "
                f"found {token.describe()}",
                token.start,
            )
        subject = _field(token)
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


# --- SQL -------------------------------------------------------------------------------------

_COMPARE: dict[Op, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_ASCII_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LOWER_CASE = frozenset({Field("enduser", "email"), Field("company", "domain")})

AUDIENCE_FROM = endusers.outerjoin(companies, companies.c.id == endusers.c.company_id)


def to_sql(expr: Expr) -> ColumnElement[bool]:
    """A condition over `AUDIENCE_FROM` (endusers LEFT OUTER JOIN companies).

    Every leaf is true or false, never NULL, so `not` is the plain complement.
    """
    match expr:
        case Compare(subject, op, value):
            return _compare(subject, op, value)
        case In(subject, values):
            return or_(false(), *(_compare(subject, "=", value) for value in values))
        case Has(subject, value):
            document, key = _document(subject), subject.name
            return and_(
                _json_kind(document, key) == "array", _json_list_holds(document, key, value)
            )
        case Contains(subject, text):
            needle = _literal(subject, text).translate(_ASCII_FOLD)
            haystack, present = _text(subject)
            return and_(present, _ascii_lower(haystack).contains(needle, autoescape=True))
        case IsEmpty(subject, negated):
            empty = _is_empty(subject)
            return not_(empty) if negated else empty
        case Not(operand):
            return not_(to_sql(operand))
        case And(operands):
            return and_(*(to_sql(operand) for operand in operands))
        case Or(operands):
            return or_(*(to_sql(operand) for operand in operands))


def audience_select(where: ColumnElement[bool]) -> Select[Any]:
    """The endusers that match, with their company's name, in id order."""
    return (
        select(*endusers.c, companies.c.name.label("company_name"))
        .select_from(AUDIENCE_FROM)
        .where(where)
        .order_by(endusers.c.id)
    )


def _literal(subject: Field, value: str) -> str:
    return value.lower() if subject in _LOWER_CASE else value


def _compare(subject: Field, op: Op, value: Value) -> ColumnElement[bool]:
    compare = _COMPARE[op]
    if isinstance(value, bool):  # only = and != (the parser sees to it)
        kind = _json_kind(_document(subject), subject.name)
        return kind == ("true" if value == (op == "=") else "false")
    if isinstance(value, str):
        text, is_text = _text(subject)
        if op not in ("=", "!="):
            text = _code_point_order(text)
        return and_(is_text, compare(text, _literal(subject, value)))
    document = _document(subject)
    is_number = _json_kind(document, subject.name) == "number"
    return and_(is_number, compare(_json_number(document, subject.name), value))


def _text(subject: Field) -> tuple[ColumnElement[str], ColumnElement[bool]]:
    """The field as text, and a condition that it is text (not missing, not another type)."""
    if subject.is_attribute:
        document = _document(subject)
        return _json_text(document, subject.name), _json_kind(document, subject.name) == "string"
    if subject.scope == "enduser":
        return endusers.c[subject.name], true()  # NOT NULL columns
    # NULL for an enduser without a company (or a company without a domain)
    column = companies.c[subject.name]
    return column, column.is_not(None)


def _is_empty(subject: Field) -> ColumnElement[bool]:
    if not subject.is_attribute:
        column, _ = _text(subject)
        return or_(column.is_(None), column == "")
    document = _document(subject)
    kind, text = _json_kind(document, subject.name), _json_text(document, subject.name)
    return or_(
        kind.in_(("missing", "null")),
        and_(kind == "string", text == ""),
        and_(kind == "array", text == "[]"),  # both dialects write an empty list as []
    )


def _document(subject: Field) -> ColumnElement[Any]:
    if not subject.is_attribute:
        raise AssertionError(f"{subject} is a column, not an attribute")
    return (endusers if subject.scope == "enduser" else companies).c.attributes


# --- The two dialects: everything that differs between SQLite and PostgreSQL -----------------

T = TypeVar("T")


class _PerDialect(ColumnElement[T]):
    """An expression written once per dialect; the statement's compiler picks its own."""

    inherit_cache = True
    # What the statement cache keys on; SQLAlchemy declares it a (mutable) list.
    _traverse_internals: _TraverseInternalsType = [  # noqa: RUF012
        ("sqlite", InternalTraversal.dp_clauseelement),
        ("postgresql", InternalTraversal.dp_clauseelement),
        ("type", InternalTraversal.dp_type),
    ]

    def __init__(
        self, type_: TypeEngine[T], *, sqlite: ColumnElement[Any], postgresql: ColumnElement[Any]
    ) -> None:
        self.type = type_
        self.sqlite = sqlite
        self.postgresql = postgresql

    @property
    def _from_objects(self) -> list[Any]:
        return [*self.sqlite._from_objects, *self.postgresql._from_objects]


@compiles(_PerDialect)
def _compile_per_dialect(element: _PerDialect[Any], compiler: SQLCompiler, **kw: Any) -> str:
    name = compiler.dialect.name
    if name not in ("sqlite", "postgresql"):
        raise CompileError(f"audience filters are written for SQLite and PostgreSQL, not {name}")
    return compiler.process(element.sqlite if name == "sqlite" else element.postgresql, **kw)


def _path(key: str) -> str:
    return f'$."{key}"'  # SQLite's JSON path; attribute names never hold a double quote


def _jsonb(document: ColumnElement[Any], key: str) -> ColumnElement[Any]:
    # The columns are `json` on PostgreSQL; jsonb has the operators and a normalized text form.
    return cast(document, JSONB)[key]


def _json_kind(document: ColumnElement[Any], key: str) -> ColumnElement[str]:
    """'string', 'number', 'true', 'false', 'array', 'object', 'null' or 'missing'."""
    sqlite_type = func.json_type(document, _path(key), type_=String)
    value = _jsonb(document, key)
    postgresql_type = func.jsonb_typeof(value, type_=String)
    kind = _PerDialect(
        String(),
        sqlite=case(
            (sqlite_type == "text", "string"),
            (sqlite_type.in_(("integer", "real")), "number"),
            else_=sqlite_type,
        ),
        postgresql=case((postgresql_type == "boolean", value.astext), else_=postgresql_type),
    )
    return func.coalesce(kind, "missing", type_=String)


def _json_text(document: ColumnElement[Any], key: str) -> ColumnElement[str]:
    """The value as text: meaningful for strings (and [] for an empty list)."""
    return _PerDialect(
        String(),
        sqlite=func.json_extract(document, _path(key), type_=String),
        postgresql=_jsonb(document, key).astext,
    )


def _json_number(document: ColumnElement[Any], key: str) -> ColumnElement[float]:
    """The value as a number when it is one, else NULL."""
    value = _jsonb(document, key)
    return _PerDialect(
        Float(),
        sqlite=func.json_extract(document, _path(key), type_=Float),
        # CASE, not AND: PostgreSQL may evaluate either side of an AND first.
        postgresql=case((func.jsonb_typeof(value) == "number", cast(value.astext, Float))),
    )


def _json_list_holds(
    document: ColumnElement[Any], key: str, wanted: str | int | float
) -> ColumnElement[bool]:
    """The JSON list holds `wanted`, compared as a string or as a number (NULL: not a list)."""
    elements = func.json_each(document, _path(key)).table_valued("type", "value")
    types = ("text",) if isinstance(wanted, str) else ("integer", "real")
    holds = exists(
        select(literal(1))
        .select_from(elements)
        .where(elements.c.type.in_(types), elements.c.value == wanted)
    )
    contains = _jsonb(document, key).contains([wanted])  # a JSONB parameter: ["A"]
    return _PerDialect(Boolean(), sqlite=holds, postgresql=contains)


def _code_point_order(text: ColumnElement[str]) -> ColumnElement[str]:
    """Text that sorts by code point, as SQLite always does (PostgreSQL: by its locale)."""
    return _PerDialect(String(), sqlite=text, postgresql=text.collate("C"))


def _ascii_lower(text: ColumnElement[str]) -> ColumnElement[str]:
    upper, lower = string.ascii_uppercase, string.ascii_lowercase
    return _PerDialect(
        String(), sqlite=func.lower(text), postgresql=func.translate(text, upper, lower)
    )


# --- Resolving an audience against the database ----------------------------------------------


@dataclass(frozen=True)
class Audience:
    endusers: list[Row[Any]]  # who gets the email: endusers columns + company_name, by id
    excluded_bounced: list[str] = field(default_factory=list)  # left out; `force` includes them
    tracking_off: list[str] = field(default_factory=list)  # emailed, but opted out of tracking
    created: list[str] = field(default_factory=list)  # new endusers made from the address list

    def summary(self) -> str:
        notes = []
        if self.created:
            notes.append(f"{len(self.created)} new: added to the endusers")
        if self.excluded_bounced:
            notes.append(
                f"{len(self.excluded_bounced)} bounced left out: use force to include them"
            )
        if self.tracking_off:
            notes.append(f"{len(self.tracking_off)} without tracking: opted out")
        count = len(self.endusers)
        head = f"{count} {'enduser' if count == 1 else 'endusers'}"
        return f"{head} ({'; '.join(notes)})" if notes else head


_SEPARATORS = re.compile(r"[^\s,;]+")


def parse_addresses(text: str) -> list[str] | None:
    """The addresses (normalized, each once) if the text is a list of them, that is if its first
    word holds an @; None for a filter."""
    items = list(_SEPARATORS.finditer(text))
    if not items or "@" not in items[0].group():
        return None
    addresses: list[str] = []
    for item in items:
        try:
            address = normalize_email(item.group())
        except ValueError:
            raise AudienceError(
                f"{item.group()!r} is not an email address: list addresses like "
                "dana@acme.example, separated by commas or spaces",
                item.start(),
            ) from None
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_audience(connection: Connection, text: str, *, force: bool = False) -> Audience:
    """Who `text` sends to. Addresses not yet known become endusers (written on `connection`:
    roll back for a preview). Bounced endusers are left out unless `force`."""
    addresses = parse_addresses(text)
    created: list[str] = []
    if addresses is None:
        where = to_sql(parse(text))
    else:
        created = _create_endusers(connection, addresses)
        where = endusers.c.email.in_(addresses)
    rows = connection.execute(audience_select(where)).all()
    return _split(rows, force=force, created=created)


def _split(rows: Sequence[Row[Any]], *, force: bool, created: list[str]) -> Audience:
    chosen: list[Row[Any]] = []
    bounced: list[Row[Any]] = []
    for row in rows:
        (bounced if row.bounced_at is not None and not force else chosen).append(row)
    return Audience(
        endusers=chosen,
        excluded_bounced=[row.email for row in bounced],
        tracking_off=[row.email for row in chosen if row.tracking_opt_out],
        created=created,
    )


def _create_endusers(connection: Connection, addresses: list[str]) -> list[str]:
    """Create the addresses not yet known, each with the company of its email's domain."""
    query = select(endusers.c.email).where(endusers.c.email.in_(addresses))
    known = set(connection.scalars(query))
    new = [address for address in addresses if address not in known]
    if not new:
        return []
    refs = connection.execute(select(companies.c.id, companies.c.name, companies.c.domain))
    directory = CompanyDirectory([CompanyRef(r.id, r.name, r.domain) for r in refs])
    rows: list[dict[str, Any]] = []
    for address in new:
        company = directory.for_email(address)
        company_id = None if company is None else company.id
        rows.append({"email": address, "company_id": company_id, "attributes": {}})
    connection.execute(endusers.insert(), rows)
    return new
