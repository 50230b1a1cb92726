"""A server with one user who asked for desktop alerts on opens, and the email they sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, update

from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from notifier.dispatcher import dispatch
from outreach.campaigns import Outgoing
from outreach.maildir import MaildirMailbox
from store.clock import utcnow
from store.schema import emails, subscriptions, users
from tests.conftest import settings_for
from tests.helpers import send_campaign
from tracking.classify import Hit, Rules
from tracking.record import EmailCache, PendingHit, write_hits
from tracking.tokens import TokenSigner

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


class Desk:
    def __init__(self, engine: Engine, base: str, token: str, email_id: int) -> None:
        self.engine, self.base, self.token, self.email_id = engine, base, token, email_id

    def open_and_dispatch(self) -> None:
        """Ann opens the email; a minute later the dispatcher has seen it."""
        at = utcnow() - timedelta(minutes=2)
        with self.engine.begin() as connection:
            hit = Hit("open", at, user_agent=PERSON)
            pending = [PendingHit(self.email_id, hit)]
            write_hits(connection, pending, Rules(), EmailCache(), tracking_enabled=True)
        dispatch(self.engine)

    def read(self, client: httpx.Client, count: int, last_id: str | None = None) -> list[Any]:
        """The first `count` alerts the stream sends: (id, data)."""
        headers = {"Last-Event-ID": last_id} if last_id else {}
        url = f"{self.base}/alerts/stream?token={self.token}"
        got: list[Any] = []
        with client.stream("GET", url, headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            event_id = None
            for line in response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    got.append((event_id, json.loads(line[6:])))
                    if len(got) == count:
                        return got
        return got


@pytest.fixture
def desk(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[Desk]:
    port = free_port()
    settings, _ = settings_for(tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port))
    with engine.begin() as connection:
        maria = connection.execute(
            users.insert().values(email="maria@us.example").returning(users.c.id)
        ).scalar_one()
        connection.execute(
            subscriptions.insert().values(user_id=maria, event_kind="open", channel="desktop")
        )
    box = MaildirMailbox(tmp_path / "Maildir", "maria@us.example")
    outgoing = [Outgoing(["ann@c.example"], "Renewal", "<p>x</p>", "x", None)]
    [email] = send_campaign(engine, box, outgoing, sender_user_id=maria)
    with engine.begin() as connection:
        sent_at = utcnow() - timedelta(hours=1)
        connection.execute(update(emails).values(sent_at=sent_at))
    token = TokenSigner(settings.tracking.signing_keys).feed_token(maria)
    config = uvicorn_config(
        settings, engine, "127.0.0.1", port, log_level="warning", load_hits=False
    )
    with running_in_thread(config):
        yield Desk(engine, f"http://127.0.0.1:{port}", token, email.id)
