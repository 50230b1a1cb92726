"""The server reads the mailboxes for replies on its own, on a schedule."""

from __future__ import annotations

import mailbox
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, select, update

from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from mailbeacon.settings import Settings
from mailbeacon.worker import LEASE_TTL, Worker, sync_replies
from notifier.digests import set_digest
from notifier.dispatcher import SETTLE
from notifier.subscriptions import NewRule, add_subscription
from outreach.accounts import save_mailbox
from outreach.campaigns import Outgoing, plan_campaign, run_campaign
from outreach.maildir import MaildirMailbox
from store.clock import utcnow
from store.crypto import CredentialCipher
from store.schema import digests, emails, engagements, leases, mailboxes, users
from tests.conftest import settings_for
from tests.fakes.slack import BOT_TOKEN, FakeSlack
from tests.helpers import PLAN, SENDER, SIGNER, TRACKING, sent_mail, subject
from tracking.classify import Hit, Rules
from tracking.record import EmailCache, PendingHit, write_hits
from tracking.tokens import TokenSigner

PERSON = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0"


def test_the_server_syncs_replies_on_a_schedule(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings, _ = settings_for(
        tmp_path,
        DATABASE__URL=db_url,
        SERVER__PORT=str(port),
        TRACKING__REPLY_SYNC_SECONDS="0.2",
    )
    folder = Path(settings.outreach.maildir)
    box = MaildirMailbox(folder, SENDER)
    with engine.begin() as connection:
        campaign = plan_campaign(
            connection,
            PLAN,
            [Outgoing(["ann@c.example"], "Hi", "<p>x</p>", "x", None)],
            SIGNER,
            TRACKING,
        )
    run_campaign(engine, campaign, box, owner="test")
    with engine.connect() as connection:
        email = connection.execute(select(emails)).one()
    reply = (
        "From: ann@c.example\r\nSubject: Re: Hi\r\nMessage-ID: <a1@c.example>\r\n"
        f"In-Reply-To: {email.message_id}\r\n\r\nYes!\r\n"
    )
    mailbox.Maildir(folder).add(reply.encode())

    config = uvicorn_config(
        settings, engine, "127.0.0.1", port, log_level="warning", load_hits=False
    )
    with running_in_thread(config):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                replied = connection.scalar(
                    select(engagements.c.reply_rate).where(engagements.c.email_id == email.id)
                )
            if replied == 100:
                break
            time.sleep(0.1)
    assert replied == 100


def test_a_round_stores_each_mailboxes_cursor_and_reports_unreadable_ones(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings, _ = settings_for(tmp_path, DATABASE__URL=db_url)
    with engine.begin() as connection:
        save_mailbox(
            connection,
            provider="gmail",
            address="alex@gmail.example",
            owner_user_id=None,
            credentials={"refresh_token": "r"},
            cipher=CredentialCipher(settings.secrets.encryption_keys),
        )
    lines = sorted(sync_replies(settings, engine))
    # Gmail is connected but the OAuth app is not configured here: said, not crashed.
    assert lines[0].startswith("alex@gmail.example: not read: connecting gmail mailboxes is not")
    assert lines[1] == "maildir: 0 messages read; recorded: nothing new"
    with engine.connect() as connection:
        assert connection.scalar(select(mailboxes.c.sync_cursor)) is None


def test_the_server_sends_alerts_on_its_own(engine: Engine, db_url: str, tmp_path: Path) -> None:
    port = free_port()
    settings, _ = settings_for(
        tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port), NOTIFIER__DISPATCH_SECONDS="0.2"
    )
    folder = Path(settings.outreach.maildir)
    _ann_opened_marias_email(engine, folder, NewRule("open", "email"))

    config = uvicorn_config(
        settings, engine, "127.0.0.1", port, log_level="warning", load_hits=False
    )
    with running_in_thread(config):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(sent_mail(folder)) < 2:
            time.sleep(0.1)
    [alert] = [m for m in sent_mail(folder) if str(m["To"]) == "maria@us.example"]
    assert str(alert["From"]) == "maria@us.example"
    assert subject(alert) == "ann@c.example opened “Renewal”"


def _ann_opened_marias_email(
    engine: Engine, folder: Path, rule: NewRule, slack_id: str | None = None
) -> None:
    """Maria, who has `rule`, sent Ann an email an hour ago; Ann opened it a minute ago."""
    email_id = _maria_sent_ann(engine, folder, rule, slack_id, ago=timedelta(minutes=61))
    opened = utcnow() - timedelta(minutes=1)
    with engine.begin() as connection:
        hit = Hit("open", opened, user_agent=PERSON)
        pending = [PendingHit(email_id, hit)]
        write_hits(connection, pending, Rules(), EmailCache(), tracking_enabled=True)


def _maria_sent_ann(
    engine: Engine,
    folder: Path,
    rule: NewRule,
    slack_id: str | None = None,
    ago: timedelta = timedelta(hours=1),
) -> int:
    """Maria, who has `rule`, sent Ann an email `ago`: its id."""
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert()
            .values(email="maria@us.example", slack_user_id=slack_id)
            .returning(users.c.id)
        ).scalar_one()
        add_subscription(connection, maria, rule)
        campaign = plan_campaign(
            connection,
            replace(PLAN, sender_user_id=maria),
            [Outgoing(["ann@c.example"], "Renewal", "<p>x</p>", "x", None)],
            SIGNER,
            TRACKING,
        )
    run_campaign(engine, campaign, MaildirMailbox(folder, "maria@us.example"), owner="test")
    with engine.begin() as connection:
        email_id: int = connection.execute(
            update(emails).values(sent_at=utcnow() - ago).returning(emails.c.id)
        ).scalar_one()
    return email_id


def _pixel(settings: Settings, port: int, email_id: int) -> str:
    token = TokenSigner(settings.tracking.signing_keys).open_token(email_id)
    return f"http://127.0.0.1:{port}/t/o/{token}.gif"


def test_the_servers_loader_stores_a_hit_within_a_second(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """The loader process behind `serve`: what a reader's open shows in the database, and how
    soon (its first hit also waits for the process to start)."""
    port = free_port()
    settings, _ = settings_for(tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port))
    email_id = _maria_sent_ann(engine, Path(settings.outreach.maildir), NewRule("open", "email"))
    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
    with running_in_thread(config):
        for opens in (1, 2):
            assert httpx.get(_pixel(settings, port, email_id)).status_code == 200
            answered = time.monotonic()
            while _opens(engine) < opens and time.monotonic() < answered + 30:
                time.sleep(0.01)
            took = time.monotonic() - answered
    assert _opens(engine) == 2 and took < 1.0, f"stored {took:.2f} s after it was answered"


def _opens(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(engagements.c.opens_raw)) or 0


def test_a_loaded_open_wakes_the_alerts_as_soon_as_it_settles(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Alerts go round every 2 minutes here: the loader's word brings Maria's alert as soon as
    Ann's open has settled (the 10 s in which it may yet turn out a machine's)."""
    port = free_port()
    settings, _ = settings_for(
        tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port), NOTIFIER__DISPATCH_SECONDS="120"
    )
    folder = Path(settings.outreach.maildir)
    email_id = _maria_sent_ann(engine, folder, NewRule("open", "email"))
    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
    with running_in_thread(config):
        time.sleep(1)  # the round at start has run
        pixel = httpx.get(_pixel(settings, port, email_id), headers={"User-Agent": PERSON})
        assert pixel.status_code == 200
        opened = time.monotonic()
        while len(sent_mail(folder)) < 2 and time.monotonic() < opened + 60:
            time.sleep(0.05)
        took = time.monotonic() - opened
    [alert] = [m for m in sent_mail(folder) if str(m["To"]) == "maria@us.example"]
    assert subject(alert) == "ann@c.example opened “Renewal”"
    assert SETTLE.total_seconds() <= took < SETTLE.total_seconds() + 3


def test_the_server_sends_the_daily_digest_on_its_own(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings, _ = settings_for(
        tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port), NOTIFIER__DISPATCH_SECONDS="0.2"
    )
    folder = Path(settings.outreach.maildir)
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert().values(email="maria@us.example").returning(users.c.id)
        ).scalar_one()
        set_digest(connection, maria, enabled=True, at="00:00")  # due as soon as it starts
    config = uvicorn_config(
        settings, engine, "127.0.0.1", port, log_level="warning", load_hits=False
    )
    with running_in_thread(config):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not sent_mail(folder):
            time.sleep(0.1)
    [digest] = sent_mail(folder)
    assert str(digest["To"]) == "maria@us.example"
    assert str(digest["Subject"]).startswith("Your mailbeacon digest for ")
    with engine.connect() as connection:
        assert connection.scalar(select(digests.c.last_sent_day)) is not None


def test_with_a_slack_token_alerts_also_go_as_direct_messages(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with FakeSlack() as slack:
        port = free_port()
        settings, _ = settings_for(
            tmp_path,
            DATABASE__URL=db_url,
            SERVER__PORT=str(port),
            NOTIFIER__DISPATCH_SECONDS="0.2",
            SLACK__BOT_TOKEN=BOT_TOKEN,
            SLACK__API_URL=slack.url,
        )
        folder = Path(settings.outreach.maildir)
        _ann_opened_marias_email(engine, folder, NewRule("open", "slack"), slack_id="U0MARIA")
        config = uvicorn_config(
            settings, engine, "127.0.0.1", port, log_level="warning", load_hits=False
        )
        with running_in_thread(config):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not slack.posted:
                time.sleep(0.1)
        [message] = slack.posted_to("U0MARIA")
        assert message.text.startswith("ann@c.example opened “Renewal”")


def test_one_worker_is_active_and_a_standby_takes_over(engine: Engine) -> None:
    now = utcnow()
    first = Worker(engine, clock=lambda: now)
    second = Worker(engine, clock=lambda: now + timedelta(seconds=5))
    assert first.renew() and not second.renew()
    assert first.renew()  # renewing keeps it
    first.release()  # stopping hands it on at once
    assert second.renew() and not first.renew()
    # A worker that stops renewing (killed) loses it when it runs out.
    later = Worker(engine, clock=lambda: now + LEASE_TTL + timedelta(seconds=10))
    assert later.renew()


def test_serve_role_worker_runs_the_jobs_and_hands_on_the_lease(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings, environ = settings_for(
        tmp_path, DATABASE__URL=db_url, NOTIFIER__DISPATCH_SECONDS="0.2"
    )
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert().values(email="maria@us.example").returning(users.c.id)
        ).scalar_one()
        set_digest(connection, maria, enabled=True, at="00:00")
    folder = Path(settings.outreach.maildir)
    worker = subprocess.Popen(
        [sys.executable, "-m", "mailbeacon.cli", "serve", "--role", "worker"],
        env={**os.environ, **environ},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not sent_mail(folder):
            time.sleep(0.1)
        with engine.connect() as connection:
            assert connection.scalar(select(leases.c.name)) == "worker"
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0
    assert "started, active" in out and "worker stopped" in out
    [digest] = sent_mail(folder)
    assert str(digest["To"]) == "maria@us.example"
    with engine.connect() as connection:
        assert connection.execute(select(leases)).first() is None  # released on the way out
