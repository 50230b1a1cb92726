from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.dialects import mysql
from sqlalchemy.exc import CompileError

from outreach.audience import (
    And,
    AudienceError,
    Compare,
    Contains,
    Expr,
    Field,
    Has,
    In,
    IsEmpty,
    Not,
    Or,
    audience_select,
    parse,
    parse_addresses,
    render,
    resolve_audience,
    to_sql,
)
from outreach.importer import import_file
from store.schema import companies, endusers

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)

EMAIL = Field("enduser", "email")
NAME = Field("enduser", "name")
ROLE = Field("enduser", "role")
COMPANY = Field("company", "name")
DOMAIN = Field("company", "domain")


def attribute(key: str) -> Field:
    return Field("enduser", key, is_attribute=True)


def company_attribute(key: str) -> Field:
    return Field("company", key, is_attribute=True)


A1 = Compare(attribute("a"), "=", 1)
B2 = Compare(attribute("b"), "=", 2)
C3 = Compare(attribute("c"), "=", 3)


# --- Parsing ---------------------------------------------------------------------------------

GOOD: list[tuple[str, Expr]] = [
    ('role = "decision maker"', Compare(ROLE, "=", "decision maker")),
    ("role = 'admin'", Compare(ROLE, "=", "admin")),
    (r'name = "say \"hi\""', Compare(NAME, "=", 'say "hi"')),
    (r"name = 'it\'s'", Compare(NAME, "=", "it's")),
    (r'name = "back\\slash"', Compare(NAME, "=", "back\\slash")),
    ("name = \u201cDana\u201d", Compare(NAME, "=", "Dana")),  # curly quotes, as Slack types them
    ('Email = "Dana@Acme.example"', Compare(EMAIL, "=", "Dana@Acme.example")),
    ('company = "Acme"', Compare(COMPANY, "=", "Acme")),
    ('company.name != "Acme"', Compare(COMPANY, "!=", "Acme")),
    ('COMPANY.Domain = "acme.example"', Compare(DOMAIN, "=", "acme.example")),
    ('company.region = "EMEA"', Compare(company_attribute("region"), "=", "EMEA")),
    ("seats > 10", Compare(attribute("seats"), ">", 10)),
    ("seats>=-2.5", Compare(attribute("seats"), ">=", -2.5)),
    ("seats <= 1e3", Compare(attribute("seats"), "<=", 1000.0)),
    ("seats < .5", Compare(attribute("seats"), "<", 0.5)),
    ("first-name = 'Al'", Compare(attribute("first-name"), "=", "Al")),
    ("attributes.role = 'x'", Compare(attribute("role"), "=", "x")),
    ("vip = TRUE", Compare(attribute("vip"), "=", True)),
    ("vip != false", Compare(attribute("vip"), "!=", False)),
    ('company.products has "A"', Has(company_attribute("products"), "A")),
    ("tags HAS 3", Has(attribute("tags"), 3)),
    ('name contains "rey"', Contains(NAME, "rey")),
    ('role in ("admin", "user")', In(ROLE, ("admin", "user"))),
    ("seats in (1, 2.5, 'x', true)", In(attribute("seats"), (1, 2.5, "x", True))),
    ("company is empty", IsEmpty(COMPANY)),
    ("seats IS NOT EMPTY", IsEmpty(attribute("seats"), negated=True)),
    ('role not in ("a")', Not(In(ROLE, ("a",)))),
    ('tags not has "x"', Not(Has(attribute("tags"), "x"))),
    (
        'email="x@y.example"and role="r"',
        And((Compare(EMAIL, "=", "x@y.example"), Compare(ROLE, "=", "r"))),
    ),
    ("a = 1 or b = 2 and c = 3", Or((A1, And((B2, C3))))),
    ("(a = 1 or b = 2) and c = 3", And((Or((A1, B2)), C3))),
    ("not a = 1 and b = 2", And((Not(A1), B2))),
    ("not (a = 1 and b = 2)", Not(And((A1, B2)))),
    ("NOT not a = 1", Not(Not(A1))),
    ("a = 1 and (b = 2 and c = 3)", And((A1, B2, C3))),
    ("a = 1 AND b = 2 Or c = 3", Or((And((A1, B2)), C3))),
    ("((a = 1))", A1),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_parse(text: str, expected: Expr) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_rendered_text_parses_back_to_the_same_tree(text: str, expected: Expr) -> None:
    assert parse(render(expected)) == expected


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("ROLE = 'admin'", 'role = "admin"'),
        ("company.name = 'A'", 'company = "A"'),
        ("attributes.role = 1", "attributes.role = 1"),
        ("attributes.seats = 1", "seats = 1"),
        (r"name = 'a\"b\\c'", r'name = "a\"b\\c"'),
        ("(a = 1 or b = 2) and not (c = 3 or a = 1)", "(a = 1 or b = 2) and not (c = 3 or a = 1)"),
        ("x in (1, 'y', false) or z is not empty", 'x in (1, "y", false) or z is not empty'),
    ],
)
def test_render(text: str, rendered: str) -> None:
    assert render(parse(text)) == rendered


BAD: list[tuple[str, int, str]] = [
    ("", 0, "empty audience"),
    ("   ", 0, "empty audience"),
    ('name = "Dana', 7, 'unterminated string: add the closing "'),
    ("name = 'Dana", 7, "unterminated string: add the closing '"),
    ("role =", 6, "expected a value after '=', found end of input"),
    ("seats > ", 8, "expected a value after '>', found end of input"),
    ("role = admin", 7, "found 'admin': put text in quotes, like \"admin\""),
    ('name =~ "x"', 5, "unknown operator '=~'"),
    ('name == "x"', 5, "unknown operator '=='"),
    ('(role = "a"', 11, "expected ')' to close the '(' at column 1, found end of input"),
    ('((role = "a") or name = "b"', 27, "expected ')' to close the '(' at column 1"),
    ('role = "a")', 10, "unexpected ')': there is no '(' to close"),
    ('role = "a" seats', 11, "expected 'and', 'or' or end of input, found 'seats'"),
    ('role = "a" "b"', 11, "expected 'and', 'or' or end of input, found the text \"b\""),
    ('role in "a"', 8, "expected '(' after 'in'"),
    ("role in ()", 9, "expected a value after '(', found ')'"),
    ('role in ("a" "b")', 13, "expected ',' or ')' in the list after 'in'"),
    ('role in ("a",)', 13, "expected a value after ',', found ')'"),
    ('enduser.role = "x"', 0, "unknown field 'enduser.role': the prefixes are company. and"),
    ('enduser.role = "x"', 0, "email, name, role, company, company.name, company.domain"),
    ('company. = "x"', 8, "expected an attribute name after 'company.'"),
    ("company.a.b = 1", 9, "an attribute has no parts; write company.a"),
    ("role", 4, "expected an operator after 'role'"),
    ('and role = "x"', 0, "expected a field such as role or company.region, '(' or 'not'"),
    ('role = "a" and', 14, "expected a field such as role or company.region"),
    ("not", 3, "found end of input"),
    ("seats is full", 9, "expected 'empty' or 'not empty' after 'is', found 'full'"),
    ("role = 5", 7, 'role is text: compare it with text in quotes, like "5"'),
    ('company.domain in ("a", 1)', 24, "company.domain is text"),
    ("vip < true", 6, "true and false can only be compared with = or !=, not <"),
    ('role has "x"', 5, "'has' looks inside a list attribute, and role is text"),
    ("tags has true", 9, "'has' takes text or a number"),
    ("name contains 5", 14, "'contains' takes text in quotes"),
    ("email = dana@x.example", 12, "unexpected character '@': put email addresses"),
    ("seats > 5x", 8, "'5x' is not a number"),
    ("seats in (1, 2x)", 13, "'2x' is not a number"),
    ("seats > 1e999", 8, "too large a number"),
    ('role = "a" & seats > 1', 11, "unexpected character '&'"),
]


@pytest.mark.parametrize(("text", "position", "message"), BAD)
def test_mistakes_say_where_and_what(text: str, position: int, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse(text)
    assert (caught.value.position, message in caught.value.message) == (position, True), (
        caught.value.message
    )


def test_an_error_reads_with_a_caret_under_the_mistake() -> None:
    text = 'role = "admin" and seats >'
    with pytest.raises(AudienceError) as caught:
        parse(text)
    assert caught.value.position == len(text)
    assert str(caught.value) == "at column 27: expected a value after '>', found end of input"
    assert caught.value.pretty(text).splitlines() == [
        text,
        " " * 26 + "^",
        "at column 27: expected a value after '>', found end of input",
    ]


def test_the_sql_is_only_for_sqlite_and_postgresql() -> None:
    query = audience_select(to_sql(parse("seats > 1")))
    with pytest.raises(CompileError, match="SQLite and PostgreSQL, not mysql"):
        query.compile(dialect=mysql.dialect())


# --- Filters against the examples, on SQLite and PostgreSQL ----------------------------------

EXTRA: list[dict[str, Any]] = [
    {
        "email": "zoe@nowhere.example",
        "name": "Zoe Quinn",
        "attributes": {
            "vip": True,
            "tags": [1, 2, "x"],
            "score": 4.5,
            "nickname": "",
            "seats": "many",
            "note": "Über 100% done",
            "nested": [["Tracking"]],
        },
    },
    {
        "email": "yan@nowhere.example",
        "name": "yan li",
        "attributes": {"vip": False, "tags": [], "nickname": None, "note": "plain_text"},
    },
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """The example companies and endusers, and two endusers without a company (EXTRA)."""
    for name in ("companies.csv", "endusers.csv"):
        assert import_file(engine, EXAMPLES / name, now=NOW).bad_rows == []
    with engine.begin() as connection:
        connection.execute(endusers.insert(), EXTRA)
    return engine


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


# --- Resolving: addresses or a filter, bounced and opted-out endusers ------------------------


def bounce(engine: Engine, *emails: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(endusers).where(endusers.c.email.in_(emails)).values(bounced_at=NOW)
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@x.example", ["a@x.example"]),
        (
            " A@X.example,b@x.example;  c@x.example a@x.example ",
            ["a@x.example", "b@x.example", "c@x.example"],
        ),
        ('role = "admin"', None),
        ("(email = 'a@x.example')", None),
        ("", None),
    ],
)
def test_parse_addresses(text: str, expected: list[str] | None) -> None:
    assert parse_addresses(text) == expected


def test_a_bad_address_in_a_list_is_named() -> None:
    text = "dana.reyes@acme-logistics.example, bob, x@y.example"
    with pytest.raises(AudienceError) as caught:
        parse_addresses(text)
    assert caught.value.position == text.index("bob")
    assert "'bob' is not an email address" in caught.value.message


def test_addresses_resolve_and_unknown_ones_become_endusers_of_their_domain_company(
    seeded: Engine,
) -> None:
    text = (
        "Dana.Reyes@acme-logistics.example, new.person@eu.northwind.example "
        "nobody@unknown.example dana.reyes@acme-logistics.example"
    )
    with seeded.begin() as connection:
        audience = resolve_audience(connection, text)
    assert [row.email for row in audience.endusers] == [
        "dana.reyes@acme-logistics.example",
        "new.person@eu.northwind.example",
        "nobody@unknown.example",
    ]
    assert audience.created == ["new.person@eu.northwind.example", "nobody@unknown.example"]
    assert [row.company_name for row in audience.endusers] == [
        "Acme Logistics",
        "Northwind Traders",  # by the parent domain
        None,
    ]
    assert audience.summary() == "3 endusers (2 new: added to the endusers)"
    with seeded.begin() as connection:  # the second time they are known
        again = resolve_audience(connection, text)
    assert (again.created, [r.id for r in again.endusers]) == (
        [],
        [r.id for r in audience.endusers],
    )


def test_a_bad_address_creates_nobody(seeded: Engine) -> None:
    with seeded.begin() as connection:
        before = connection.scalar(select(func.count()).select_from(endusers))
        with pytest.raises(AudienceError, match="'nope' is not an email address"):
            resolve_audience(connection, "new@x.example nope")
        assert connection.scalar(select(func.count()).select_from(endusers)) == before


def test_bounced_endusers_are_left_out_unless_forced(seeded: Engine) -> None:
    bounce(seeded, "priya.nair@bluebird-health.example", "raj.patel@initech.example")
    with seeded.connect() as connection:
        audience = resolve_audience(connection, 'role = "decision maker"')
        forced = resolve_audience(connection, 'role = "decision maker"', force=True)
        listed = resolve_audience(connection, "raj.patel@initech.example")
    assert [row.email.split(".")[0] for row in audience.endusers] == ["dana", "ingrid", "kofi"]
    assert audience.excluded_bounced == [
        "priya.nair@bluebird-health.example",
        "raj.patel@initech.example",
    ]
    assert audience.summary() == "3 endusers (2 bounced left out: use force to include them)"
    ids = [row.id for row in forced.endusers]
    assert (len(ids), ids == sorted(ids), forced.excluded_bounced) == (5, True, [])
    assert forced.summary() == "5 endusers"
    assert (listed.endusers, listed.excluded_bounced) == ([], ["raj.patel@initech.example"])


def test_opted_out_endusers_are_emailed_without_tracking(seeded: Engine) -> None:
    bounce(seeded, "priya.nair@bluebird-health.example", "raj.patel@initech.example")
    with seeded.connect() as connection:
        bluebird = resolve_audience(connection, 'company = "Bluebird Health"')
        everyone = resolve_audience(connection, "company is not empty")
    assert [row.email for row in bluebird.endusers] == ["tom.becker@bluebird-health.example"]
    assert bluebird.tracking_off == ["tom.becker@bluebird-health.example"]
    assert bluebird.summary() == (
        "1 enduser (1 bounced left out: use force to include them; 1 without tracking: opted out)"
    )
    assert everyone.summary() == (
        "10 endusers (2 bounced left out: use force to include them; 1 without tracking: opted out)"
    )


def test_a_filter_mistake_is_an_audience_error(seeded: Engine) -> None:
    with seeded.connect() as connection, pytest.raises(AudienceError) as caught:
        resolve_audience(connection, 'enduser.role = "admin"')
    assert caught.value.position == 0


def test_resolved_rows_carry_the_enduser_columns_and_company_name(seeded: Engine) -> None:
    with seeded.connect() as connection:
        row = resolve_audience(connection, 'email = "olivia.hart@globex.example"').endusers[0]
        company_id = connection.scalar(
            select(companies.c.id).where(companies.c.name == "Globex Analytics")
        )
    assert (row.name, row.role, row.company_id, row.company_name) == (
        "Olivia Hart",
        "admin",
        company_id,
        "Globex Analytics",
    )
    assert row.attributes == {"seats": 15, "signed_up": "2024-04-11"}
