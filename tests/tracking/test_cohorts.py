"""Cohorts: parsing `cohort engaged|unengaged <template|campaign> [since 30d]`, and who engaged
with a template's or a campaign's emails, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select

from outreach.filters import AudienceError
from store.schema import campaigns, emails, endusers, engagements, templates
from tracking.cohorts import CohortSpec, cohort_enduser_ids, parse_cohort

NOW = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
YESTERDAY = NOW - timedelta(days=1)


# --- Writing a history of sent emails --------------------------------------------------------


def add_template(connection: Connection, key: str, version: int = 1) -> int:
    row = {"key": key, "version": version, "subject": key, "body": key, "checksum": key}
    return int(connection.execute(templates.insert().returning(templates.c.id), row).scalar_one())


def add_campaign(connection: Connection, template_id: int) -> int:
    row = {"template_id": template_id, "track_opens": True, "track_clicks": True}
    return int(connection.execute(campaigns.insert().returning(campaigns.c.id), row).scalar_one())


def add_enduser(connection: Connection, email: str, name: str = "") -> int:
    row = {"email": email, "name": name, "attributes": {}}
    return int(connection.execute(endusers.insert().returning(endusers.c.id), row).scalar_one())


def add_email(
    connection: Connection,
    enduser_id: int,
    template_id: int,
    campaign_id: int | None = None,
    *,
    sent_at: datetime | None = YESTERDAY,  # None: planned, never sent
    tracked: bool = True,
    opened: bool = False,
    machine_opened: bool = False,  # an open classified as a machine's: raw only
    clicked: bool = False,
    replied: bool = False,
    bounced: bool = False,
) -> int:
    """An email and its engagement row, as sending and tracking would leave them."""
    address = connection.scalar(select(endusers.c.email).where(endusers.c.id == enduser_id))
    count = connection.scalar(select(emails.c.id).order_by(emails.c.id.desc()).limit(1)) or 0
    email = {
        "campaign_id": campaign_id,
        "template_id": template_id,
        "enduser_id": enduser_id,
        "to_addrs": [address],
        "subject": "Hello",
        "open_tracking": tracked,
        "click_tracking": tracked,
        "status": "planned" if sent_at is None else "sent",
        "idempotency_key": f"test-{count + 1}",
        "sent_at": sent_at,
    }
    email_id = int(connection.execute(emails.insert().returning(emails.c.id), email).scalar_one())

    def rate(happened: bool) -> int | None:
        return (100 if happened else 0) if tracked else None

    connection.execute(
        engagements.insert(),
        {
            "email_id": email_id,
            "enduser_id": enduser_id,
            "campaign_id": campaign_id,
            "template_id": template_id,
            "sent_at": sent_at,
            "open_rate": rate(opened or clicked),
            "open_rate_raw": rate(opened or clicked or machine_opened),
            "click_rate": rate(clicked),
            "click_rate_raw": rate(clicked),
            "reply_rate": 100 if replied else 0,
            "bounced_at": sent_at if bounced else None,
        },
    )
    return email_id


@dataclass(frozen=True)
class History:
    endusers: dict[str, int]  # ids by first name
    campaigns: dict[str, int]  # c1, c2: outage v1, v2; c3: welcome

    def names(self, ids: list[int]) -> list[str]:
        by_id = {enduser_id: name for name, enduser_id in self.endusers.items()}
        return [by_id[enduser_id] for enduser_id in ids]


@pytest.fixture
def history(engine: Engine) -> History:
    """Two versions of the `outage` template, each sent by its own campaign, and `welcome`."""
    with engine.begin() as connection:
        outage_v1 = add_template(connection, "outage")
        outage_v2 = add_template(connection, "outage", 2)
        welcome = add_template(connection, "welcome")
        c1, c2, c3 = (add_campaign(connection, t) for t in (outage_v1, outage_v2, welcome))
        ids = {
            name: add_enduser(connection, f"{name}@x.example", name.title())
            for name in ("ana", "ben", "cai", "dee", "eve", "fay", "gus", "hal", "ivy")
        }
        add_email(connection, ids["ana"], outage_v1, c1, opened=True)
        add_email(connection, ids["ben"], outage_v2, c2, clicked=True)
        add_email(connection, ids["cai"], outage_v1, c1, machine_opened=True)
        add_email(connection, ids["dee"], outage_v1, c1, sent_at=NOW - timedelta(40), replied=True)
        add_email(connection, ids["dee"], outage_v2, c2)
        add_email(connection, ids["eve"], outage_v1, c1, opened=True, bounced=True)
        add_email(connection, ids["fay"], outage_v1, c1, tracked=False)
        add_email(connection, ids["fay"], welcome, c3, opened=True)
        add_email(connection, ids["gus"], outage_v1, c1, sent_at=None)
        add_email(connection, ids["hal"], outage_v1, c1, tracked=False, replied=True)
        add_email(connection, ids["ivy"], outage_v1, sent_at=NOW - timedelta(30), opened=True)
    return History(ids, {"c1": c1, "c2": c2, "c3": c3})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # any version of the template; a machine's open is no open; a reply with tracking off is
        ("cohort engaged outage", ["ana", "ben", "dee", "hal", "ivy"]),
        ("cohort unengaged outage", ["cai", "fay"]),
        # dee's reply is older than 30 days; ivy's open is exactly 30 days old
        ("cohort engaged outage since 30d", ["ana", "ben", "hal", "ivy"]),
        ("cohort unengaged outage since 30d", ["cai", "dee", "fay"]),
        ("cohort engaged outage since 29d", ["ana", "ben", "hal"]),
        ("cohort engaged welcome", ["fay"]),
        ("cohort unengaged welcome", []),
        ("cohort engaged {c1}", ["ana", "dee", "hal"]),
        ("cohort unengaged #{c1}", ["cai", "fay"]),
        ("COHORT Engaged #{c2}", ["ben"]),
        ("cohort unengaged {c2}", ["dee"]),
        ("cohort unengaged {c2} since 1d", ["dee"]),
    ],
)
def test_who_engaged(engine: Engine, history: History, text: str, expected: list[str]) -> None:
    spec = parse_cohort(text.format(**history.campaigns))
    assert spec is not None
    with engine.connect() as connection:
        assert history.names(cohort_enduser_ids(connection, spec, now=NOW)) == expected


def test_bounced_and_unsent_emails_are_not_received(engine: Engine, history: History) -> None:
    # eve's only email bounced (though opened), gus's was never sent: in neither cohort
    with engine.connect() as connection:
        everyone = {
            enduser_id
            for engaged in (True, False)
            for spec in (
                CohortSpec(engaged, "outage", None, None),
                CohortSpec(engaged, None, history.campaigns["c1"], None),
            )
            for enduser_id in cohort_enduser_ids(connection, spec, now=NOW)
        }
    assert history.endusers["eve"] not in everyone
    assert history.endusers["gus"] not in everyone
    assert history.endusers["ana"] in everyone


@pytest.mark.parametrize(
    ("spec", "message", "position"),
    [
        (
            CohortSpec(True, "nope", None, None, target_at=15),
            "there is no template or campaign `nope`",
            15,
        ),
        (CohortSpec(False, None, 99, None, target_at=17), "there is no campaign #99", 17),
    ],
)
def test_an_unknown_target_is_an_audience_error(
    engine: Engine, history: History, spec: CohortSpec, message: str, position: int
) -> None:
    with engine.connect() as connection, pytest.raises(AudienceError) as caught:
        cohort_enduser_ids(connection, spec, now=NOW)
    assert caught.value.message.startswith(message)
    assert caught.value.position == position


def test_a_template_never_sent_is_an_empty_cohort(engine: Engine) -> None:
    with engine.begin() as connection:
        add_template(connection, "draft")
        assert cohort_enduser_ids(connection, CohortSpec(False, "draft", None, None), now=NOW) == []


def test_one_query_for_many_endusers(engine: Engine) -> None:
    with engine.begin() as connection:
        template_id = add_template(connection, "outage")
        campaign_id = add_campaign(connection, template_id)
        rows = [{"email": f"u{i}@x.example", "attributes": {}} for i in range(300)]
        ids = list(connection.scalars(endusers.insert().returning(endusers.c.id), rows))
        mails = connection.scalars(
            emails.insert().returning(emails.c.id, sort_by_parameter_order=True),
            [
                {
                    "enduser_id": enduser_id,
                    "to_addrs": [],
                    "subject": "Hello",
                    "open_tracking": True,
                    "click_tracking": True,
                    "idempotency_key": f"bulk-{enduser_id}",
                }
                for enduser_id in ids
            ],
        )
        connection.execute(
            engagements.insert(),
            [
                {
                    "email_id": email_id,
                    "enduser_id": enduser_id,
                    "campaign_id": campaign_id,
                    "template_id": template_id,
                    "sent_at": YESTERDAY,
                    "open_rate": 100 if enduser_id % 3 == 0 else 0,
                    "click_rate": 0,
                }
                for email_id, enduser_id in zip(mails, ids, strict=True)
            ],
        )
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].startswith("SELECT"):
            statements.append(args[2])

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", count)
        engaged = cohort_enduser_ids(connection, CohortSpec(True, "outage", None, 7), now=NOW)
        unengaged = cohort_enduser_ids(
            connection, CohortSpec(False, None, campaign_id, None), now=NOW
        )
    assert engaged == [i for i in ids if i % 3 == 0]
    assert unengaged == [i for i in ids if i % 3 != 0]
    assert len(statements) == 4  # per cohort: does the target exist, and who


# --- Parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cohort engaged outage", CohortSpec(True, "outage", None, None)),
        ("Cohort UNENGAGED #12 Since 30D", CohortSpec(False, None, 12, 30)),
        ("cohort unengaged 12 since 7d", CohortSpec(False, None, 12, 7)),
        ("  cohort  engaged\twelcome.v2   since  1d ", CohortSpec(True, "welcome.v2", None, 1)),
        ("cohort engaged Outage-2024", CohortSpec(True, "Outage-2024", None, None)),
        # not cohorts: a filter (an attribute named cohort too), an address list, nothing
        ('role = "admin"', None),
        ("cohorts engaged outage", None),
        ('cohort = "spring"', None),
        ('cohort != "spring"', None),
        ('cohort in ("spring", "fall")', None),
        ("cohort is not empty", None),
        ('cohort not in ("spring")', None),
        ("cohort.name = 'x'", None),
        ("dana@x.example", None),
        ("", None),
    ],
)
def test_parse_cohort(text: str, expected: CohortSpec | None) -> None:
    assert parse_cohort(text) == expected


def test_the_target_position_is_kept_for_errors() -> None:
    spec = parse_cohort("cohort engaged  #7")
    assert spec is not None and spec.target_at == 16


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("cohort", "", "expected engaged or unengaged after 'cohort', found end of input"),
        (
            "cohort active outage",
            "active",
            "expected engaged or unengaged after 'cohort', found 'active'",
        ),
        (
            "cohort engaged",
            "",
            "expected a template key or a campaign number (like #12) after 'engaged', found end",
        ),
        (
            "cohort unengaged since 30d",
            "since",
            "a template key or a campaign number (like #12) after 'unengaged', found 'since'",
        ),
        ("cohort engaged #x", "#x", "'#x' is not a campaign number: write it like #12"),
        ("cohort engaged #", "#", "'#' is not a campaign number"),
        ("cohort engaged #0", "#0", "there is no campaign #0"),
        (
            "cohort engaged outage since",
            "",
            "expected a number of days after 'since', like since 30d, found end of input",
        ),
        ("cohort engaged outage since 30", "30", "like since 30d, found '30'"),
        ("cohort engaged outage since 12h", "12h", "like since 30d, found '12h'"),
        ("cohort engaged outage since 0d", "0d", "'since 0d': give from 1 to 36500 days"),
        ("cohort engaged outage since 99999999999999d", "999", "give from 1 to 36500 days"),
        (
            "cohort engaged outage last 30d",
            "last",
            "expected 'since' (like since 30d) or end of input after 'outage', found 'last'",
        ),
        (
            "cohort engaged outage since 30d please",
            "please",
            "expected end of input after 'since 30d', found 'please'",
        ),
    ],
)
def test_a_malformed_cohort_says_what_to_write(text: str, where: str, message: str) -> None:
    with pytest.raises(AudienceError) as caught:
        parse_cohort(text)
    assert message in caught.value.message
    assert caught.value.position == (text.index(where) if where else len(text))


def test_a_cohort_error_points_at_the_mistake() -> None:
    text = "cohort engaged outage since 3 days"
    with pytest.raises(AudienceError) as caught:
        parse_cohort(text)
    assert caught.value.pretty(text) == (
        "cohort engaged outage since 3 days\n"
        "                            ^\n"
        "at column 29: expected a number of days after 'since', like since 30d, found '3'"
    )


def test_a_cohort_names_a_template_or_a_campaign() -> None:
    with pytest.raises(ValueError, match="not both or neither"):
        CohortSpec(True, "outage", 12, None)
