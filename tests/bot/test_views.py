"""The engagement views as a user reads them (`campaign`, `stats`, `cohort`, `me`, `jobs`), after
real sends and hits recorded by the real recorder, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from bot.context import CommandFailed
from outreach.mailbox import Delivered, PermanentFailure
from outreach.maildir import MaildirMailbox
from outreach.templates import sync_templates
from store.clock import utcnow
from tests.bot.conftest import BOSS, MEMBER, ROOT, Team
from tests.bot.playbook import (
    APPLE_MPP,
    DANA,
    INGRID,
    LEE,
    OLIVIA,
    PERSON,
    PRIYA,
    SAM,
    everyone_did_something,
    hits,
    inbound,
)
from tracking.tokens import TokenKind, TokenSigner


def _refuse(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    """The mailbox refuses every email to `address`, as a server refuses an unknown one."""
    send = MaildirMailbox.send

    def refusing(
        mailbox: MaildirMailbox, message: EmailMessage, thread_id: str | None = None
    ) -> Delivered:
        if message["To"] == address:
            raise PermanentFailure(f"550 5.1.1 <{address}>: no such user")
        return send(mailbox, message, thread_id)

    monkeypatch.setattr(MaildirMailbox, "send", refusing)


def _new_version(team: Team, key: str) -> None:
    """A second version of an example template, as editing its file and syncing makes one."""
    folder = team.folder / "edited"
    folder.mkdir()
    [source] = (ROOT / "examples" / "templates").glob(f"{key}.*")
    (folder / source.name).write_text(source.read_text() + "\n<p>P.S. Sorry.</p>\n")
    sync_templates(team.engine, folder)


def _people(reply_data: dict[str, Any]) -> list[str]:
    return [person["email"] for person in reply_data["endusers"]]


# --- campaign --------------------------------------------------------------------------------


def test_campaign_shows_counts_human_and_raw_rates_and_each_enduser(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    _refuse(monkeypatch, OLIVIA)
    team.run(f"send webinar to {DANA}, {SAM}, {LEE}, {PRIYA}, {INGRID}, {OLIVIA}", yes=True)
    hits(team, (DANA, "open", PERSON), (SAM, "open", APPLE_MPP), (LEE, "click", PERSON))
    inbound(team, PRIYA, "reply")
    inbound(team, INGRID, "bounce")
    inbound(team, SAM, "auto_reply")

    reply = team.run("campaign 1")
    lines = reply.text.splitlines()
    assert lines[:3] == [
        "Campaign #1 (webinar), sent: 5 of 6 sent, 1 refused, 1 bounced, 1 auto-reply",
        # Over the 5 sent: Dana opened and Lee clicked (which is reading it), Priya replied.
        "People: open 40%, click 20%, reply 20%",
        # Apple's proxy counts once machines do.
        "With machines: open 60%, click 20%, reply 20%",
    ]
    data = reply.data
    assert (data["planned"], data["sent"], data["failed"]) == (6, 5, 1)
    assert (data["bounced"], data["auto_replied"], data["total"]) == (1, 1, 6)
    assert data["human"] == {"emails": 5, "open_rate": 40.0, "click_rate": 20.0, "reply_rate": 20.0}
    assert data["raw"]["open_rate"] == 60.0
    assert _people(data) == sorted([DANA, SAM, LEE, PRIYA, INGRID, OLIVIA])

    row = {person["email"]: person for person in data["endusers"]}
    assert row[DANA]["first_opened_at"] is not None and row[DANA]["machine"] == {}
    assert row[SAM]["first_opened_at"] is None and row[SAM]["machine"] == {"apple_mpp": 1}
    assert row[SAM]["auto_replied_at"] is not None
    assert row[LEE]["clicks"] == 1 and row[LEE]["first_clicked_at"] is not None
    assert row[LEE]["first_opened_at"] == row[LEE]["first_clicked_at"]  # a click is a read
    assert row[PRIYA]["replied_at"] is not None and row[PRIYA]["first_opened_at"] is None
    assert row[INGRID]["bounced_at"] is not None
    assert row[OLIVIA]["status"] == "failed" and row[OLIVIA]["first_opened_at"] is None

    said = {line.split(":")[0][2:]: line for line in lines[3:]}
    assert said[DANA].startswith(f"- {DANA}: opened ")
    assert said[SAM] == f"- {SAM}: auto-reply; machines: apple_mpp x1"
    assert "; 1 click" in said[LEE]
    assert said[PRIYA].startswith(f"- {PRIYA}: replied ")
    assert said[INGRID] == f"- {INGRID}: bounced"
    assert said[OLIVIA] == f"- {OLIVIA}: failed"


def test_campaign_by_name_is_my_own_newest_of_that_name(team: Team) -> None:
    team.run(f"send webinar to {DANA}", yes=True)
    team.run(f"send webinar to {LEE}", MEMBER, yes=True)
    mine = team.run("campaign webinar", MEMBER)
    assert mine.data["campaign"] == 2 and _people(mine.data) == [LEE]
    assert team.run("campaign #2", MEMBER).data == mine.data
    theirs = team.run("campaign webinar")
    assert theirs.data["campaign"] == 1 and _people(theirs.data) == [DANA]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("campaign 99", "there is no campaign `99`: `/beacon campaigns` lists yours"),
        ("campaign outage", "there is no campaign `outage`"),
        ("campaign 1", "only an admin may look into other people's campaigns"),
    ],
)
def test_a_campaign_i_may_not_see_is_refused(team: Team, text: str, message: str) -> None:
    team.run(f"send outage to {DANA}", BOSS, yes=True)
    with pytest.raises(CommandFailed, match=message):
        team.run(text, MEMBER)


# --- stats -----------------------------------------------------------------------------------


def _two_senders(team: Team) -> None:
    """The admin sends the outage to Dana, who opens it, and to Lee without open tracking, who
    clicks; the member sends the webinar to Sam, whose email only Apple's proxy opens."""
    team.run(f"send outage to {DANA}", BOSS, yes=True)
    team.run(f"send outage to {LEE} track clicks", BOSS, yes=True)
    team.run(f"send webinar to {SAM}", MEMBER, yes=True)
    hits(team, (DANA, "open", PERSON), (LEE, "click", PERSON), (SAM, "open", APPLE_MPP))


def _rates(reply_data: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (row["label"], row["emails"], row["open_rate"], row["click_rate"], row["reply_rate"])
        for row in reply_data["rows"]
    ]


def test_stats_count_each_rate_only_where_it_was_tracked(team: Team) -> None:
    team.run(f"send outage to {DANA}", yes=True)
    team.run(f"send outage to {LEE} track clicks", yes=True)  # nobody can tell if Lee opened
    hits(team, (DANA, "open", PERSON))
    reply = team.run("stats")
    assert reply.text == (
        "Rates of everyone's emails (people only; `raw` counts machines too):\n"
        "- all emails: 2 emails, open 100%, click 0%, reply 0%"
    )


def test_stats_with_nothing_sent(team: Team) -> None:
    reply = team.run("stats", MEMBER)
    assert reply.text == (
        "Rates of your emails (people only; `raw` counts machines too):\nnothing sent yet."
    )
    assert reply.data["rows"] == []


def test_stats_of_a_member_are_their_own_and_an_admin_sees_everyones(team: Team) -> None:
    _two_senders(team)
    assert _rates(team.run("stats").data) == [("all emails", 3, 50.0, 33.3, 0.0)]
    assert _rates(team.run("stats", MEMBER).data) == [("all emails", 1, 0.0, 0.0, 0.0)]
    assert team.run("stats", MEMBER).text.startswith("Rates of your emails (people only")


def test_stats_raw_counts_machines_too(team: Team) -> None:
    _two_senders(team)
    raw = team.run("stats raw", MEMBER)
    assert raw.text == (
        "Rates of your emails (machines included):\n"
        "- all emails: 1 email, open 100%, click 0%, reply 0%"
    )
    assert _rates(team.run("stats raw").data) == [("all emails", 3, 100.0, 33.3, 0.0)]


@pytest.mark.parametrize(
    ("by", "rows"),
    [
        ("template", [("outage", 2, 100.0, 50.0, 0.0), ("webinar", 1, 0.0, 0.0, 0.0)]),
        (
            "campaign",
            [
                ("#1 outage", 1, 100.0, 0.0, 0.0),
                ("#2 outage", 1, None, 100.0, 0.0),
                ("#3 webinar", 1, 0.0, 0.0, 0.0),
            ],
        ),
        ("sender", [(BOSS, 2, 100.0, 50.0, 0.0), (MEMBER, 1, 0.0, 0.0, 0.0)]),
    ],
)
def test_stats_by_a_dimension(team: Team, by: str, rows: list[tuple[Any, ...]]) -> None:
    _two_senders(team)
    reply = team.run(f"stats by {by}")
    assert _rates(reply.data) == rows
    assert reply.text.splitlines()[0] == (
        f"Rates of everyone's emails by {by} (people only; `raw` counts machines too):"
    )
    assert len(reply.text.splitlines()) == len(rows) + 1


def test_stats_by_campaign_says_n_a_where_nothing_was_tracked(team: Team) -> None:
    _two_senders(team)
    assert "- #2 outage: 1 email, open n/a, click 100%, reply 0%" in (
        team.run("stats by campaign").text.splitlines()
    )


def test_stats_since_leave_out_what_was_sent_before(team: Team) -> None:
    _two_senders(team)
    team.clock = lambda: utcnow() + timedelta(days=40)
    team.run(f"send webinar to {INGRID}", BOSS, yes=True)
    hits(team, (INGRID, "open", PERSON))
    reply = team.run("stats since 30d")
    assert reply.text == (
        "Rates of everyone's emails of the last 30 days (people only; `raw` counts machines too):\n"
        "- all emails: 1 email, open 100%, click 0%, reply 0%"
    )
    assert team.run("stats since 30d", MEMBER).data["rows"] == []
    assert _rates(team.run("stats since 50d").data)[0][1] == 4


def test_versions_of_a_template_are_one_template(team: Team) -> None:
    team.run(f"send outage to {DANA}", yes=True)
    _new_version(team, "outage")
    assert "outage (v2)" in team.run("templates").text
    team.run(f"send outage to {LEE}", yes=True)
    hits(team, (DANA, "open", PERSON))
    assert _rates(team.run("stats by template").data) == [("outage", 2, 50.0, 0.0, 0.0)]
    assert _people(team.run("cohort engaged outage").data) == [DANA]
    assert _people(team.run("cohort unengaged outage").data) == [LEE]


# --- cohort ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "listed"),
    [
        # A person opened, clicked or replied; Raj's email bounced: he got nothing.
        ("cohort engaged outage", [DANA, LEE, PRIYA]),
        ("cohort engaged #1", [DANA, LEE, PRIYA]),
        # Only Apple's proxy opened Sam's: that is not Sam.
        ("cohort unengaged outage", [INGRID, SAM]),
        ("cohort unengaged 1 since 30d", [INGRID, SAM]),
    ],
)
def test_cohort_lists_who_engaged_as_a_person_or_did_not(
    team: Team, text: str, listed: list[str]
) -> None:
    everyone_did_something(team)
    reply = team.run(text)
    assert _people(reply.data) == listed
    assert reply.text.splitlines()[1:] == [
        f"- {address}" + (f" ({company})" if company else "")
        for address, company in ((p["email"], p["company"]) for p in reply.data["endusers"])
    ]


def test_cohort_heading_says_who_and_of_what(team: Team) -> None:
    everyone_did_something(team)
    assert team.run("cohort unengaged outage").text.splitlines()[0] == (
        "2 endusers did not engage with template outage:"
    )
    assert team.run("cohort engaged 1 since 30d").text.splitlines()[0] == (
        "3 endusers engaged with campaign #1 in the last 30 days:"
    )


def test_a_cohort_since_leaves_out_older_emails(team: Team) -> None:
    everyone_did_something(team)
    team.clock = lambda: utcnow() + timedelta(days=40)
    reply = team.run("cohort unengaged outage since 30d")
    assert reply.text == "0 endusers did not engage with template outage in the last 30 days:"
    assert _people(team.run("cohort unengaged outage since 50d").data) == [INGRID, SAM]


@pytest.mark.parametrize(
    ("text", "who", "message"),
    [
        ("cohort engaged 1", MEMBER, "only an admin may look into other people's campaigns"),
        ("send webinar to cohort engaged 1", MEMBER, "only an admin may look into other"),
        ("cohort engaged nope", BOSS, "there is no template or campaign `nope`"),
        ("cohort engaged outage since soon", BOSS, "like since 30d"),
    ],
)
def test_a_cohort_that_cannot_be_listed_says_why(
    team: Team, text: str, who: str, message: str
) -> None:
    everyone_did_something(team)
    with pytest.raises(CommandFailed, match=message):
        team.run(text, who)


def test_a_malformed_cohort_points_at_the_word_that_is_wrong(team: Team) -> None:
    with pytest.raises(CommandFailed) as raised:
        team.run("cohort maybe outage")
    assert str(raised.value).splitlines() == [
        "in the cohort:",
        "cohort maybe outage",
        "       ^",
        "at column 8: expected engaged or unengaged after 'cohort', found 'maybe': write "
        "cohort engaged|unengaged <template key or campaign number> [since 30d]",
    ]


def test_a_cohort_is_an_audience(team: Team) -> None:
    everyone_did_something(team)
    preview = team.run("send webinar to cohort unengaged outage")
    assert preview.needs_confirmation
    assert preview.data["recipients"] == [INGRID, SAM]
    assert len(team.sent()) == 6  # the outage only


# --- me and jobs -----------------------------------------------------------------------------


def test_me_says_who_i_am_where_i_send_from_and_the_link_that_marks_my_browser(
    team: Team,
) -> None:
    reply = team.run("me", MEMBER)
    lines = reply.text.splitlines()
    assert lines[0] == "Mia Member <member@us.example>, member, time zone UTC"
    assert lines[1] == "Sends from: the embedded Maildir (no mailbox is connected)"
    assert lines[2].startswith("Alerts: 0 (`/beacon alerts list`)")
    mark = reply.data["mark_my_browser"]
    assert mark.startswith("https://t.example/t/me/") and f"Open {mark} once" in reply.text
    claims = TokenSigner(["k" * 32]).verify(mark.rsplit("/", 1)[1], TokenKind.USER)
    assert claims is not None and claims.id == team.user(MEMBER).id

    team.run("alerts add on reply via email", MEMBER)
    again = team.run("me", MEMBER)
    assert again.data["alerts"] == 1 and "Alerts: 1 " in again.text
    assert team.run("me").data["role"] == "admin"


def test_jobs_lists_my_send_outs_and_digests_with_their_state(team: Team) -> None:
    assert team.run("jobs", MEMBER).text == "You have no jobs: a send or a `digest now` starts one."
    send = team.run(f"send webinar to {DANA}", MEMBER, yes=True, work=False)
    campaign = send.data["campaign"]
    assert send.job is not None
    assert team.run("jobs", MEMBER).text == f"#{send.job} send-out of campaign #{campaign}: queued"

    team.work()
    digest = team.run("digest now", MEMBER)
    listed = team.run("jobs", MEMBER)
    assert listed.text.splitlines() == [
        f"#{digest.job} digest sent now: done: Sent to {MEMBER}:",
        f"#{send.job} send-out of campaign #{campaign}: done: "
        f"Campaign #{campaign} (webinar): sent 1 of 1 email.",
    ]
    assert [(job["kind"], job["status"]) for job in listed.data["jobs"]] == [
        ("digest", "done"),
        ("send", "done"),
    ]
    assert team.run("jobs", BOSS).data["jobs"] == []
