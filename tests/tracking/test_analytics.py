"""Who to follow up on, a campaign's report and stats by dimension, on SQLite and PostgreSQL,
over emails planned, sent and engaged with as the rest of mailbeacon leaves them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, select, update

from outreach.campaigns import CampaignPlan, Outgoing, plan_campaign
from outreach.emails import Draft, create_email, mark_sent_many
from store.schema import companies, emails, endusers, engagements, events, templates, users
from tests.helpers import SIGNER, TRACKING
from tracking import analytics
from tracking.analytics import Rates, Recipient, campaign_report, not_engaged, stats
from tracking.engagement import Tally, engagement_values
from tracking.instrument import TrackingFlags

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
PERSON = None  # an event's machine reason: a person did it

# Campaign "outage" (template welcome v1, Alice, opens and clicks tracked): what each got.
OUTAGE: dict[str, list[tuple[str, str | None]]] = {
    "ann": [("open", PERSON), ("open", PERSON)],
    "ben": [],
    "cat": [("open", PERSON), ("reply", PERSON)],  # replied: on no list
    "dan": [("open", "apple_mpp"), ("open", "apple_mpp"), ("click", "link_scanner")],
    "eve": [("bounce", PERSON)],  # bounced: on no list
    "fay": [],  # failed to send: on no list
    "gus": [],  # clicked with images off: written below as the row says it
    "hal": [("auto_reply", PERSON)],  # out of office: not a reply
}
# Campaign "renewal" (template welcome v2, Bob, clicks tracked, opens not).
RENEWAL: dict[str, list[tuple[str, str | None]]] = {
    "ann": [("click", PERSON)],
    "ben": [],
    "ivy": [("reply", PERSON)],
}
COMPANY = {"ann": "Acme", "ben": "Acme", "cat": "Globex", "eve": "Globex"}


@dataclass(frozen=True)
class World:
    outage: int
    renewal: int
    alice: int
    bob: int
    email_of: dict[str, int]  # the outage email of each
    enduser_of: dict[str, int]


def address(name: str) -> str:
    return f"{name}@customer.example"


@pytest.fixture
def world(engine: Engine) -> World:
    names = sorted({*OUTAGE, *RENEWAL, "kim"})
    with engine.begin() as connection:
        alice, bob = (
            connection.execute(
                users.insert().values(email=f"{who}@us.example").returning(users.c.id)
            ).scalar_one()
            for who in ("alice", "bob")
        )
        company_of = {
            name: connection.execute(
                companies.insert().values(name=name, attributes={}).returning(companies.c.id)
            ).scalar_one()
            for name in ("Acme", "Globex")
        }
        enduser_of = {
            name: connection.execute(
                endusers.insert()
                .values(
                    email=address(name),
                    name=name.title(),
                    company_id=company_of.get(COMPANY.get(name, "")),
                    attributes={},
                )
                .returning(endusers.c.id)
            ).scalar_one()
            for name in names
        }
        welcome_v1, welcome_v2 = (
            connection.execute(
                templates.insert()
                .values(key="welcome", version=v, subject="Hi", body="Hi", checksum=str(v))
                .returning(templates.c.id)
            ).scalar_one()
            for v in (1, 2)
        )
        outage = _campaign(
            connection, "outage", OUTAGE, enduser_of, welcome_v1, alice, TrackingFlags(True, True)
        )
        renewal = _campaign(
            connection, "renewal", RENEWAL, enduser_of, welcome_v2, bob, TrackingFlags(False, True)
        )
        # A one-off email to Kim a month earlier: no campaign, no template, no sender.
        draft = Draft("kim", [address("kim")], "Hi", "<p>Hi</p>", "Hi", TrackingFlags(True, True))
        kim, _ = create_email(connection, draft, SIGNER, TRACKING)
        kims = {"email_id": kim, "message_id": "<kim@us>", "sent_at": T0 - timedelta(days=30)}
        mark_sent_many(connection, [kims])
        connection.execute(
            update(emails).where(emails.c.id == kim).values(enduser_id=enduser_of["kim"])
        )
        connection.execute(
            update(engagements)
            .where(engagements.c.email_id == kim)
            .values(enduser_id=enduser_of["kim"])
        )
        email_of = _emails_of(connection, outage, enduser_of)
        # Gus's images stayed off, he clicked: a row (as an older recorder left it) where the
        # pixel says no and the click says yes.
        connection.execute(
            update(engagements)
            .where(engagements.c.email_id == email_of["gus"])
            .values(click_rate=100, click_rate_raw=100, clicks=1, clicks_raw=1)
        )
    return World(outage, renewal, alice, bob, email_of, enduser_of)


def _campaign(
    connection: Connection,
    name: str,
    happened: dict[str, list[tuple[str, str | None]]],
    enduser_of: dict[str, int],
    template_id: int,
    sender: int,
    flags: TrackingFlags,
) -> int:
    """Planned, sent (all but Fay's), and engaged with as `happened` says."""
    plan = CampaignPlan(
        name, "me@us.example", flags, template_id=template_id, sender_user_id=sender
    )
    outgoing = [
        Outgoing([address(who)], name, "<p>Hi</p>", "Hi", enduser_of[who]) for who in happened
    ]
    campaign = plan_campaign(connection, plan, outgoing, SIGNER, TRACKING)
    email_of = _emails_of(connection, campaign, enduser_of)
    mark_sent_many(
        connection,
        [
            {"email_id": email_of[who], "message_id": f"<{name}-{who}@us>", "sent_at": T0}
            for who in happened
            if who != "fay"
        ],
    )
    if "fay" in happened:
        failed = update(emails).where(emails.c.id == email_of["fay"]).values(status="failed")
        connection.execute(failed)
    for who, hits in happened.items():
        if hits:
            _engage(connection, email_of[who], hits, flags)
    return campaign


def _emails_of(connection: Connection, campaign: int, enduser_of: dict[str, int]) -> dict[str, int]:
    name_of = {enduser: name for name, enduser in enduser_of.items()}
    query = select(emails.c.enduser_id, emails.c.id).where(emails.c.campaign_id == campaign)
    return {name_of[enduser]: email for enduser, email in connection.execute(query)}


def _engage(
    connection: Connection,
    email_id: int,
    hits: list[tuple[str, str | None]],
    flags: TrackingFlags,
) -> None:
    """The events, and the engagement row brought up to date from them by the rules."""
    at = [T0 + timedelta(hours=1 + n) for n in range(len(hits))]
    connection.execute(
        events.insert(),
        [
            {
                "email_id": email_id,
                "kind": kind,
                "at": when,
                "machine": reason is not None,
                "machine_reason": reason,
            }
            for (kind, reason), when in zip(hits, at, strict=True)
        ],
    )
    tallies = [
        Tally(kind, reason is not None, 1, when)
        for (kind, reason), when in zip(hits, at, strict=True)
    ]
    values = engagement_values(tallies, open_tracking=flags.opens, click_tracking=flags.clicks)
    connection.execute(update(engagements).where(engagements.c.email_id == email_id).values(values))


@pytest.mark.parametrize(
    ("outcome", "include_machine", "expected"),
    [
        # Dan's opens and click were Apple's proxy and a link scanner; Gus clicked.
        ("opened", False, ["ben", "dan", "hal"]),
        ("opened", True, ["ben", "hal"]),
        ("clicked", False, ["ann", "ben", "dan", "hal"]),
        ("clicked", True, ["ann", "ben", "hal"]),
        ("replied", False, ["ann", "ben", "dan", "gus", "hal"]),
        ("replied", True, ["ann", "ben", "dan", "gus", "hal"]),
    ],
)
def test_follow_up_lists_leave_out_repliers_bounces_and_unsent(
    engine: Engine, world: World, outcome: Any, include_machine: bool, expected: list[str]
) -> None:
    with engine.connect() as connection:
        found = not_engaged(connection, world.outage, outcome, include_machine=include_machine)
    assert [row.email for row in found.endusers] == [address(who) for who in expected]
    assert found.untracked == 0


def test_a_follow_up_list_names_the_person_and_their_company(engine: Engine, world: World) -> None:
    with engine.connect() as connection:
        found = not_engaged(connection, world.outage, "opened")
    ben, dan = found.endusers[:2]
    assert ben == Recipient(
        world.email_of["ben"], world.enduser_of["ben"], address("ben"), "Ben", "Acme"
    )
    assert dan.company is None


def test_emails_without_that_tracking_are_counted_apart(engine: Engine, world: World) -> None:
    """Renewal had no open tracking: Ben cannot be told apart; Ann clicked (she read it) and
    Ivy replied, so neither is in doubt."""
    with engine.connect() as connection:
        opened = not_engaged(connection, world.renewal, "opened")
        clicked = not_engaged(connection, world.renewal, "clicked")
    assert (opened.endusers, opened.untracked) == ([], 1)
    assert ([row.email for row in clicked.endusers], clicked.untracked) == ([address("ben")], 0)


def test_a_campaign_report_counts_rates_and_machine_reasons(engine: Engine, world: World) -> None:
    with engine.connect() as connection:
        report = campaign_report(connection, world.outage)
    counts = (
        report.planned,
        report.sent,
        report.failed,
        report.bounced,
        report.auto_replied,
        report.replied,
    )
    assert counts == (8, 7, 1, 1, 1, 1)
    # Over the 7 sent: Ann and Cat opened, Gus clicked, Cat replied; Dan only to machines.
    assert report.human == Rates(7, 28.6, 14.3, 14.3)
    assert report.raw == Rates(7, 42.9, 28.6, 14.3)
    assert report.total_rows == 8
    by_name = {row.email: row for row in report.rows}
    assert [row.email for row in report.rows] == [address(who) for who in sorted(OUTAGE)]
    ann, dan, fay = by_name[address("ann")], by_name[address("dan")], by_name[address("fay")]
    assert (ann.name, ann.company, ann.status, ann.sent_at) == ("Ann", "Acme", "sent", T0)
    assert (ann.opens, ann.clicks, ann.first_opened_at) == (2, 0, T0 + timedelta(hours=1))
    assert (ann.machine, dan.machine) == ({}, {"apple_mpp": 2, "link_scanner": 1})
    assert (dan.opens, dan.clicks, dan.first_opened_at) == (0, 0, None)
    assert (fay.status, fay.sent_at) == ("failed", None)
    assert by_name[address("cat")].replied_at == T0 + timedelta(hours=2)
    assert by_name[address("eve")].bounced_at == T0 + timedelta(hours=1)
    assert by_name[address("hal")].auto_replied_at == T0 + timedelta(hours=1)


def test_a_campaign_report_shows_a_page_of_rows(engine: Engine, world: World) -> None:
    with engine.connect() as connection:
        report = campaign_report(connection, world.outage, limit=4)
    assert [row.email for row in report.rows] == [address(w) for w in ("ann", "ben", "cat", "dan")]
    assert (report.rows[-1].machine, report.total_rows) == ({"apple_mpp": 2, "link_scanner": 1}, 8)


def test_a_long_page_finds_the_same_machine_reasons(
    engine: Engine, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past a few ids, the machine reasons are looked up by campaign, not by id."""
    with engine.connect() as connection:
        listed = campaign_report(connection, world.outage)
        monkeypatch.setattr(analytics, "_LISTED_IDS", 2)
        long_page = campaign_report(connection, world.outage, limit=4)
    assert long_page.rows == listed.rows[:4]
    assert long_page.rows[-1].machine == {"apple_mpp": 2, "link_scanner": 1}


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` meanwhile."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_a_campaign_report_takes_three_queries_whatever_the_size(
    engine: Engine, world: World
) -> None:
    with engine.connect() as connection:
        connection.execute(select(1))  # SQLite begins its transaction with a statement
        for campaign in (world.outage, world.renewal):
            with statements(engine) as seen:
                campaign_report(connection, campaign)
            assert len(seen) == 3


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        (None, [("all emails", 11)]),
        # Both versions of welcome are one template; Kim's one-off email has none.
        ("template", [("welcome", 10), ("(no template)", 1)]),
        ("campaign", [("#1 outage", 7), ("#2 renewal", 3), ("(no campaign)", 1)]),
        ("company", [("(no company)", 5), ("Acme", 4), ("Globex", 2)]),
        ("enduser", [(address("ann"), 2), (address("ben"), 2), (address("cat"), 1)]),
        ("sender", [("alice@us.example", 7), ("bob@us.example", 3), ("(no sender)", 1)]),
    ],
)
def test_stats_by_each_dimension_biggest_first(
    engine: Engine, world: World, by: Any, expected: list[tuple[str, int]]
) -> None:
    with engine.connect() as connection:
        rows = stats(connection, by=by, since=None, limit=3)
    assert [(row.label, row.emails) for row in rows] == expected


def test_stats_average_over_the_emails_that_had_the_tracking(engine: Engine, world: World) -> None:
    """Renewal's 3 emails had no open tracking: the open rate is over Outage's 7 alone."""
    with engine.connect() as connection:
        [welcome, _] = stats(connection, by="template", since=None)
        [raw, _] = stats(connection, by="template", since=None, raw=True)
        [renewal] = stats(connection, by="campaign", since=None, sender_user_id=world.bob)
        [campaign, *_] = stats(connection, by="campaign", since=None)
    assert (welcome.key, welcome.open_rate, welcome.click_rate, welcome.reply_rate) == (
        "welcome",
        28.6,  # Ann and Cat, of 7
        20.0,  # Gus and Ann (renewal), of 10
        20.0,  # Cat and Ivy, of 10
    )
    assert (welcome.bounced, raw.open_rate, raw.click_rate, raw.reply_rate) == (1, 42.9, 30.0, 20.0)
    assert (renewal.open_rate, renewal.click_rate, renewal.bounced) == (None, 33.3, 0)
    assert campaign.key == world.outage


def test_stats_keep_what_was_sent_since_and_by_whom(engine: Engine, world: World) -> None:
    """Members see their own emails; Kim's was sent a month ago."""
    with engine.connect() as connection:
        week = stats(connection, by=None, since=T0 - timedelta(days=7))
        bobs = stats(connection, by="enduser", since=None, sender_user_id=world.bob)
        nothing = stats(connection, by=None, since=T0 + timedelta(days=1))
        none_of_it = stats(connection, by="template", since=T0 + timedelta(days=1))
    assert [(row.label, row.emails) for row in week] == [("all emails", 10)]
    assert [row.label for row in bobs] == [address(w) for w in ("ann", "ben", "ivy")]
    assert [(r.emails, r.open_rate, r.reply_rate, r.bounced) for r in nothing] == [
        (0, None, None, 0)
    ]
    assert none_of_it == []
