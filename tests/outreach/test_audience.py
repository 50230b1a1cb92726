"""Resolving an audience: a list of addresses or a filter, bounced and opted-out endusers, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, update

from outreach.audience import parse_addresses, resolve_audience
from outreach.filters import AudienceError
from store.schema import companies, endusers

NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)


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
