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

from sqlalchemy import Engine, select, update

from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from mailbeacon.worker import LEASE_TTL, Worker, sync_replies
from notifier.digests import set_digest
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

    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
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

    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
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
    opened = utcnow() - timedelta(minutes=1)
    with engine.begin() as connection:
        email_id = connection.execute(
            update(emails).values(sent_at=opened - timedelta(hours=1)).returning(emails.c.id)
        ).scalar_one()
        hit = Hit("open", opened, user_agent="Mozilla/5.0 (X11; Linux x86_64) Thunderbird/128.0")
        pending = [PendingHit(email_id, hit)]
        write_hits(connection, pending, Rules(), EmailCache(), tracking_enabled=True)


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
    config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
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
        config = uvicorn_config(settings, engine, "127.0.0.1", port, log_level="warning")
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
