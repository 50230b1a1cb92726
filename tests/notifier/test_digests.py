"""The daily digest: when it is due (pure), what it says (pure), and sending it once per user
per day, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from sqlalchemy import Engine, select, update

from notifier.channels import Channel, EmailChannel, Recipient
from notifier.digests import (
    LISTED,
    Digest,
    Engaged,
    compose,
    due_day,
    gather,
    send_due_digests,
    set_digest,
)
from notifier.slack import SlackChannel, escape
from outreach.campaigns import Outgoing
from outreach.maildir import MaildirMailbox
from store.schema import digests, emails, endusers, users
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.helpers import send_campaign, sent_mail, subject
from tracking.classify import Hit, Rules
from tracking.record import EmailCache, PendingHit, write_hits

NOV_26 = date(2026, 11, 26)
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "time_zone", "at", "last_sent", "expected"),
    [
        (utc(26, 8, 59), "UTC", "09:00", None, None),
        (utc(26, 9, 0), "UTC", "09:00", None, NOV_26),
        (utc(26, 23, 0), "UTC", "09:00", date(2026, 11, 25), NOV_26),
        (utc(26, 23, 0), "UTC", "09:00", NOV_26, None),  # once a day
        # 08:30 UTC is 09:30 in Berlin and 00:30 in Los Angeles.
        (utc(26, 8, 30), "Europe/Berlin", "09:00", None, NOV_26),
        (utc(26, 8, 30), "America/Los_Angeles", "09:00", None, None),
        (utc(26, 17, 30), "America/Los_Angeles", "09:00", date(2026, 11, 25), NOV_26),
        # Just after midnight in Tokyo it is already the 27th there.
        (utc(26, 15, 30), "Asia/Tokyo", "00:15", NOV_26, date(2026, 11, 27)),
        (utc(26, 9, 0), "Nowhere/Unknown", "09:00", None, NOV_26),  # taken as UTC
    ],
)
def test_due_day(
    now: datetime, time_zone: str, at: str, last_sent: date | None, expected: date | None
) -> None:
    assert due_day(now, time_zone, at, last_sent) == expected


QUIET = Digest(date(2026, 11, 25), 0, (), None, None, None)


@pytest.mark.parametrize(
    ("digest", "title", "lines"),
    [
        (
            QUIET,
            "Your mailbeacon digest for Wed 25 Nov: 0 sent, 0 engaged",
            ["You sent nothing that day."],
        ),
        (
            Digest(
                date(2026, 11, 25),
                3,
                ("outage",),
                67,
                None,
                0,
                (Engaged("Dana Reyes", ("opened", "replied")),),
                {"outage": 1},
            ),
            "Your mailbeacon digest for Wed 25 Nov: 3 sent, 1 engaged",
            [
                "Sent 3 (outage).",
                "Of those: opened 67%, clicked n/a, replied 0%.",
                "",
                "Who engaged:",
                "- Dana Reyes: opened, replied",
                "",
                "Not opened yet (emails of the last 7 days):",
                "- outage: 1 (`/beacon nonopeners outage` lists them)",
            ],
        ),
    ],
)
def test_compose(digest: Digest, title: str, lines: list[str]) -> None:
    composed = compose(digest)
    assert (composed.title, composed.details.splitlines()) == (title, lines)


def test_a_long_list_of_people_is_cut_short() -> None:
    many = tuple(Engaged(f"person {n}", ("opened",)) for n in range(LISTED + 3))
    details = compose(Digest(date(2026, 11, 25), 0, (), None, None, None, many)).details
    assert details.splitlines()[-1] == "- and 3 more"
    assert "person 10" not in details


def _subjects(folder: Path) -> list[str]:
    return [
        subject(m) for m in sent_mail(folder) if str(m["Message-ID"]).startswith("<alert.digest.")
    ]


@pytest.fixture
def maria(engine: Engine, tmp_path: Path) -> Any:
    """Maria in Berlin sent two emails on Wednesday the 25th (one was opened) and one the day
    before; her digest comes at 09:00."""
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert()
            .values(email="maria@us.example", name="Maria", timezone="Europe/Berlin")
            .returning(users.c.id)
        ).scalar_one()
        dana = connection.execute(
            endusers.insert()
            .values(email="dana@acme.example", name="Dana Reyes", attributes={})
            .returning(endusers.c.id)
        ).scalar_one()
        set_digest(connection, maria, enabled=True, at="09:00")
    box = MaildirMailbox(tmp_path / "Maildir", "maria@us.example")
    sent = [
        send_campaign(
            engine,
            box,
            [Outgoing([to], "Outage", "<p>x</p>", "x", enduser)],
            name=name,
            sender_user_id=maria,
        )[0]
        for to, enduser, name in (
            ("dana@acme.example", dana, "outage"),
            ("sam@acme.example", None, "outage"),
            ("lee@acme.example", None, "renewal"),
        )
    ]
    # 10:00 in Berlin on the 25th (twice), and the 24th.
    for email, when in zip(sent, (utc(25, 9), utc(25, 9), utc(24, 9)), strict=True):
        with engine.begin() as connection:
            connection.execute(update(emails).where(emails.c.id == email.id).values(sent_at=when))
    with engine.begin() as connection:  # Dana opened hers at 13:00 there
        opened = [PendingHit(sent[0].id, Hit("open", utc(25, 12), user_agent=PERSON))]
        write_hits(connection, opened, Rules(), EmailCache(), tracking_enabled=True)
    return maria


def test_the_digest_covers_the_day_before_in_the_users_time_zone(
    engine: Engine, maria: int
) -> None:
    with engine.connect() as connection:
        digest = gather(connection, maria, date(2026, 11, 25), "Europe/Berlin")
    assert (digest.sent, digest.campaigns) == (2, ("outage",))
    assert (digest.open_rate, digest.click_rate) == (50, 0)
    assert digest.engaged == (Engaged("Dana Reyes", ("opened",)),)
    # Sam (the 25th) and Lee (the 24th) have not opened.
    assert digest.not_opened == {"outage": 1, "renewal": 1}


def test_the_digest_goes_out_once_a_day_at_the_users_hour(
    engine: Engine, maria: int, tmp_path: Path
) -> None:
    folder = tmp_path / "Maildir"
    channel = EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))
    assert (
        send_due_digests(engine, {"email": channel}, clock=lambda: utc(26, 7, 59)) == 0
    )  # 08:59 there
    assert send_due_digests(engine, {"email": channel}, clock=lambda: utc(26, 8, 0)) == 1
    assert send_due_digests(engine, {"email": channel}, clock=lambda: utc(26, 20, 0)) == 0
    assert _subjects(folder) == ["Your mailbeacon digest for Wed 25 Nov: 2 sent, 1 engaged"]
    with engine.connect() as connection:
        assert connection.scalar(select(digests.c.last_sent_day)) == NOV_26


def test_a_digest_sent_just_before_a_crash_is_not_sent_again(
    engine: Engine, maria: int, tmp_path: Path
) -> None:
    folder = tmp_path / "Maildir"
    channel = EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))
    with engine.connect() as connection:
        digest = compose(gather(connection, maria, date(2026, 11, 25), "Europe/Berlin"))
    # It went out; the process died before it was recorded.
    recipient = Recipient(maria, "maria@us.example", "Maria")
    channel.send(recipient, digest, key=f"digest.{maria}.{NOV_26}")
    assert send_due_digests(engine, {"email": channel}, clock=lambda: utc(26, 8, 0)) == 1
    assert len(_subjects(folder)) == 1


def test_a_digest_turned_off_is_not_sent(engine: Engine, maria: int, tmp_path: Path) -> None:
    with engine.begin() as connection:
        row = set_digest(connection, maria, enabled=False, at=None)
    assert (row.enabled, row.at_time) == (False, "09:00")  # the hour is kept for later
    folder = tmp_path / "Maildir"
    channel = EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))
    assert send_due_digests(engine, {"email": channel}, clock=lambda: utc(26, 10, 0)) == 0
    assert _subjects(folder) == []


def test_a_digest_via_slack_is_a_dm_with_the_same_content_and_buttons_per_campaign(
    engine: Engine, maria: int, tmp_path: Path
) -> None:
    with engine.begin() as connection:
        set_digest(connection, maria, enabled=True, at=None, channel="slack")
        connection.execute(update(users).values(slack_user_id="U0MARIA"))
        expected = compose(gather(connection, maria, date(2026, 11, 25), "Europe/Berlin"))
    folder = tmp_path / "Maildir"
    email = EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))
    with FakeSlack() as slack:
        slack_dm = SlackChannel(WebClient(BOT_TOKEN, base_url=slack.url))
        channels: dict[str, Channel] = {"email": email, "slack": slack_dm}
        assert send_due_digests(engine, channels, clock=lambda: utc(26, 8, 0)) == 1
        [dm] = slack.posted_to("U0MARIA")
    assert _subjects(folder) == []  # not by email
    assert dm.text == escape(f"{expected.title}\n{expected.details}")
    buttons = [b for b in dm.blocks if b["type"] == "actions"]
    assert len(buttons) == 2  # outage and renewal each have an email not opened
    assert {e["action_id"] for b in buttons for e in b["elements"]} == {
        "open_campaign",
        "nonopeners",
        "follow_up",
    }
