"""SQL that reads the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, any_, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class greatest(FunctionElement[Any]):
    """GREATEST(): NULL when any value is NULL on SQLite (unlike PostgreSQL), so give it none."""

    inherit_cache = True


class least(FunctionElement[Any]):
    inherit_cache = True


@compiles(greatest)
def _greatest(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"GREATEST({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least)
def _least(element: least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"LEAST({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _least_sqlite(element: least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


def among(column: ColumnElement[Any], name: str, *, arrays: bool) -> ColumnElement[bool]:
    """`column` is one of the list bound as `name`. With `arrays` (PostgreSQL) the list goes
    as one array: the same query text for any length, so nothing is built per value and the
    driver parses it once; elsewhere it is an expanding IN."""
    if arrays:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def takes_arrays(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"
