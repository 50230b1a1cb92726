"""A real tracking server (uvicorn in a thread) on each database, and emails to hit. Its hits
are loaded from the journal by the test itself, before it reads the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from mailbeacon.settings import Settings
from outreach.emails import Draft, create_email, mark_sent
from store.clock import utcnow
from store.schema import endusers, engagements, events
from tests.conftest import settings_for
from tracking.instrument import TrackingFlags
from tracking.loader import HitLoader, LoadReport, load_all
from tracking.settings import tracking_rules
from tracking.tokens import TokenSigner

HTML = (
    '<html><body><p>Hi! <a href="https://example.com/one">one</a> '
    '<a href="https://example.com/two?x=1#frag">two</a></p></body></html>'
)
PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


@dataclass(frozen=True)
class SentEmail:
    id: int
    open_url: str
    click_urls: dict[int, str]  # by link index; 0 is the honeypot
    destinations: dict[int, str]


@dataclass
class TrackingServer:
    settings: Settings
    engine: Engine
    signer: TokenSigner
    client: httpx.Client

    @property
    def base(self) -> str:
        return self.settings.tracking.base_url

    def send(
        self,
        to: list[str] | None = None,
        *,
        html: str = HTML,
        opens: bool = True,
        clicks: bool = True,
        sent_ago: timedelta = timedelta(hours=1),
        sender_user_id: int | None = None,
        thread_id: str | None = None,
    ) -> SentEmail:
        to = to or ["sofia@customer.example"]
        with self.engine.begin() as connection:
            enduser_id = connection.scalar(select(endusers.c.id).where(endusers.c.email == to[0]))
            if enduser_id is None:
                enduser_id = connection.execute(
                    endusers.insert().values(email=to[0], attributes={}).returning(endusers.c.id)
                ).scalar_one()
            count = connection.scalar(
                select(engagements.c.email_id).order_by(engagements.c.email_id.desc())
            )
            draft = Draft(
                idempotency_key=f"test-{count or 0}-{to[0]}",
                to=to,
                subject="Hello",
                html=html,
                text="Hello https://example.com/one",
                flags=TrackingFlags(opens=opens, clicks=clicks),
                enduser_id=enduser_id,
                sender_user_id=sender_user_id,
                thread_id=thread_id,
            )
            email_id, body = create_email(connection, draft, self.signer, self.settings.tracking)
            mark_sent(
                connection, email_id, message_id=f"<{email_id}@test>", sent_at=utcnow() - sent_ago
            )
        return SentEmail(
            id=email_id,
            open_url=f"{self.base}/t/o/{self.signer.open_token(email_id)}.gif",
            click_urls={
                link.idx: f"{self.base}/t/c/{self.signer.click_token(email_id, link.idx)}"
                for link in body.links
            },
            destinations={link.idx: link.url for link in body.links},
        )

    def get(self, url: str, agent: str = PERSON, ip: str = "198.51.100.1") -> httpx.Response:
        return self.client.get(url, headers={"User-Agent": agent, "X-Forwarded-For": ip})

    def load(self) -> LoadReport:
        """What the loader process would do behind the server: every journaled hit, now."""
        tracking = self.settings.tracking
        loader = HitLoader(
            self.engine,
            Path(tracking.journal_dir),
            tracking_rules(tracking),
            tracking_enabled=tracking.enabled,
        )
        return load_all(loader)

    def events(self, email_id: int) -> list[Any]:
        self.load()
        with self.engine.connect() as connection:
            query = select(events).where(events.c.email_id == email_id).order_by(events.c.id)
            return list(connection.execute(query))

    def engagement(self, email_id: int) -> Any:
        self.load()
        with self.engine.connect() as connection:
            query = select(engagements).where(engagements.c.email_id == email_id)
            return connection.execute(query).one()


ServerFactory = Callable[..., TrackingServer]


@pytest.fixture
def tracking_server_factory(db_url: str, tmp_path: Path, engine: Engine) -> Iterator[ServerFactory]:
    """Start a server with extra config (environment-style keys, e.g. TRACKING__ENABLED)."""
    stack: list[Any] = []

    def start(**overrides: str) -> TrackingServer:
        port = free_port()
        settings, _ = settings_for(
            tmp_path / "data", DATABASE__URL=db_url, SERVER__PORT=str(port), **overrides
        )
        config = uvicorn_config(settings, engine, "127.0.0.1", port, load_hits=False)
        running = running_in_thread(config)
        running.__enter__()
        stack.append(running)
        client = httpx.Client(timeout=10, follow_redirects=False)
        stack.append(client)
        return TrackingServer(settings, engine, TokenSigner(settings.tracking.signing_keys), client)

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def server(tracking_server_factory: ServerFactory) -> TrackingServer:
    return tracking_server_factory()
