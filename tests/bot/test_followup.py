"""`/beacon followup` against `/beacon nonopeners`: a follow-up reaches exactly the people the
list shows, each in the thread of the email they got, through the fake Gmail and the Maildir."""

from __future__ import annotations

import mailbox
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from email.utils import make_msgid
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from sqlalchemy import select

from bot.context import CommandFailed, Reply
from outreach.accounts import save_mailbox
from outreach.gmail import GmailMailbox
from outreach.maildir import MaildirMailbox
from outreach.templates import sync_templates
from store.clock import utcnow
from store.crypto import CredentialCipher
from store.schema import campaigns, emails, engagements
from tests.bot.conftest import BOSS, MEMBER, Team
from tests.fakes.gmail import FakeGmail
from tests.fakes.oauth import GMAIL_TOKEN, OAUTH, FakeGoogle
from tests.helpers import record_hits
from tracking.classify import Hit, HitKind
from tracking.replies import Inbox, sync_inbox

DANA = "dana.reyes@acme-logistics.example"  # opens it as a person
SAM = "sam.okafor@acme-logistics.example"  # only Apple Mail Privacy Protection fetches it
LEE = "lee.chen@acme-logistics.example"  # images off: clicks a link without an open
PRIYA = "priya.nair@bluebird-health.example"  # replies
INGRID = "ingrid.larsen@northwind.example"  # does nothing
PEOPLE = [DANA, SAM, LEE, PRIYA, INGRID]
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
REFRESH_TOKEN = "1//0g-refresh-boss"
APPLE = "Mozilla/5.0"  # Apple Mail Privacy Protection


@pytest.fixture(autouse=True)
def nudge(team: Team) -> None:
    """The template every follow-up here sends; its own subject gives way to `Re: …`."""
    folder = team.folder / "followups"
    folder.mkdir()
    (folder / "nudge.md").write_text(
        "---\nsubject: Did you see this?\n---\nHi {{ enduser.name }}, just checking in.\n"
    )
    sync_templates(team.engine, folder)


@pytest.fixture
def gmail(team: Team) -> Iterator[FakeGmail]:
    """The boss's Gmail mailbox, connected as a sign-in leaves it, served by the fakes."""
    google = FakeGoogle()
    google.refresh_tokens.add(REFRESH_TOKEN)
    with google.serve() as token_uri, FakeGmail(BOSS, GMAIL_TOKEN) as fake:
        oauth = replace(OAUTH, google_token_uri=token_uri, gmail_api_endpoint=fake.url)
        team.settings = replace(team.settings, oauth=oauth)
        boss = team.user(BOSS).id
        with team.engine.begin() as connection:
            save_mailbox(
                connection,
                provider="gmail",
                address=BOSS,
                owner_user_id=boss,
                credentials={"refresh_token": REFRESH_TOKEN},
                cipher=CredentialCipher(team.settings.secrets.encryption_keys),
            )
        yield fake
    assert fake.errors == []


def _send(team: Team, people: list[str] = PEOPLE) -> int:
    return int(team.run(f"send webinar to {', '.join(people)}", yes=True).data["campaign"])


def _emails(team: Team, campaign: int) -> dict[str, Any]:
    """A campaign's emails with their engagement rows, by the address each went to."""
    query = (
        select(emails, engagements.c.campaign_id.label("engaged_in"))
        .join(engagements, engagements.c.email_id == emails.c.id)
        .where(emails.c.campaign_id == campaign)
    )
    with team.engine.connect() as connection:
        return {row.to_addrs[0]: row for row in connection.execute(query)}


def _hits(team: Team, campaign: int, hits: dict[str, tuple[HitKind, str]]) -> None:
    """An open or a click (kind, user agent) on the emails to these addresses, an hour after
    sending (past the machine window), recorded as the tracking server records them."""
    sent = _emails(team, campaign)
    later = utcnow() + timedelta(hours=1)

    record_hits(
        team.engine,
        [
            (sent[address].id, Hit(kind, later, 1 if kind == "click" else None, user_agent=agent))
            for address, (kind, agent) in hits.items()
        ],
    )


def _play(team: Team, campaign: int, deliver: Callable[[bytes], object], inbox: Inbox) -> None:
    """Dana opens, Apple fetches Sam's, Lee clicks, Priya replies (read by reply sync)."""
    _hits(team, campaign, {DANA: ("open", PERSON), SAM: ("open", APPLE), LEE: ("click", PERSON)})
    original = _emails(team, campaign)[PRIYA]
    deliver(
        f"From: {PRIYA}\nTo: {BOSS}\nSubject: Re: {original.subject}\n"
        f"Message-ID: {make_msgid(domain='bluebird-health.example')}\n"
        f"In-Reply-To: {original.message_id}\nReferences: {original.message_id}\n\n"
        "Count me in.\n".encode()
    )
    assert sync_inbox(team.engine, inbox, internal_domains=[]).recorded == {"reply": 1}


def _play_in_maildir(team: Team, campaign: int) -> None:
    folder = team.folder / "Maildir"
    _play(team, campaign, mailbox.Maildir(folder).add, MaildirMailbox(folder, BOSS))


def _listed(reply: Reply) -> list[str]:
    return [enduser["email"] for enduser in reply.data["endusers"]]


def _followed_up(team: Team) -> list[str]:
    """Who the Maildir mailbox sent a follow-up to (an email that answers another)."""
    return sorted(str(m["To"]) for m in team.sent() if m["In-Reply-To"])


def _campaign_ids(team: Team) -> list[int]:
    with team.engine.connect() as connection:
        return list(connection.scalars(select(campaigns.c.id).order_by(campaigns.c.id)))


def test_a_followup_through_gmail_reaches_the_nonopeners_each_in_their_thread(
    team: Team, gmail: FakeGmail
) -> None:
    campaign = _send(team)
    assert sorted(str(m["To"]) for m in gmail.sent()) == sorted(PEOPLE)
    assert team.sent() == []  # nothing went through the embedded Maildir
    token = Credentials(token=GMAIL_TOKEN)  # type: ignore[no-untyped-call]
    with GmailMailbox(BOSS, token, api_endpoint=gmail.url) as inbox:
        _play(team, campaign, gmail.deliver, inbox)

    listed = _listed(team.run(f"nonopeners {campaign}"))
    assert listed == [INGRID, SAM]  # machine-only and nothing; not Dana, Lee or Priya
    done = team.run(f"followup {campaign} with nudge", yes=True)
    follow_up = done.data["campaign"]
    assert follow_up != campaign
    assert team.job(done.job or 0).result["text"].endswith("sent 2 of 2 emails.")

    originals, nudges = _emails(team, campaign), _emails(team, follow_up)
    assert sorted(nudges) == listed
    at_gmail = {stored.message_id: stored for stored in gmail.messages}
    for address, nudge in nudges.items():
        original = originals[address]
        stored = at_gmail[nudge.message_id]
        message = stored.email
        assert stored.label_ids == ["SENT"] and message["To"] == address
        assert stored.thread_id == original.thread_id == nudge.thread_id is not None
        assert message["In-Reply-To"] == original.message_id == nudge.in_reply_to
        assert original.message_id in str(message["References"]).split()
        assert message["Subject"] == nudge.subject == f"Re: {original.subject}"
        # Its own record, with its own engagement row, in the follow-up campaign.
        assert nudge.id != original.id and nudge.enduser_id == original.enduser_id
        assert (nudge.status, nudge.engaged_in) == ("sent", follow_up)
    assert len(gmail.sent()) == len(PEOPLE) + len(listed)


@pytest.mark.parametrize(
    ("nonopeners", "followup", "expected"),
    [
        ("", "", [INGRID, SAM]),
        ("not clicked", "to not clicked", [DANA, INGRID, SAM]),
        ("include machine", "to not opened include machine", [INGRID]),
        ("not clicked include machine", "to not clicked include machine", [DANA, INGRID, SAM]),
        ("not replied", "to not replied", [DANA, INGRID, LEE, SAM]),
    ],
)
def test_a_followup_reaches_exactly_who_nonopeners_lists(
    team: Team, nonopeners: str, followup: str, expected: list[str]
) -> None:
    campaign = _send(team)
    _play_in_maildir(team, campaign)
    assert _listed(team.run(f"nonopeners {campaign} {nonopeners}")) == expected
    team.run(f"followup {campaign} with nudge {followup}", yes=True)
    assert _followed_up(team) == expected


def test_include_machine_needs_no_outcome_before_it(team: Team) -> None:
    # The usage line makes `to not opened` and `include machine` each optional.
    campaign = _send(team)
    _play_in_maildir(team, campaign)
    team.run(f"followup {campaign} with nudge include machine", yes=True)
    assert _followed_up(team) == [INGRID]


def test_the_preview_sends_nothing_and_says_how_many_each_in_their_own_thread(
    team: Team,
) -> None:
    campaign = _send(team)
    _play_in_maildir(team, campaign)
    preview = team.run(f"followup {campaign} with nudge")
    assert preview.needs_confirmation and preview.job is None
    assert preview.data["emails"] == 2 and preview.data["recipients"] == [INGRID, SAM]
    assert (
        f"Audience: 2 of campaign #{campaign} (webinar) who have not opened it, "
        "each in their own thread"
    ) in preview.text
    assert _followed_up(team) == [] and _campaign_ids(team) == [campaign]


def test_the_preview_shows_the_subject_the_follow_up_will_have(team: Team) -> None:
    campaign = _send(team)
    _play_in_maildir(team, campaign)
    preview = team.run(f"followup {campaign} with nudge")
    original = _emails(team, campaign)[INGRID]
    assert f"First email, to {INGRID}:\nSubject: Re: {original.subject}\n" in preview.text


def test_the_same_followup_twice_needs_again(team: Team) -> None:
    campaign = _send(team)
    _play_in_maildir(team, campaign)
    first = team.run(f"followup {campaign} with nudge", yes=True).data["campaign"]
    with pytest.raises(CommandFailed) as raised:
        team.run(f"followup {campaign} with nudge", yes=True)
    assert f"campaign #{first} is sent, 2/2 done" in str(raised.value)
    assert str(raised.value).endswith("add `again` at the end.")
    assert _followed_up(team) == [INGRID, SAM]
    again = team.run(f"followup {campaign} with nudge again", yes=True).data["campaign"]
    assert again not in (campaign, first)
    assert _followed_up(team) == [INGRID, INGRID, SAM, SAM]


def test_a_followup_with_nobody_left_says_so(team: Team) -> None:
    campaign = _send(team, [DANA, LEE])
    _hits(team, campaign, {DANA: ("open", PERSON), LEE: ("click", PERSON)})
    assert _listed(team.run(f"nonopeners {campaign}")) == []
    with pytest.raises(
        CommandFailed, match=f"nobody to follow up: everyone who got campaign #{campaign}"
    ):
        team.run(f"followup {campaign} with nudge", yes=True)
    assert _followed_up(team) == [] and _campaign_ids(team) == [campaign]


def test_a_member_cannot_follow_up_the_admins_campaign(team: Team) -> None:
    campaign = _send(team)
    with pytest.raises(CommandFailed, match="only an admin may look into other people's"):
        team.run(f"followup {campaign} with nudge", MEMBER, yes=True)
    assert _followed_up(team) == [] and _campaign_ids(team) == [campaign]
