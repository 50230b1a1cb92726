"""Commands run against a real store and a real Maildir, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from bot.commands import parse
from bot.context import CommandFailed, Context, Reply
from bot.handlers import execute
from bot.users import UserSettings, find_user, sync_config_users
from outreach.importer import import_file
from outreach.mailbox import Mailbox
from outreach.maildir import MaildirMailbox
from outreach.templates import sync_templates
from store.clock import utcnow
from store.schema import campaigns, emails, endusers, engagements, events, subscriptions
from tests.helpers import sent_mail
from tracking.classify import Hit, Rules
from tracking.recorder import Recorder
from tracking.settings import TrackingSettings
from tracking.tokens import TokenKind, TokenSigner

ROOT = Path(__file__).resolve().parents[2]
WEST_ADMINS = 'company.region = "West Coast" and role = "admin"'


@pytest.fixture
def store(engine: Engine, tmp_path: Path) -> Engine:
    for name in ("companies.csv", "endusers.csv"):
        import_file(engine, ROOT / "examples" / name)
    sync_templates(engine, ROOT / "examples" / "templates")
    with engine.begin() as connection:
        sync_config_users(
            connection,
            [
                UserSettings("boss@us.example", "Boss", role="admin"),
                UserSettings("member@us.example", "Mia Member"),
            ],
        )
    return engine


def run(
    store: Engine,
    tmp_path: Path,
    text: str,
    who: str = "boss@us.example",
    *,
    yes: bool = False,
    threshold: int = 200,
) -> Reply:
    with store.connect() as connection:
        user = find_user(connection, who)

    def mailbox_for(sender: Any) -> Mailbox:
        return MaildirMailbox(tmp_path / "Maildir", sender.email)

    context = Context(
        store,
        user,
        TrackingSettings(base_url="https://t.example"),
        TokenSigner(["k" * 32]),
        threshold,
        mailbox_for,
        alert_channels=frozenset({"email", "desktop"}),
    )
    return execute(parse(text), context, confirmed=yes)


def sent(tmp_path: Path) -> list[Any]:
    return list(sent_mail(tmp_path / "Maildir"))


def test_help_and_templates(store: Engine, tmp_path: Path) -> None:
    assert "/beacon send <template> to <audience>" in run(store, tmp_path, "help").text
    reply = run(store, tmp_path, "templates")
    assert [t["key"] for t in reply.data["templates"]] == ["invoice-reminder", "outage", "webinar"]
    assert "outage (v1): Tell affected customers" in reply.text


def test_preview_renders_for_that_enduser_and_stores_nothing(store: Engine, tmp_path: Path) -> None:
    reply = run(store, tmp_path, "preview outage to lee.chen@acme-logistics.example")
    assert reply.data["subject"] == "Service incident on Acme Logistics's account: what happened"
    assert "Hi Lee Chen," in reply.text
    run(store, tmp_path, "preview outage to new.person@acme-logistics.example")
    with store.connect() as connection:
        assert (
            connection.execute(
                select(endusers).where(endusers.c.email == "new.person@acme-logistics.example")
            ).first()
            is None
        )


def test_send_previews_first_and_sends_only_when_confirmed(store: Engine, tmp_path: Path) -> None:
    preview = run(store, tmp_path, f"send outage to {WEST_ADMINS}")
    assert preview.needs_confirmation
    assert preview.data["recipients"] == [
        "sam.okafor@acme-logistics.example",
        "olivia.hart@globex.example",
    ]
    assert "First email, to sam.okafor@acme-logistics.example" in preview.text
    assert sent(tmp_path) == []
    with store.connect() as connection:
        assert connection.execute(select(campaigns)).first() is None

    done = run(store, tmp_path, f"send outage to {WEST_ADMINS} track clicks", yes=True)
    assert done.data["sent"] == 2 and not done.needs_confirmation
    messages = sent(tmp_path)
    assert sorted(m["To"] for m in messages) == sorted(preview.data["recipients"])
    assert all(b"/t/o/" not in m.as_bytes() for m in messages)  # opens not tracked this time
    with store.connect() as connection:
        rows = connection.execute(select(engagements)).all()
    assert {(r.open_rate, r.click_rate) for r in rows} == {(None, 0)}


def test_a_group_email_goes_once_to_everyone_and_counts_for_the_first(
    store: Engine, tmp_path: Path
) -> None:
    run(store, tmp_path, f"send outage to {WEST_ADMINS} as group", yes=True)
    [message] = sent(tmp_path)
    assert message["To"] == "sam.okafor@acme-logistics.example, olivia.hart@globex.example"
    with store.connect() as connection:
        email = connection.execute(select(emails)).one()
        sam = connection.execute(
            select(endusers.c.id).where(endusers.c.email == "sam.okafor@acme-logistics.example")
        ).scalar_one()
    assert email.enduser_id == sam


def test_a_template_error_for_one_recipient_sends_nothing(store: Engine, tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "seats.md").write_text(
        "---\nsubject: Your seats\n---\n"
        "Hi {{ enduser.name }},\n\nyou have {{ enduser.seats }} seats.\n"
    )
    sync_templates(store, folder)
    # Olivia has seats on record, Sam has none.
    with pytest.raises(CommandFailed, match=r"line 3: enduser\.seats is not defined") as raised:
        run(store, tmp_path, f"send seats to {WEST_ADMINS}", yes=True)
    assert "rendering for sam.okafor@acme-logistics.example" in str(raised.value)
    assert sent(tmp_path) == []
    with store.connect() as connection:
        assert connection.execute(select(emails)).first() is None
        assert connection.execute(select(campaigns)).first() is None


@pytest.mark.parametrize(
    ("text", "who", "message"),
    [
        (
            "send nope to dana.reyes@acme-logistics.example",
            "boss@us.example",
            "there is no template `nope`",
        ),
        ("send outage to role = ", "boss@us.example", "expected a value after '='"),
        ('send outage to role = "astronaut"', "boss@us.example", "nobody matches"),
        ("campaigns all", "member@us.example", "only an admin may list everyone's campaigns"),
        ('send outage to company.region = "West Coast"', "member@us.example", "needs an admin"),
    ],
)
def test_what_cannot_be_done_says_why(
    store: Engine, tmp_path: Path, text: str, who: str, message: str
) -> None:
    with pytest.raises(CommandFailed, match=message):
        run(store, tmp_path, text, who, yes=True, threshold=2)
    assert sent(tmp_path) == []


def test_campaigns_lists_mine_and_admins_see_all(store: Engine, tmp_path: Path) -> None:
    run(
        store,
        tmp_path,
        "send webinar to lee.chen@acme-logistics.example",
        "member@us.example",
        yes=True,
    )
    assert "webinar: sent, 1/1 sent" in run(store, tmp_path, "campaigns", "member@us.example").text
    assert run(store, tmp_path, "campaigns", "boss@us.example").data["campaigns"] == []
    assert len(run(store, tmp_path, "campaigns all", "boss@us.example").data["campaigns"]) == 1


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

    async def hits() -> None:
        recorder = Recorder(store, TrackingSettings(base_url="https://t.example"), Rules())
        recorder.start()
        await recorder.record(email_of[PEOPLE[0]], Hit("open", an_hour_later, user_agent=person))
        await recorder.record(
            email_of[PEOPLE[1]], Hit("open", an_hour_later, user_agent="Mozilla/5.0")
        )
        await recorder.record(
            email_of[PEOPLE[2]], Hit("click", an_hour_later, 1, user_agent=person)
        )
        await recorder.stop()

    asyncio.run(hits())
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
        ("", [1, 3, 4]),
        ("include machine", [3, 4]),
        ("not opened", [1, 3, 4]),
        ("not clicked", [0, 1, 3, 4]),
        ("not clicked include machine", [0, 1, 3, 4]),
        ("not replied", [0, 1, 2, 4]),
    ],
)
def test_nonopeners_lists_exactly_who_has_not(
    store: Engine, tmp_path: Path, ask: str, expected: list[int]
) -> None:
    run(store, tmp_path, f"send webinar to {', '.join(PEOPLE)}", yes=True)
    campaign = _play(store)
    reply = run(store, tmp_path, f"nonopeners {campaign} {ask}")
    assert [e["email"] for e in reply.data["endusers"]] == sorted(PEOPLE[i] for i in expected)
    assert reply.data["untracked"] == 0
    by_name = run(store, tmp_path, f"nonopeners webinar {ask}")
    assert by_name.data["endusers"] == reply.data["endusers"]


def test_nonopeners_of_an_unknown_or_someone_elses_campaign(store: Engine, tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="there is no campaign `#99`"):
        run(store, tmp_path, "nonopeners #99")
    run(store, tmp_path, f"send webinar to {PEOPLE[0]}", "boss@us.example", yes=True)
    with pytest.raises(CommandFailed, match="only an admin may look into other people's"):
        run(store, tmp_path, "nonopeners 1", "member@us.example")


def test_alerts_are_added_listed_and_removed_in_words(store: Engine, tmp_path: Path) -> None:
    member = "member@us.example"
    assert run(store, tmp_path, "alerts list", member).text.startswith("You have no alerts")
    added = run(
        store,
        tmp_path,
        'alerts add on open first only template outage company "acme logistics" via email',
        member,
    )
    assert added.text == (
        f"Alert #{added.data['alert']}: when someone opens one of your emails from template "
        "outage sent to Acme Logistics (the first time), by email."
    )
    run(store, tmp_path, "alerts add on bounce include machine via email", member)
    run(store, tmp_path, "alerts add on reply from everyone via email")  # the admin's own
    listed = run(store, tmp_path, "alerts list", member)
    first, second = listed.data["alerts"]
    assert listed.text.splitlines()[1] == (
        f"#{second}: when one of your emails bounces (machines included), by email"
    )
    # One user cannot remove another's rule.
    with pytest.raises(CommandFailed, match=f"you have no alert #{first}"):
        run(store, tmp_path, f"alerts remove {first}")
    assert run(store, tmp_path, f"alerts remove #{first}", member).text == (
        f"Alert #{first} removed."
    )
    assert run(store, tmp_path, "alerts list", member).data["alerts"] == [second]
    everyone = run(store, tmp_path, "alerts list").text
    assert everyone.endswith("when someone replies to anyone's email, by email")


@pytest.mark.parametrize(
    ("text", "who", "message"),
    [
        ("alerts add on open via slack", "boss@us.example", "cannot send alerts via slack yet"),
        ("alerts add on open via slack", "boss@us.example", "use `via desktop` or `via email`"),
        ("alerts add on open template nope via email", "boss@us.example", "no template `nope`"),
        ("alerts add on open campaign 99 via email", "boss@us.example", "no campaign `99`"),
        (
            'alerts add on open company "Nope Inc" via email',
            "boss@us.example",
            "there is no company named 'Nope Inc'",
        ),
        (
            "alerts add on open from everyone via email",
            "member@us.example",
            "only an admin may hear about everyone's emails",
        ),
        ("alerts remove 42", "boss@us.example", "you have no alert #42"),
    ],
)
def test_alerts_that_cannot_be_set_up_say_why(
    store: Engine, tmp_path: Path, text: str, who: str, message: str
) -> None:
    with pytest.raises(CommandFailed, match=message):
        run(store, tmp_path, text, who)
    with store.connect() as connection:
        assert connection.execute(select(subscriptions)).first() is None


def test_an_alert_on_someone_elses_campaign_needs_an_admin(store: Engine, tmp_path: Path) -> None:
    run(store, tmp_path, f"send webinar to {PEOPLE[0]}", "boss@us.example", yes=True)
    with pytest.raises(CommandFailed, match="only an admin may look into other people's"):
        run(store, tmp_path, "alerts add on click campaign 1 via email", "member@us.example")
    added = run(store, tmp_path, "alerts add on click campaign 1 via email")
    assert "in campaign #1 (webinar)" in added.text


def test_the_digest_is_turned_on_at_an_hour_off_and_sent_now(store: Engine, tmp_path: Path) -> None:
    member = "member@us.example"
    on = run(store, tmp_path, "digest on at 07:30", member)
    assert on.text.startswith("Your daily digest comes by email at 07:30 (UTC time)")
    assert run(store, tmp_path, "digest on", member).data == {"enabled": True, "at": "07:30"}
    assert run(store, tmp_path, "digest off", member).text.startswith("Your daily digest is off")
    now = run(store, tmp_path, "digest now", member)
    assert now.text.startswith("Sent to member@us.example:\nYour mailbeacon digest for ")
    assert "You sent nothing that day." in now.text
    [digest] = sent(tmp_path)
    assert (digest["From"], digest["To"]) == ("member@us.example", "member@us.example")


def test_an_alert_via_desktop_answers_with_the_page_to_keep_open(
    store: Engine, tmp_path: Path
) -> None:
    reply = run(store, tmp_path, "alerts add on reply via desktop")
    page = reply.text.splitlines()[1]
    assert page.startswith("Open https://t.example/alerts?token=")
    with store.connect() as connection:
        boss = find_user(connection, "boss@us.example")
    token = page.split("token=")[1].split()[0]
    assert TokenSigner(["k" * 32]).verify(token, TokenKind.FEED).id == boss.id  # type: ignore[union-attr]


def test_quiet_hours_are_set_and_cleared_by_the_user(store: Engine, tmp_path: Path) -> None:
    member = "member@us.example"
    reply = run(store, tmp_path, "alerts quiet 22:00-07:00", member)
    assert reply.text == (
        "Quiet hours 22:00-07:00 (UTC time): alerts that come then wait until 07:00."
    )
    with store.connect() as connection:
        assert find_user(connection, member).quiet_hours == "22:00-07:00"
    assert run(store, tmp_path, "alerts quiet off", member).data == {"quiet_hours": None}
    with store.connect() as connection:
        assert find_user(connection, member).quiet_hours is None
