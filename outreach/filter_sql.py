"""A filter's syntax tree as SQL over endusers LEFT OUTER JOIN companies. Pure.

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

import operator
import string
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    Boolean,
    Float,
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

from outreach.filters import (
    And,
    Compare,
    Contains,
    Expr,
    Field,
    Has,
    In,
    IsEmpty,
    Not,
    Op,
    Or,
    Value,
)
from store.schema import companies, endusers

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
