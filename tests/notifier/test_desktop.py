"""Desktop alerts through the /alerts page's event stream, on SQLite and PostgreSQL: each page
gets what it has not shown, a reconnecting page what it missed, the last alerts as its history,
and only with a valid token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, select, update

from mailbeacon.serve import (
    GRACEFUL_SHUTDOWN_SECONDS,
    free_port,
)
from notifier.channels import EmailChannel
from notifier.desktop import event_id, recent_alerts
from notifier.dispatcher import deliver
from outreach.maildir import MaildirMailbox
from store.schema import deliveries, emails, endusers, events, users
from tests.conftest import settings_for
from tests.notifier.conftest import Desk
from tracking.tokens import TokenSigner

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


def test_each_page_gets_what_it_has_not_shown_and_a_reconnect_what_it_missed(
    desk: Desk, tmp_path: Path
) -> None:
    desk.open_and_dispatch()
    # The worker sends email and Slack; desktop alerts wait for a page.
    email = EmailChannel(lambda recipient: MaildirMailbox(tmp_path / "M", recipient.email))
    assert deliver(desk.engine, {"email": email}).delivered == 0
    with httpx.Client(timeout=10) as client:
        [(first, alert)] = desk.read(client, 1)
        assert alert["title"] == "ann@c.example opened “Renewal”"
        with desk.engine.connect() as connection:
            assert connection.scalar(select(deliveries.c.status)) == "delivered"
        desk.open_and_dispatch()
        # A new page shows only the new alert, not the one already shown.
        [(second, _)] = desk.read(client, 1)
        assert int(second) > int(first)
        # A page that lost its connection after the first gets the second on reconnecting.
        assert [event_id for event_id, _ in desk.read(client, 1, last_id=first)] == [second]


@pytest.mark.parametrize("last_id", ["abc", "-1", "1.5", "7x", "0x10", str(10**30), "9" * 5000])
def test_a_last_event_id_we_could_not_have_sent_gets_a_fresh_stream(
    desk: Desk, last_id: str
) -> None:
    desk.open_and_dispatch()
    with httpx.Client(timeout=10) as client:
        [(_, alert)] = desk.read(client, 1, last_id=last_id)
    assert alert["title"] == "ann@c.example opened “Renewal”"


@pytest.mark.parametrize(
    ("header", "after"),
    [("0", 0), ("42", 42), ("9" * 18, 10**18 - 1), ("9" * 19, None), ("", None), ("²", None)],
)
def test_event_ids_are_small_whole_numbers(header: str, after: int | None) -> None:
    assert event_id(header) == after


def test_a_forged_token_reads_nothing(desk: Desk) -> None:
    with httpx.Client(timeout=10) as client:
        tail = "AA" if not desk.token.endswith("AA") else "BB"  # always another token
        forged = client.get(f"{desk.base}/alerts/stream?token={desk.token[:-2]}{tail}")
        assert forged.status_code == 404 and "not valid" in forged.text
        page = client.get(f"{desk.base}/alerts?token={desk.token}")
    assert page.status_code == 200 and "new EventSource(" in page.text
    assert desk.token not in page.text  # the page reads it from its own address
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_an_open_page_does_not_keep_the_server_from_stopping(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    settings, environ = settings_for(tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port))
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert().values(email="maria@us.example").returning(users.c.id)
        ).scalar_one()
    token = TokenSigner(settings.tracking.signing_keys).feed_token(maria)
    server = subprocess.Popen(
        [sys.executable, "-m", "mailbeacon.cli", "serve"],
        env={**os.environ, **environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with (
            httpx.Client(timeout=30) as client,
            client.stream("GET", f"{base}/alerts/stream?token={token}") as response,
        ):
            assert response.status_code == 200
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == -signal.SIGTERM
            assert time.monotonic() - started < GRACEFUL_SHUTDOWN_SECONDS + 5
    finally:
        server.kill()
        server.wait()


STRANGER = '<img src=x onerror="alert(1)">'


def test_the_page_lists_the_last_alerts_newest_first_in_the_users_time_zone(desk: Desk) -> None:
    with desk.engine.begin() as connection:
        ann = connection.execute(
            endusers.insert().values(email="ann@c.example", name=STRANGER).returning(endusers.c.id)
        ).scalar_one()
        connection.execute(update(emails).values(enduser_id=ann))
        connection.execute(update(users).values(timezone="Asia/Kolkata"))
    desk.open_and_dispatch()
    with httpx.Client(timeout=10) as client:
        [(shown, _)] = desk.read(client, 1)  # taken by a tab: still in the history
        desk.open_and_dispatch()
        recent = client.get(f"{desk.base}/alerts/recent?token={desk.token}")
        tail = "AA" if not desk.token.endswith("AA") else "BB"  # always another token
        forged = client.get(f"{desk.base}/alerts/recent?token={desk.token[:-2]}{tail}")
        page = client.get(f"{desk.base}/alerts?token={desk.token}")
    assert forged.status_code == 404 and "not valid" in forged.text
    assert recent.status_code == 200
    newest, older = recent.json()
    assert older["id"] == int(shown) < newest["id"]
    with desk.engine.connect() as connection:
        campaign = connection.scalar(select(emails.c.campaign_id))
        first_at = connection.scalar(select(events.c.at).order_by(events.c.id))
    assert first_at is not None and campaign is not None
    local = first_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Kolkata"))
    assert older["at"] == f"{local:%Y-%m-%d %H:%M} IST"
    assert older["title"] == f"{STRANGER} opened “Renewal”"
    assert older["campaign"] == campaign and f"campaign #{campaign}" in older["details"]
    # The page writes every text with textContent, never as HTML.
    assert 'fetch("/alerts/recent?token="' in page.text and "innerHTML" not in page.text


def test_the_history_is_the_last_alerts_only(desk: Desk) -> None:
    for _ in range(3):
        desk.open_and_dispatch()
    with desk.engine.connect() as connection:
        maria = connection.scalar(select(users.c.id))
        newest = connection.scalar(select(deliveries.c.id).order_by(deliveries.c.id.desc()))
    assert maria is not None
    assert [alert["id"] for alert in recent_alerts(desk.engine, maria, limit=1)] == [newest]
    assert len(recent_alerts(desk.engine, maria)) == 3
