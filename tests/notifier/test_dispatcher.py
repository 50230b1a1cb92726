"""From hits to alerts in the user's mailbox, on SQLite and PostgreSQL: settling, rules, the
cursor, retries with backoff, and no alert sent twice."""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, event, func, select, update

from mailbeacon.serve import free_port
from notifier.alerts import Alert
from notifier.channels import EmailChannel, Recipient
from notifier.dispatcher import MAX_ATTEMPTS, NEWS, deliver, dispatch, retry_delay
from outreach.accounts import credential_keeper, mailbox_for_user, save_mailbox
from outreach.campaigns import Outgoing
from outreach.maildir import MaildirMailbox
from outreach.oauth import OAuthSettings
from outreach.smtp import SmtpMailbox, SmtpSettings
from store.crypto import CredentialCipher
from store.engine import DatabaseSettings, is_autobegin, make_engine
from store.schema import (
    companies,
    deliveries,
    endusers,
    events,
    subscriptions,
    templates,
    users,
)
from tests.helpers import record_hits, send_campaign, sent_mail, subject
from tracking.classify import Hit, Rules
from tracking.record import EmailCache, PendingHit, write_hits

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
APPLE_MPP = "Mozilla/5.0"


@dataclass
class World:
    engine: Engine
    maria: int  # sent the email
    jonas: int  # a colleague
    email: Any
    sent_at: datetime
    folder: Path  # every user's mail goes to this Maildir


@pytest.fixture
def world(engine: Engine, tmp_path: Path) -> World:
    with engine.begin() as connection:
        maria, jonas = (
            connection.execute(
                users.insert().values(email=email, name=name).returning(users.c.id)
            ).scalar_one()
            for email, name in (("maria@us.example", "Maria"), ("jonas@us.example", "Jonas"))
        )
        acme = connection.execute(
            companies.insert().values(name="Acme", domain="acme.example").returning(companies.c.id)
        ).scalar_one()
        dana = connection.execute(
            endusers.insert()
            .values(email="dana@acme.example", name="Dana Reyes", company_id=acme, attributes={})
            .returning(endusers.c.id)
        ).scalar_one()
        template = connection.execute(
            templates.insert()
            .values(key="outage", version=1, subject="Outage", body="x", checksum="c")
            .returning(templates.c.id)
        ).scalar_one()
    folder = tmp_path / "Maildir"
    html = '<a href="https://status.example/">status</a>'
    outgoing = [Outgoing(["dana@acme.example"], "Outage", html, "", dana)]
    [email] = send_campaign(
        engine,
        MaildirMailbox(folder, "maria@us.example"),
        outgoing,
        sender_user_id=maria,
        template_id=template,
    )
    return World(engine, maria, jonas, email, email.sent_at, folder)


def _subscribe(world: World, user_id: int, kind: str, **rule: Any) -> None:
    with world.engine.begin() as connection:
        connection.execute(
            subscriptions.insert().values(user_id=user_id, event_kind=kind, channel="email", **rule)
        )


def _hit(world: World, at: datetime, kind: str = "open", agent: str = PERSON) -> None:
    link = 1 if kind == "click" else None
    hit = Hit(kind, at, link, user_agent=agent, ip="198.51.100.7")  # type: ignore[arg-type]
    with world.engine.begin() as connection:
        pending = [PendingHit(world.email.id, hit)]
        write_hits(connection, pending, Rules(), EmailCache(), tracking_enabled=True)


def _alerts(folder: Path) -> list[tuple[str, str]]:
    """(To, Subject) of every alert sent, in no particular order."""
    return sorted(
        (str(m["To"]), subject(m))
        for m in sent_mail(folder)
        if str(m["Message-ID"]).startswith("<alert.")
    )


def _own_mailbox(folder: Path) -> Any:
    return EmailChannel(lambda recipient: MaildirMailbox(folder, recipient.email))


def test_settled_hits_alert_the_users_whose_rules_they_match_once(world: World) -> None:
    _subscribe(world, world.maria, "open", throttle="first")
    _subscribe(world, world.maria, "click")
    _subscribe(world, world.jonas, "open")  # his own emails only: Maria's are not
    _subscribe(world, world.jonas, "click", sender_scope="all")
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t, agent=APPLE_MPP)  # a machine: nobody hears of it
    _hit(world, t + timedelta(seconds=1))
    _hit(world, t + timedelta(seconds=2))  # a second open: Maria asked for the first only
    _hit(world, t + timedelta(seconds=3), kind="click")

    # Within 10 s a hit may still turn out to be a machine: nothing yet.
    assert dispatch(world.engine, clock=lambda: t + timedelta(seconds=5)) == 0
    assert dispatch(world.engine, clock=lambda: t + timedelta(minutes=1)) == 3
    assert dispatch(world.engine, clock=lambda: t + timedelta(minutes=2)) == 0  # the cursor moved

    report = deliver(world.engine, {"email": _own_mailbox(world.folder)})
    assert (report.delivered, report.retrying, report.failed) == (3, 0, 0)
    assert _alerts(world.folder) == [
        ("jonas@us.example", "Dana Reyes clicked a link in “Outage”"),
        ("maria@us.example", "Dana Reyes clicked a link in “Outage”"),
        ("maria@us.example", "Dana Reyes opened “Outage”"),
    ]
    # Delivered means done: another round sends nothing.
    assert deliver(world.engine, {"email": _own_mailbox(world.folder)}).delivered == 0
    assert len(_alerts(world.folder)) == 3


def test_an_alert_that_cannot_go_out_is_retried_later_and_fails_in_the_end(world: World) -> None:
    _subscribe(world, world.maria, "open")
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t)
    dispatch(world.engine, clock=lambda: t + timedelta(minutes=1))
    down = SmtpSettings(host="127.0.0.1", port=free_port(), security="none", timeout=2)
    channels = {"email": EmailChannel(lambda recipient: SmtpMailbox(recipient.email, down))}

    now = t + timedelta(minutes=2)
    assert deliver(world.engine, channels, clock=lambda: now).retrying == 1
    row = _delivery(world)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "cannot reach 127.0.0.1" in row.last_error
    assert row.next_attempt_at == now + retry_delay(1)
    # Not due yet: not tried.
    assert deliver(world.engine, channels, clock=lambda: now + timedelta(seconds=10)).retrying == 0
    for _ in range(2, MAX_ATTEMPTS + 1):
        now += timedelta(hours=1)
        deliver(world.engine, channels, clock=functools.partial(_at, now))
    row = _delivery(world)
    assert (row.status, row.attempts) == ("failed", MAX_ATTEMPTS)
    # Back up, the mailbox gets nothing from a failed delivery.
    assert deliver(world.engine, {"email": _own_mailbox(world.folder)}).delivered == 0


def test_an_alert_sent_before_a_crash_is_not_sent_again(world: World) -> None:
    _subscribe(world, world.maria, "open")
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t)
    dispatch(world.engine, clock=lambda: t + timedelta(minutes=1))
    # The alert went out, then the process died before recording it.
    maria = Recipient(world.maria, "maria@us.example", "Maria")
    alert = Alert("Dana Reyes opened “Outage”", "x")
    _own_mailbox(world.folder).send(maria, alert, key=str(_delivery(world).id))
    assert deliver(world.engine, {"email": _own_mailbox(world.folder)}).delivered == 1
    assert _alerts(world.folder) == [("maria@us.example", "Dana Reyes opened “Outage”")]


def test_old_events_alert_nobody(world: World) -> None:
    _subscribe(world, world.maria, "open")
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t)
    # The notifier was down for longer than alerts stay news.
    assert dispatch(world.engine, clock=lambda: t + NEWS + timedelta(minutes=1)) == 0
    with world.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(deliveries)) == 0


def _at(moment: datetime) -> datetime:
    return moment


def _delivery(world: World) -> Any:
    with world.engine.connect() as connection:
        return connection.execute(select(deliveries)).one()


def test_a_backlog_is_dispatched_in_chunks_until_caught_up(world: World) -> None:
    _subscribe(world, world.maria, "open")
    t = world.sent_at + timedelta(hours=1)
    for n in range(7):
        _hit(world, t + timedelta(seconds=n))
    assert dispatch(world.engine, clock=lambda: t + timedelta(minutes=1), chunk=3) == 7


def test_a_mailbox_that_cannot_be_opened_is_a_failed_attempt_not_a_crash(world: World) -> None:
    _subscribe(world, world.maria, "open")
    _subscribe(world, world.jonas, "open", sender_scope="all")
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t)
    dispatch(world.engine, clock=lambda: t + timedelta(minutes=1))
    # Maria's Outlook mailbox was stored under a key this server no longer has.
    with world.engine.begin() as connection:
        save_mailbox(
            connection,
            provider="outlook",
            address="maria@us.example",
            owner_user_id=world.maria,
            credentials={"refresh_token": "x"},
            cipher=CredentialCipher([Fernet.generate_key().decode()]),
        )
    cipher = CredentialCipher([Fernet.generate_key().decode()])

    def mailbox_of(recipient: Recipient) -> Any:
        with world.engine.connect() as connection:
            return mailbox_for_user(
                connection,
                recipient.user_id,
                cipher,
                oauth=OAuthSettings(),
                maildir_folder=world.folder,
                address=recipient.email,
                keep_credentials=credential_keeper(world.engine, cipher),
            )

    report = deliver(world.engine, {"email": EmailChannel(mailbox_of)})
    assert (report.delivered, report.retrying) == (1, 1)  # Jonas still hears of it
    assert _alerts(world.folder) == [("jonas@us.example", "Dana Reyes opened “Outage”")]
    with world.engine.connect() as connection:
        [error] = connection.scalars(
            select(deliveries.c.last_error).where(deliveries.c.status == "pending")
        )
    assert error.startswith("maria@us.example (outlook): the stored mailbox credentials")


def test_alerts_in_quiet_hours_wait_until_they_end(world: World) -> None:
    _subscribe(world, world.maria, "open")
    with world.engine.begin() as connection:
        connection.execute(
            update(users)
            .where(users.c.id == world.maria)
            .values(timezone="Europe/Berlin", quiet_hours="22:00-07:00")
        )
    t = world.sent_at + timedelta(hours=1)
    _hit(world, t)
    dispatch(world.engine, clock=lambda: t + timedelta(minutes=1))
    channels = {"email": _own_mailbox(world.folder)}
    night = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # 00:30 in Berlin
    report = deliver(world.engine, channels, clock=lambda: night)
    assert (report.held, report.delivered) == (1, 0)
    row = _delivery(world)
    assert (row.status, row.attempts) == ("pending", 0)
    assert row.next_attempt_at == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # 07:00 there
    assert deliver(world.engine, channels, clock=lambda: night + timedelta(hours=2)).held == 0
    morning = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    assert deliver(world.engine, channels, clock=lambda: morning).delivered == 1
    assert len(_alerts(world.folder)) == 1


def test_a_round_over_a_very_busy_email_never_keeps_the_loader_waiting(
    world: World, db_url: str
) -> None:
    """20,000 events on one email and a dispatch round over them: meanwhile every hit on another
    email is loaded at once, and no write transaction of the round lasts 100 ms."""
    engine = world.engine
    [other] = send_campaign(
        engine,
        MaildirMailbox(world.folder, "maria@us.example"),
        [Outgoing(["sam@acme.example"], "Other", "<p>hello</p>", "hello", None)],
        sender_user_id=world.maria,
    )
    _subscribe(world, world.maria, "open", throttle="first")
    round_engine = make_engine(DatabaseSettings(url=db_url))  # the worker's, timed on its own
    dispatch(round_engine)  # warm: its connection made, its statements compiled, its cursor
    at = datetime.now(UTC) - timedelta(minutes=1)  # settled, and still news
    with engine.begin() as connection:
        connection.execute(
            events.insert(),
            [
                {"email_id": world.email.id, "kind": "open", "at": at, "machine": i % 2 == 0}
                for i in range(20_000)
            ],
        )
    longest = _time_write_transactions(round_engine)
    done = threading.Event()

    def round_of_alerts() -> None:
        dispatch(round_engine)
        done.set()

    worker = threading.Thread(target=round_of_alerts)
    waits: list[float] = []

    worker.start()
    recorded = 0
    while not done.is_set() or recorded < 20:
        started = time.monotonic()
        hit = Hit("open", datetime.now(UTC) + timedelta(hours=1), user_agent=PERSON)
        record_hits(engine, [(other.id, hit)])  # journaled, then loaded
        waits.append(time.monotonic() - started)
        recorded += 1
    worker.join()
    round_engine.dispose()
    with engine.connect() as connection:
        stored = connection.scalar(
            select(func.count()).select_from(events).where(events.c.email_id == other.id)
        )
        alerted = connection.scalar(select(func.count()).select_from(deliveries))
    assert stored == recorded
    assert alerted == 1  # the first open by a person, of 20,000
    assert max(waits) < 1.0, f"a hit waited {max(waits):.2f} s"
    assert 0 < max(longest) < 0.1, f"the longest write transaction took {max(longest):.3f} s"


def _time_write_transactions(engine: Engine) -> list[float]:
    """The length of each write transaction (an explicit begin) on `engine`, as they end."""
    started: dict[int, float] = {}
    lengths: list[float] = []

    @event.listens_for(engine, "begin")
    def begin(connection: Any) -> None:
        if not is_autobegin():  # a read needs no timing: it holds no lock
            started[id(connection)] = time.monotonic()

    def end(connection: Any) -> None:
        if (began := started.pop(id(connection), None)) is not None:
            lengths.append(time.monotonic() - began)

    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)
    return lengths
