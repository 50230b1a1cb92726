"""Filters as SQL: a table of expressions and who they select, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import CompileError

from outreach.filter_sql import audience_select, to_sql
from outreach.filters import parse


def members(engine: Engine, text: str) -> set[str]:
    """Who the filter selects, by first name (the email up to its first dot or @)."""
    with engine.connect() as connection:
        rows = connection.execute(audience_select(to_sql(parse(text))))
        return {row.email.split("@")[0].split(".")[0] for row in rows}


EXAMPLE_PEOPLE = {
    *("dana", "sam", "lee", "priya", "tom", "ingrid"),
    *("marc", "olivia", "raj", "mia", "kofi", "jules"),
}
EVERYONE = EXAMPLE_PEOPLE | {"zoe", "yan"}
DECIDERS = {"dana", "priya", "ingrid", "raj", "kofi"}
WITH_SEATS_OVER_10 = {"dana", "priya", "ingrid", "olivia", "raj"}

FILTERS: list[tuple[str, set[str]]] = [
    # text columns: = is case-sensitive, except email and company.domain
    ('role = "decision maker"', DECIDERS),
    ('role != "decision maker"', EVERYONE - DECIDERS),
    ('ROLE = "Decision Maker"', set()),
    ('email = "DANA.REYES@ACME-LOGISTICS.EXAMPLE"', {"dana"}),
    ('email in ("Raj.Patel@initech.example", "nobody@x.example")', {"raj"}),
    ('company = "Acme Logistics"', {"dana", "sam", "lee"}),
    ('company = "acme logistics"', set()),
    ('company.name != "Acme Logistics"', EXAMPLE_PEOPLE - {"dana", "sam", "lee"}),
    ('company.domain = "NORTHWIND.example"', {"ingrid", "marc"}),
    # contains: case-insensitive, and % and _ are plain characters
    ('name contains "REYES"', {"dana"}),
    ('name contains "an"', {"dana", "yan"}),
    ('company contains "acme"', {"dana", "sam", "lee"}),
    ('email contains "@NORTHWIND."', {"ingrid", "marc"}),
    ('note contains "Über"', {"zoe"}),
    ('note contains "%"', {"zoe"}),
    ('note contains "_"', {"yan"}),
    ('seats contains "an"', {"zoe"}),
    # company attributes; an enduser without a company matches no comparison
    ('company.region = "West Coast"', {"dana", "sam", "lee", "olivia"}),
    ('company.region != "EMEA"', {"dana", "sam", "lee", "priya", "tom", "olivia", "raj", "mia"}),
    ('company.plan in ("pro", "trial")', {"priya", "tom", "raj", "mia", "kofi", "jules"}),
    # has: JSON lists of strings or numbers, exact elements at the top level only
    ('company.products has "Alerts"', {"dana", "sam", "lee", "olivia"}),
    ('company.products has "A/B tests"', {"raj", "mia"}),
    ('company.products has "alerts"', set()),
    ("tags has 2", {"zoe"}),
    ("tags has 2.0", {"zoe"}),
    ('tags has "x"', {"zoe"}),
    ('tags has "2"', set()),
    ('nested has "Tracking"', set()),
    ('note has "plain_text"', set()),  # a string is not a list
    (
        'company.region = "West Coast" and company.products has "Alerts" '
        'and role = "decision maker"',
        {"dana"},
    ),
    # numbers compare numerically, text as text, each only with its own type
    ("seats > 10", WITH_SEATS_OVER_10),
    ("seats >= 40", {"dana", "priya", "ingrid", "raj"}),
    ("seats < 15", {"kofi"}),
    ("seats <= 15", {"olivia", "kofi"}),
    ("seats = 120", {"dana"}),
    ("seats = 120.0", {"dana"}),
    ("seats != 120", {"priya", "ingrid", "olivia", "raj", "kofi"}),
    ('seats = "120"', set()),
    ('seats = "many"', {"zoe"}),
    ('seats > "a"', {"zoe"}),
    ('seats in (5, 15, "many")', {"olivia", "kofi", "zoe"}),
    ("score > 4 and score < 4.6", {"zoe"}),
    ('signed_up >= "2024-01-01"', {"lee", "priya", "tom", "olivia", "kofi", "jules"}),
    ('signed_up < "2023"', {"ingrid", "marc"}),
    ('signed_up = "2023-11-02"', {"dana", "sam"}),
    ('company.plan = "enterprise" and seats > 100', {"dana", "ingrid"}),
    # text orders by code point on both databases: upper case before lower case
    ('name < "a"', EXAMPLE_PEOPLE | {"zoe"}),
    ('name > "Z"', {"zoe", "yan"}),
    # booleans are JSON booleans
    ("vip = true", {"zoe"}),
    ("vip = false", {"yan"}),
    ("vip != true", {"yan"}),
    ('vip = "true"', set()),
    # empty: NULL, a missing key, "" or []
    ("seats is empty", EVERYONE - WITH_SEATS_OVER_10 - {"kofi", "zoe"}),
    ("seats is not empty", WITH_SEATS_OVER_10 | {"kofi", "zoe"}),
    ("nickname is empty", EVERYONE),
    ("note is not empty", {"zoe", "yan"}),
    ("tags is empty", EVERYONE - {"zoe"}),
    ("role is empty", {"zoe", "yan"}),
    ("company is empty", {"zoe", "yan"}),
    ("company.products is empty", {"kofi", "jules", "zoe", "yan"}),
    ("company.domain is not empty", EXAMPLE_PEOPLE),
    # not is the complement: it keeps those a comparison cannot match
    ("not seats > 10", EVERYONE - WITH_SEATS_OVER_10),
    ("not vip = true", EVERYONE - {"zoe"}),
    ('role not in ("admin", "user")', DECIDERS | {"zoe", "yan"}),
    # precedence: not > and > or
    (
        'role = "admin" or role = "user" and company.region = "EMEA"',
        {"sam", "marc", "olivia", "jules"},
    ),
    ('(role = "admin" or role = "user") and company.region = "EMEA"', {"marc", "jules"}),
    ('not role = "admin" and company.region = "EMEA"', {"ingrid", "kofi"}),
    ('not (role = "admin" and company.region = "EMEA")', EVERYONE - {"marc", "jules"}),
    ('role = "decision maker" and not company.region = "EMEA"', {"dana", "priya", "raj"}),
]


@pytest.mark.parametrize(("text", "expected"), FILTERS)
def test_filter(seeded: Engine, text: str, expected: set[str]) -> None:
    assert members(seeded, text) == expected


def test_filters_of_the_same_shape_share_a_cached_statement_but_not_values(
    seeded: Engine,
) -> None:
    for text, expected in [
        ('company.region = "West Coast"', {"dana", "sam", "lee", "olivia"}),
        ('company.region = "EMEA"', {"ingrid", "marc", "kofi", "jules"}),
        ('company.products has "Digests"', {"ingrid", "marc"}),
        ('company.products has "A/B tests"', {"raj", "mia"}),
        ("seats > 100", {"dana", "ingrid"}),
        ("seats > 50", {"dana", "ingrid", "raj"}),
    ]:
        assert members(seeded, text) == expected, text


def test_the_sql_is_only_for_sqlite_and_postgresql() -> None:
    query = audience_select(to_sql(parse("seats > 1")))
    with pytest.raises(CompileError, match="SQLite and PostgreSQL, not mysql"):
        query.compile(dialect=mysql.dialect())


def test_filters_at_the_limits_run_on_both_databases(seeded: Engine) -> None:
    deep = "not " * 16 + "(" * 16 + "seats > 10" + ")" * 16  # an even number of nots
    assert members(seeded, deep) == WITH_SEATS_OVER_10
    values = ", ".join(str(n) for n in range(1000, 1099))
    wide = " or ".join(["seats = 120"] * 100) + f" or seats in (5, {values})"
    assert members(seeded, wide) == {"dana", "kofi"}
    assert members(seeded, "seats < 9223372036854775807 and seats > -1e300") == (
        WITH_SEATS_OVER_10 | {"kofi"}
    )
