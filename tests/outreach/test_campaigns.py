"""The outbox: plan everything, send once each, resume after a crash, pause on a daily limit."""

from __future__ import annotations

import mailbox
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from outreach.campaigns import (
    CampaignBusy,
    run_campaign,
)
from outreach.mailbox import DailyLimitReached, Delivered, MailboxError
from outreach.maildir import MaildirMailbox
from store.clock import utcnow
from store.schema import campaigns, emails
from tests.helpers import SENDER, campaign_status, plan_numbered


def _sent_to(folder: Path) -> Counter[str]:
    sent = mailbox.Maildir(folder).get_folder("Sent")
    return Counter(str(message["To"]) for message in sent)


def test_a_campaign_sends_every_planned_email_once(engine: Engine, tmp_path: Path) -> None:
    campaign_id = plan_numbered(engine, 5)
    box = MaildirMailbox(tmp_path / "Maildir", SENDER)
    report = run_campaign(engine, campaign_id, box, owner="test")
    assert (report.sent, report.found_already_sent, report.paused) == (5, 0, None)
    assert _sent_to(tmp_path / "Maildir") == Counter({f"u{i}@c.example": 1 for i in range(5)})
    assert campaign_status(engine, campaign_id) == ("sent", 5, None)
    with engine.connect() as connection:
        rows = connection.execute(select(emails).order_by(emails.c.id)).all()
    assert {row.status for row in rows} == {"sent"}
    assert all(row.sent_at is not None and row.provider_message_id for row in rows)
    # Tracked: the planned message carries the pixel and rewritten links.
    assert b"/t/o/" in rows[0].mime and b"https://t.example/t/c/" in rows[0].mime
    with pytest.raises(CampaignBusy, match="is sent: there is nothing to send"):
        run_campaign(engine, campaign_id, box, owner="test")


def test_the_email_in_flight_at_a_crash_is_checked_before_it_is_sent_again(
    engine: Engine, tmp_path: Path
) -> None:
    campaign_id = plan_numbered(engine, 3)
    box = MaildirMailbox(tmp_path / "Maildir", SENDER)
    with engine.begin() as connection:
        first = connection.execute(select(emails).order_by(emails.c.id)).first()
        assert first is not None
        # The provider accepted it, then the sender died before recording that.
        connection.execute(update(emails).where(emails.c.id == first.id).values(status="sending"))
        connection.execute(update(campaigns).values(lease_owner="dead", lease_expires_at=None))
    sent = mailbox.Maildir(tmp_path / "Maildir", create=True).add_folder("Sent")
    sent.add(mailbox.MaildirMessage(first.mime))
    report = run_campaign(engine, campaign_id, box, owner="test")
    assert (report.sent, report.found_already_sent) == (2, 1)
    assert _sent_to(tmp_path / "Maildir") == Counter({f"u{i}@c.example": 1 for i in range(3)})


class FlakyMailbox(MaildirMailbox):
    """A provider that answers 429 twice, then hits its daily limit after `limit` sends."""

    def __init__(self, folder: Path, limit: int) -> None:
        super().__init__(folder, SENDER)
        self.limit, self.calls, self.sent = limit, 0, 0

    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        self.calls += 1
        if self.calls <= 2:
            raise MailboxError("429 Too Many Requests", retry_after=1.5)
        if self.sent >= self.limit:
            raise DailyLimitReached("2,000 messages a day")
        self.sent += 1
        return super().send(message, thread_id)


def test_rate_limits_are_retried_and_a_daily_limit_pauses_until_later(
    engine: Engine, tmp_path: Path
) -> None:
    campaign_id = plan_numbered(engine, 4)
    box = FlakyMailbox(tmp_path / "Maildir", limit=3)
    waits: list[float] = []
    report = run_campaign(engine, campaign_id, box, owner="test", sleep=waits.append)
    assert waits == [1.5, 1.5]  # Retry-After honoured
    assert report.sent == 3 and report.paused is not None
    status, sent_count, reason = campaign_status(engine, campaign_id)
    assert (status, sent_count) == ("paused", 3)
    assert reason == f"{SENDER} reached its daily sending limit: 2,000 messages a day"
    box.limit = 10  # the next day
    assert run_campaign(engine, campaign_id, box, owner="test").sent == 1
    assert campaign_status(engine, campaign_id)[:2] == ("sent", 4)
    assert sum(_sent_to(tmp_path / "Maildir").values()) == 4


def test_one_sender_at_a_time(engine: Engine, tmp_path: Path) -> None:
    campaign_id = plan_numbered(engine, 1)
    box = MaildirMailbox(tmp_path / "Maildir", SENDER)
    with engine.begin() as connection:
        connection.execute(
            update(campaigns).values(
                lease_owner="worker-1", lease_expires_at=utcnow() + timedelta(minutes=1)
            )
        )
    with pytest.raises(CampaignBusy, match="being sent by worker-1 right now"):
        run_campaign(engine, campaign_id, box, owner="worker-2")
    with engine.begin() as connection:  # worker-1 died: its lease runs out
        connection.execute(
            update(campaigns).values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert run_campaign(engine, campaign_id, box, owner="worker-2").sent == 1


RUNNER = """
import sys
from pathlib import Path
from store.engine import DatabaseSettings, make_engine
from outreach.campaigns import run_campaign
from outreach.maildir import MaildirMailbox
url, campaign, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
engine = make_engine(DatabaseSettings(url=url))
run_campaign(engine, campaign, MaildirMailbox(folder, "me@us.example"), owner=sys.argv[4])
"""


def test_a_send_out_killed_at_random_and_restarted_reaches_everyone_exactly_once(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    campaign_id = plan_numbered(engine, 1000)
    folder = tmp_path / "Maildir"

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", RUNNER, db_url, str(campaign_id), str(folder), name],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )

    kills_mid_send = 0
    for attempt in range(3):
        runner = start(f"runner-{attempt}")
        deadline = time.monotonic() + 30
        while campaign_status(engine, campaign_id)[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # let it get going, then kill it at a random point
        time.sleep(random.uniform(0, 0.3))
        if runner.poll() is None:
            runner.send_signal(signal.SIGKILL)
            kills_mid_send += campaign_status(engine, campaign_id)[1] < 1000
        runner.wait()
        # A killed sender holds its lease until it expires; a restart after a crash takes
        # over sooner (as the operator's resume would).
        with engine.begin() as connection:
            connection.execute(update(campaigns).values(lease_expires_at=None, lease_owner=None))
    if campaign_status(engine, campaign_id)[0] != "sent":
        assert start("runner-last").wait(timeout=300) == 0
    assert kills_mid_send >= 1
    assert _sent_to(folder) == Counter({f"u{i}@c.example": 1 for i in range(1000)})
    assert campaign_status(engine, campaign_id)[:2] == ("sent", 1000)


class DownMailbox(MaildirMailbox):
    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        raise MailboxError("503 Service Unavailable")


def test_a_provider_that_keeps_failing_pauses_the_campaign(engine: Engine, tmp_path: Path) -> None:
    campaign_id = plan_numbered(engine, 2)
    waits: list[float] = []
    box = DownMailbox(tmp_path / "Maildir", SENDER)
    report = run_campaign(engine, campaign_id, box, owner="test", sleep=waits.append)
    assert waits == [2.0, 4.0, 8.0, 16.0]  # exponential backoff, then give up for now
    assert report.paused == f"{SENDER} kept failing, try again later: 503 Service Unavailable"
    assert campaign_status(engine, campaign_id) == ("paused", 0, report.paused)
    # Later, with the provider back, the same campaign finishes.
    assert (
        run_campaign(
            engine, campaign_id, MaildirMailbox(tmp_path / "Maildir", SENDER), owner="test"
        ).sent
        == 2
    )


class SlowDownMailbox(MaildirMailbox):
    def send(self, message: EmailMessage, thread_id: str | None = None) -> Delivered:
        raise MailboxError("429 Too Many Requests", retry_after=3600)


def test_a_long_retry_after_pauses_rather_than_outwaiting_the_lease(
    engine: Engine, tmp_path: Path
) -> None:
    campaign_id = plan_numbered(engine, 1)
    waits: list[float] = []
    box = SlowDownMailbox(tmp_path / "Maildir", SENDER)
    report = run_campaign(engine, campaign_id, box, owner="test", sleep=waits.append)
    assert waits == []
    assert report.paused is not None and "(asked to wait 3600 s)" in report.paused
