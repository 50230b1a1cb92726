"""The filter language: parsing, rendering back to text, and positioned mistakes."""

from __future__ import annotations

import time
from typing import cast

import pytest

from outreach.filters import (
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
    parse,
    render,
)

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


# --- Limits ----------------------------------------------------------------------------------

DEPTH = "nested more than 32 deep in parentheses and 'not'"
TERMS = "more than 200 comparisons (each value after 'in' counts as one)"
NESTED_GROUPS = "(" * 400 + "a = 1" + "".join(f" and b = {i})" for i in range(400))


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("(" * 900 + "a = 1" + ")" * 900, 32, DEPTH),
        ("not " * 1000 + "a = 1", 128, DEPTH),
        (NESTED_GROUPS, 32, DEPTH),
        ("not (" * 17 + "a = 1" + ")" * 17, 80, DEPTH),
        (" or ".join(["a = 1"] * 1001), 1800, TERMS),
        ("role in (" + ", ".join(['"x"'] * 300) + ")", 1009, TERMS),
        ("seats > 1" + "0" * 30, 8, "10000000000000000000… is too large a whole number"),
        ("seats > 1" + "0" * 5000, 8, "the largest is 9223372036854775807"),
        ("seats > -9223372036854775808", 8, "write larger numbers with an exponent, like 1e30"),
        ("seats > 1" + "0" * 400 + ".5", 8, "too large a number"),
        ("a" * 10_001, 10_000, "the filter is 10,001 characters long, more than 10,000"),
    ],
)
def test_limits_say_where_and_what(text: str, position: int, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse(text)
    assert (caught.value.position, message in caught.value.message) == (position, True), (
        caught.value.message
    )


def test_a_filter_at_the_limits_parses() -> None:
    deep = "not " * 16 + "(" * 16 + "a = 1" + ")" * 16
    assert parse(deep) == nots(16, A1)
    wide = " or ".join(["a = 1"] * 199) + " or role in ('x')"
    assert len(cast(Or, parse(wide)).operands) == 200
    assert parse("seats > 9223372036854775807 or seats < -9223372036854775807 or x > 1e30")


def nots(count: int, expr: Expr) -> Expr:
    for _ in range(count):
        expr = Not(expr)
    return expr


def test_a_10_mb_filter_is_refused_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(AudienceError, match="10,485,760 characters long"):
        parse("(" * (10 * 2**20))
    assert time.perf_counter() - started < 0.1
