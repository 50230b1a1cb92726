"""Resolving an audience: a list of addresses, a cohort or a filter, its order, bounced and
opted-out endusers, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, func, select, update

from outreach.audience import parse_addresses, resolve_audience
from outreach.filters import AudienceError
from store.schema import companies, endusers
from tests.tracking.test_cohorts import add_campaign, add_email, add_template

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
    names = [row.name for row in forced.endusers]
    assert (names, forced.excluded_bounced) == (
        ["Dana Reyes", "Ingrid Larsen", "Kofi Mensah", "Priya Nair", "Raj Patel"],
        [],
    )
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


# --- Order: a group email's first To recipient is credited with its outcomes ------------------


def test_an_address_list_keeps_the_order_it_was_typed_in(seeded: Engine) -> None:
    with seeded.begin() as connection:
        connection.execute(
            endusers.insert(),
            [
                {"email": "jonas@x.example", "name": "Jonas", "attributes": {}},
                {"email": "sofia@x.example", "name": "Sofia", "attributes": {}},
            ],
        )
    bounce(seeded, "priya.nair@bluebird-health.example", "raj.patel@initech.example")
    text = (
        "sofia@x.example, new@x.example, tom.becker@bluebird-health.example, jonas@x.example, "
        "raj.patel@initech.example, priya.nair@bluebird-health.example, SOFIA@x.example"
    )
    with seeded.begin() as connection:
        audience = resolve_audience(connection, text)
        forced = resolve_audience(connection, text, force=True)
    assert [row.email for row in audience.endusers] == [
        "sofia@x.example",
        "new@x.example",
        "tom.becker@bluebird-health.example",
        "jonas@x.example",
    ]
    assert audience.excluded_bounced == [
        "raj.patel@initech.example",
        "priya.nair@bluebird-health.example",
    ]
    assert [row.email.split("@")[0] for row in forced.endusers] == [
        "sofia",
        "new",
        "tom.becker",
        "jonas",
        "raj.patel",
        "priya.nair",
    ]


def test_a_filter_is_ordered_by_name_ignoring_case_then_email(seeded: Engine) -> None:
    more = [  # without a name (made from an address list): after the named ones, by email
        ("b@nameless.example", "", False),
        ("a@nameless.example", "", False),
        ("sam@other.example", "sam okafor", False),
        ("tracker@other.example", "", True),
        ("abe@other.example", "Abe", True),
    ]
    with seeded.begin() as connection:
        connection.execute(
            endusers.insert(),
            [
                {"email": email, "name": name, "tracking_opt_out": opt_out, "attributes": {}}
                for email, name, opt_out in more
            ],
        )
    bounce(
        seeded,
        "raj.patel@initech.example",
        "a@nameless.example",
        "kofi.mensah@umbrella-retail.example",
    )
    with seeded.connect() as connection:
        audience = resolve_audience(connection, "email is not empty")
    assert [row.name or row.email for row in audience.endusers] == [
        "Abe",
        "Dana Reyes",
        "Ingrid Larsen",
        "Jules Martin",
        "Lee Chen",
        "Marc Dubois",
        "Mia Novak",
        "Olivia Hart",
        "Priya Nair",
        "Sam Okafor",  # sam.okafor@acme-logistics.example
        "sam okafor",  # sam@other.example: the same name but for case, so by email
        "Tom Becker",
        "yan li",  # not after Z: case is ignored
        "Zoe Quinn",
        "b@nameless.example",
        "tracker@other.example",
    ]
    assert audience.excluded_bounced == [
        "kofi.mensah@umbrella-retail.example",
        "raj.patel@initech.example",
        "a@nameless.example",
    ]
    assert audience.tracking_off == [
        "abe@other.example",
        "tom.becker@bluebird-health.example",
        "tracker@other.example",
    ]


# --- Cohorts ---------------------------------------------------------------------------------


def enduser_id(connection: Connection, email: str) -> int:
    query = select(endusers.c.id).where(endusers.c.email == email)
    return int(connection.execute(query).scalar_one())


@pytest.fixture
def outage(seeded: Engine) -> int:
    """The `outage` template's campaign: who opened, who did not, long ago and lately."""
    with seeded.begin() as connection:
        template_id = add_template(connection, "outage")
        campaign_id = add_campaign(connection, template_id)

        def sent(email: str, days_ago: int, **outcome: bool) -> None:
            at = NOW - timedelta(days=days_ago)
            enduser = enduser_id(connection, email)
            add_email(connection, enduser, template_id, campaign_id, sent_at=at, **outcome)

        sent("zoe@nowhere.example", 2)
        sent("yan@nowhere.example", 3)
        sent("dana.reyes@acme-logistics.example", 10)
        sent("raj.patel@initech.example", 10)  # bounced since, as an enduser
        sent("olivia.hart@globex.example", 10, opened=True)
        sent("ingrid.larsen@northwind.example", 60)  # only long ago
        sent("mia.novak@initech.example", 60, replied=True)
        sent("mia.novak@initech.example", 5)
    bounce(seeded, "raj.patel@initech.example")
    return campaign_id


def test_a_cohort_audience_is_ordered_by_name_and_leaves_bounced_out(
    seeded: Engine, outage: int
) -> None:
    with seeded.connect() as connection:
        recent = resolve_audience(connection, "cohort unengaged outage since 30d", now=NOW)
        ever = resolve_audience(connection, f"Cohort Unengaged #{outage}", now=NOW)
        forced = resolve_audience(connection, f"cohort unengaged {outage}", now=NOW, force=True)
        engaged = resolve_audience(connection, "cohort engaged outage", now=NOW)
    assert [row.name for row in recent.endusers] == [
        "Dana Reyes",
        "Mia Novak",  # her reply is older than 30 days
        "yan li",
        "Zoe Quinn",
    ]
    assert recent.excluded_bounced == ["raj.patel@initech.example"]
    assert [row.name for row in ever.endusers] == [
        "Dana Reyes",
        "Ingrid Larsen",
        "yan li",
        "Zoe Quinn",
    ]
    assert [row.name for row in forced.endusers][-3:] == ["Raj Patel", "yan li", "Zoe Quinn"]
    assert [row.name for row in engaged.endusers] == ["Mia Novak", "Olivia Hart"]
    assert engaged.endusers[1].company_name == "Globex Analytics"


def test_a_cohort_is_resolved_as_of_now(seeded: Engine, outage: int) -> None:
    with seeded.connect() as connection:

        def names(now: datetime) -> list[str]:
            audience = resolve_audience(connection, "cohort unengaged outage since 7d", now=now)
            return [row.name for row in audience.endusers]

        assert names(NOW) == ["Mia Novak", "yan li", "Zoe Quinn"]
        assert names(NOW + timedelta(days=4)) == ["yan li", "Zoe Quinn"]
        assert names(NOW - timedelta(days=4)) == ["Dana Reyes", "Mia Novak", "yan li", "Zoe Quinn"]
        assert names(NOW + timedelta(days=30)) == []


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ("cohort unengaged nope since 30d", "there is no template or campaign `nope`", "nope"),
        ("cohort engaged #4242", "there is no campaign #4242", "#4242"),
        ("cohort sleepy outage", "expected engaged or unengaged after 'cohort'", "sleepy"),
    ],
)
def test_a_cohort_mistake_is_an_audience_error(
    seeded: Engine, outage: int, text: str, message: str, where: str
) -> None:
    with seeded.connect() as connection, pytest.raises(AudienceError) as caught:
        resolve_audience(connection, text, now=NOW)
    assert caught.value.message.startswith(message)
    assert caught.value.position == text.index(where)


def test_a_filter_on_an_attribute_named_cohort_is_still_a_filter(seeded: Engine) -> None:
    with seeded.begin() as connection:
        connection.execute(
            endusers.insert(), {"email": "c@x.example", "attributes": {"cohort": "spring"}}
        )
        audience = resolve_audience(connection, 'cohort = "spring"')
    assert [row.email for row in audience.endusers] == ["c@x.example"]
