"""Commands run against a real store and a real Maildir, on SQLite and PostgreSQL."""

from __future__ import annotations

import mailbox
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update

from bot.context import CommandFailed
from outreach.importer import import_file
from outreach.maildir import MaildirMailbox
from outreach.templates import sync_templates
from store.clock import utcnow
from store.schema import campaigns, emails, endusers, engagements, events, subscriptions
from tests.bot.conftest import BOSS, MEMBER, Team
from tests.helpers import record_hits
from tracking.classify import Hit
from tracking.replies import sync_inbox
from tracking.tokens import TokenKind, TokenSigner

WEST_ADMINS = 'company.region = "West Coast" and role = "admin"'


def test_help_and_templates(team: Team) -> None:
    assert "/beacon send <template> to <audience>" in team.run("help").text
    reply = team.run("templates")
    assert [t["key"] for t in reply.data["templates"]] == ["invoice-reminder", "outage", "webinar"]
    assert "outage (v1): Tell affected customers" in reply.text


def test_preview_renders_for_that_enduser_and_stores_nothing(team: Team) -> None:
    reply = team.run("preview outage to lee.chen@acme-logistics.example")
    assert reply.data["subject"] == "Service incident on Acme Logistics's account: what happened"
    assert "Hi Lee Chen," in reply.text
    team.run("preview outage to new.person@acme-logistics.example")
    with team.engine.connect() as connection:
        assert (
            connection.execute(
                select(endusers).where(endusers.c.email == "new.person@acme-logistics.example")
            ).first()
            is None
        )


def test_send_previews_first_and_sends_only_when_confirmed(team: Team) -> None:
    preview = team.run(f"send outage to {WEST_ADMINS}")
    assert preview.needs_confirmation
    # A filter's endusers come by name: Olivia Hart, then Sam Okafor.
    assert preview.data["recipients"] == [
        "olivia.hart@globex.example",
        "sam.okafor@acme-logistics.example",
    ]
    assert "First email, to olivia.hart@globex.example" in preview.text
    assert team.sent() == []
    with team.engine.connect() as connection:
        assert connection.execute(select(campaigns)).first() is None

    # The reply comes back at once; the worker sends afterwards, as the command's job.
    done = team.run(f"send outage to {WEST_ADMINS} track clicks", yes=True, work=False)
    assert not done.needs_confirmation and done.job is not None
    campaign = done.data["campaign"]
    assert done.text == (
        f"Campaign #{campaign} (outage): 2 emails (individual) on the way as job #{done.job}."
    )
    assert team.sent() == [] and team.job(done.job).status == "queued"
    assert team.work() == 1
    assert team.job(done.job).result["sent"] == 2
    assert team.job(done.job).result["text"].endswith("sent 2 of 2 emails.")
    messages = team.sent()
    assert sorted(m["To"] for m in messages) == sorted(preview.data["recipients"])
    assert all(b"/t/o/" not in m.as_bytes() for m in messages)  # opens not tracked this time
    with team.engine.connect() as connection:
        rows = connection.execute(select(engagements)).all()
    assert {(r.open_rate, r.click_rate) for r in rows} == {(None, 0)}


def test_a_filter_sent_as_group_is_ordered_by_name_and_the_preview_says_who_is_first(
    team: Team,
) -> None:
    preview = team.run(f"send outage to {WEST_ADMINS} as group")
    assert "olivia.hart@globex.example is first in To: and is credited" in preview.text
    team.run(f"send outage to {WEST_ADMINS} as group", yes=True)
    [message] = team.sent()
    assert message["To"] == "olivia.hart@globex.example, sam.okafor@acme-logistics.example"
    with team.engine.connect() as connection:
        email = connection.execute(select(emails)).one()
        olivia = connection.execute(
            select(endusers.c.id).where(endusers.c.email == "olivia.hart@globex.example")
        ).scalar_one()
    assert email.enduser_id == olivia


def test_a_group_keeps_the_order_typed_and_credits_the_first_typed(team: Team) -> None:
    jonas, sofia = "jonas@acme-logistics.example", "sofia@acme-logistics.example"
    people = team.folder / "people.csv"  # Jonas is imported first: the lower id
    people.write_text(f"email,name\n{jonas},Jonas\n{sofia},Sofia\n")
    import_file(team.engine, people)
    team.run(f"send outage to {sofia}, {jonas} as group", yes=True)
    [message] = team.sent()
    assert message["To"] == f"{sofia}, {jonas}"
    inbox = mailbox.Maildir(team.folder / "Maildir")
    inbox.add(
        f"From: {jonas}\nTo: {BOSS}\nSubject: Re: it\nMessage-ID: <r1@acme-logistics.example>\n"
        f"In-Reply-To: {message['Message-ID']}\n\nThanks!\n".encode()
    )
    sync_inbox(team.engine, MaildirMailbox(team.folder / "Maildir", BOSS), internal_domains=[])
    with team.engine.connect() as connection:
        credited = connection.execute(
            select(endusers.c.email)
            .join(engagements, engagements.c.enduser_id == endusers.c.id)
            .where(engagements.c.reply_rate == 100)
        ).scalar_one()
    assert credited == sofia


def test_a_template_error_for_one_recipient_sends_nothing(team: Team) -> None:
    folder = team.folder / "templates"
    folder.mkdir()
    (folder / "seats.md").write_text(
        "---\nsubject: Your seats\n---\n"
        "Hi {{ enduser.name }},\n\nyou have {{ enduser.seats }} seats.\n"
    )
    sync_templates(team.engine, folder)
    # Olivia has seats on record, Sam has none.
    with pytest.raises(CommandFailed, match=r"line 3: enduser\.seats is not defined") as raised:
        team.run(f"send seats to {WEST_ADMINS}", yes=True)
    assert "rendering for sam.okafor@acme-logistics.example" in str(raised.value)
    assert team.sent() == []
    with team.engine.connect() as connection:
        assert connection.execute(select(emails)).first() is None
        assert connection.execute(select(campaigns)).first() is None


@pytest.mark.parametrize(
    ("text", "who", "message"),
    [
        (
            "send nope to dana.reyes@acme-logistics.example",
            BOSS,
            "there is no template `nope`",
        ),
        ("send outage to role = ", BOSS, "expected a value after '='"),
        ('send outage to role = "astronaut"', BOSS, "nobody matches"),
        ("campaigns all", MEMBER, "only an admin may list everyone's campaigns"),
        ('send outage to company.region = "West Coast"', MEMBER, "needs an admin"),
    ],
)
def test_what_cannot_be_done_says_why(team: Team, text: str, who: str, message: str) -> None:
    with pytest.raises(CommandFailed, match=message):
        team.run(text, who, yes=True)
    assert team.sent() == []


def test_campaigns_lists_mine_and_admins_see_all(team: Team) -> None:
    team.run(
        "send webinar to lee.chen@acme-logistics.example",
        MEMBER,
        yes=True,
    )
    assert "webinar: sent, 1/1 sent" in team.run("campaigns", MEMBER).text
    assert team.run("campaigns", BOSS).data["campaigns"] == []
    assert len(team.run("campaigns all", BOSS).data["campaigns"]) == 1


PEOPLE = [
    "dana.reyes@acme-logistics.example",  # opens it (a person)
    "sam.okafor@acme-logistics.example",  # only Apple Mail Privacy Protection fetches it
    "lee.chen@acme-logistics.example",  # images off, clicks a link
    "priya.nair@bluebird-health.example",  # replies without opening
    "ingrid.larsen@northwind.example",  # nothing
]


def _play(store: Engine) -> int:
    with store.connect() as connection:
        rows = connection.execute(select(emails.c.id, emails.c.to_addrs)).all()
    email_of = {row.to_addrs[0]: row.id for row in rows}
    person = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
    an_hour_later = utcnow() + timedelta(hours=1)  # well past the machine window after sending

    record_hits(
        store,
        [
            (email_of[PEOPLE[0]], Hit("open", an_hour_later, user_agent=person)),
            (email_of[PEOPLE[1]], Hit("open", an_hour_later, user_agent="Mozilla/5.0")),
            (email_of[PEOPLE[2]], Hit("click", an_hour_later, 1, user_agent=person)),
        ],
    )
    with store.begin() as connection:  # what reply sync records (issue 4)
        connection.execute(
            events.insert().values(email_id=email_of[PEOPLE[3]], kind="reply", at=an_hour_later)
        )
        connection.execute(
            update(engagements)
            .where(engagements.c.email_id == email_of[PEOPLE[3]])
            .values(reply_rate=100, replies=1, replied_at=an_hour_later)
        )
    with store.connect() as connection:
        return int(connection.scalar(select(campaigns.c.id)) or 0)


@pytest.mark.parametrize(
    ("ask", "expected"),
    [
        # Priya (3) replied: she is on no list. Lee (2) clicked as a person: he read it.
        ("", [1, 4]),
        ("include machine", [4]),
        ("not opened", [1, 4]),
        ("not clicked", [0, 1, 4]),
        ("not clicked include machine", [0, 1, 4]),
        ("not replied", [0, 1, 2, 4]),
    ],
)
def test_nonopeners_lists_exactly_who_has_not(team: Team, ask: str, expected: list[int]) -> None:
    team.run(f"send webinar to {', '.join(PEOPLE)}", yes=True)
    campaign = _play(team.engine)
    reply = team.run(f"nonopeners {campaign} {ask}")
    assert [e["email"] for e in reply.data["endusers"]] == sorted(PEOPLE[i] for i in expected)
    assert reply.data["untracked"] == 0
    by_name = team.run(f"nonopeners webinar {ask}")
    assert by_name.data["endusers"] == reply.data["endusers"]


def test_nonopeners_of_an_unknown_or_someone_elses_campaign(team: Team) -> None:
    with pytest.raises(CommandFailed, match="there is no campaign `#99`"):
        team.run("nonopeners #99")
    team.run(f"send webinar to {PEOPLE[0]}", BOSS, yes=True)
    with pytest.raises(CommandFailed, match="only an admin may look into other people's"):
        team.run("nonopeners 1", MEMBER)


def test_alerts_are_added_listed_and_removed_in_words(team: Team) -> None:
    member = MEMBER
    assert team.run("alerts list", member).text.startswith("You have no alerts")
    added = team.run(
        'alerts add on open first only template outage company "acme logistics" via email',
        member,
    )
    assert added.text == (
        f"Alert #{added.data['alert']}: when someone opens one of your emails from template "
        "outage sent to Acme Logistics (the first time), by email."
    )
    team.run("alerts add on bounce include machine via email", member)
    team.run("alerts add on reply from everyone via email")  # the admin's own
    listed = team.run("alerts list", member)
    first, second = [rule["id"] for rule in listed.data["alerts"]]
    assert listed.text.splitlines()[1] == (
        f"#{second}: when one of your emails bounces (machines included), by email"
    )
    # One user cannot remove another's rule.
    with pytest.raises(CommandFailed, match=f"you have no alert #{first}"):
        team.run(f"alerts remove {first}")
    assert team.run(f"alerts remove #{first}", member).text == (f"Alert #{first} removed.")
    assert [rule["id"] for rule in team.run("alerts list", member).data["alerts"]] == [second]
    everyone = team.run("alerts list").text
    assert everyone.endswith("when someone replies to anyone's email, by email")


@pytest.mark.parametrize(
    ("text", "who", "message"),
    [
        ("alerts add on open via slack", BOSS, "cannot send alerts via slack yet"),
        ("alerts add on open via slack", BOSS, "use `via desktop` or `via email`"),
        ("alerts add on open template nope via email", BOSS, "no template `nope`"),
        ("alerts add on open campaign 99 via email", BOSS, "no campaign `99`"),
        (
            'alerts add on open company "Nope Inc" via email',
            BOSS,
            "there is no company named 'Nope Inc'",
        ),
        (
            "alerts add on open from everyone via email",
            MEMBER,
            "only an admin may hear about everyone's emails",
        ),
        ("alerts remove 42", BOSS, "you have no alert #42"),
    ],
)
def test_alerts_that_cannot_be_set_up_say_why(
    team: Team, text: str, who: str, message: str
) -> None:
    with pytest.raises(CommandFailed, match=message):
        team.run(text, who)
    with team.engine.connect() as connection:
        assert connection.execute(select(subscriptions)).first() is None


def test_an_alert_on_someone_elses_campaign_needs_an_admin(team: Team) -> None:
    team.run(f"send webinar to {PEOPLE[0]}", BOSS, yes=True)
    with pytest.raises(CommandFailed, match="only an admin may look into other people's"):
        team.run("alerts add on click campaign 1 via email", MEMBER)
    added = team.run("alerts add on click campaign 1 via email")
    assert "in campaign #1 (webinar)" in added.text


def test_the_digest_is_turned_on_at_an_hour_off_and_sent_now(team: Team) -> None:
    member = MEMBER
    on = team.run("digest on at 07:30", member)
    assert on.text.startswith("Your daily digest comes by email at 07:30 (UTC time)")
    assert team.run("digest on", member).data == {"enabled": True, "at": "07:30", "via": "email"}
    with pytest.raises(CommandFailed, match="cannot send the digest via slack yet"):
        team.run("digest on via slack", member)  # no Slack token in this team's config
    assert team.run("digest off", member).text.startswith("Your daily digest is off")
    now = team.run("digest now", member)
    assert now.text == f"Your digest is on its way to member@us.example (job #{now.job})."
    assert now.job is not None
    result = team.job(now.job).result["text"]
    assert result.startswith("Sent to member@us.example:\nYour mailbeacon digest for ")
    assert "You sent nothing that day." in result
    [digest] = team.sent()
    assert (digest["From"], digest["To"]) == (MEMBER, MEMBER)


def test_an_alert_via_desktop_answers_with_the_page_to_keep_open(team: Team) -> None:
    reply = team.run("alerts add on reply via desktop")
    page = reply.text.splitlines()[1]
    assert page.startswith("Open https://t.example/alerts?token=")
    boss = team.user(BOSS)
    token = page.split("token=")[1].split()[0]
    assert TokenSigner(["k" * 32]).verify(token, TokenKind.FEED).id == boss.id  # type: ignore[union-attr]


def test_quiet_hours_are_set_and_cleared_by_the_user(team: Team) -> None:
    member = MEMBER
    reply = team.run("alerts quiet 22:00-07:00", member)
    assert reply.text == (
        "Quiet hours 22:00-07:00 (UTC time): alerts that come then wait until 07:00."
    )
    assert team.user(member).quiet_hours == "22:00-07:00"
    assert team.run("alerts quiet off", member).data == {"quiet_hours": None}
    assert team.user(member).quiet_hours is None


def test_the_same_send_again_is_refused_unless_asked_for_again(team: Team) -> None:
    lee = "lee.chen@acme-logistics.example"
    first = team.run(f"send webinar to {lee}", yes=True)
    with pytest.raises(CommandFailed) as again:
        team.run(f"send   webinar to {lee.upper()}", yes=True)  # spacing and case aside
    assert str(again.value) == (
        f"you already sent `webinar` to this audience: campaign #{first.data['campaign']} is "
        "sent, 1/1 done. To send it once more anyway, add `again` at the end."
    )
    twice = team.run(f"send webinar to {lee} again", yes=True)
    assert twice.data["campaign"] != first.data["campaign"]
    # A different audience is another send-out; and ten minutes later the same one is fine.
    team.run(f"send webinar to {PEOPLE[0]}", yes=True)
    team.clock = lambda: utcnow() + timedelta(minutes=11)
    assert team.run(f"send webinar to {lee}", yes=True).job is not None
    assert len(team.sent()) == 4


def test_an_unfinished_send_out_is_never_started_twice(team: Team) -> None:
    lee = "lee.chen@acme-logistics.example"
    first = team.run(f"send webinar to {lee}", yes=True, work=False)  # the worker is busy
    team.clock = lambda: utcnow() + timedelta(hours=3)
    with pytest.raises(CommandFailed, match=r"is sending, 0/1 done \(it finishes on its own"):
        team.run(f"send webinar to {lee}", yes=True)
    team.work()
    assert team.job(first.job or 0).status == "done" and len(team.sent()) == 1
