"""A team as the command tests see it: the example audience and templates, an admin and a
member, a Maildir mailbox; commands run as `/beacon` runs them, and a worker runs their jobs.
`slack`: the team's server with Slack on, talking to the fake Slack, for signed requests."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from bot.context import Reply
from bot.jobs import Watcher, get_job, run_due
from bot.registry import run_text
from bot.users import User, UserSettings, find_user, sync_config_users
from mailbeacon.context import command_context, job_contexts
from mailbeacon.serve import free_port, running_in_thread, uvicorn_config
from mailbeacon.settings import Settings
from outreach.importer import import_file
from outreach.templates import sync_templates
from store.clock import utcnow
from tests.conftest import settings_for
from tests.fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    action_body,
    command_body,
    signed,
)
from tests.helpers import sent_mail

ROOT = Path(__file__).resolve().parents[2]
BOSS, MEMBER = "boss@us.example", "member@us.example"


class Team:
    def __init__(self, engine: Engine, settings: Settings, folder: Path) -> None:
        self.engine = engine
        self.settings = settings
        self.folder = folder
        self.clock: Callable[[], datetime] = utcnow

    def user(self, who: str) -> User:
        with self.engine.connect() as connection:
            found = find_user(connection, who)
        assert found is not None
        return found

    def run(self, text: str, who: str = BOSS, *, yes: bool = False, work: bool = True) -> Reply:
        """`/beacon <text>` as `who`; with `work`, the worker then runs the job it started."""
        context = command_context(self.settings, self.engine, self.user(who), self.clock)
        reply = run_text(text, context, confirmed=yes)
        if work and reply.job is not None:
            self.work(reply.job)
        return reply

    def work(self, only: int | None = None, watcher: Watcher | None = None) -> int:
        contexts = job_contexts(self.settings, self.engine, self.clock)
        return run_due(self.engine, "test-worker", contexts, self.clock, only=only, watcher=watcher)

    def job(self, job_id: int) -> Any:
        with self.engine.connect() as connection:
            return get_job(connection, job_id)

    def sent(self) -> list[Any]:
        """What the Maildir mailbox has sent."""
        return sent_mail(self.folder / "Maildir")


@pytest.fixture
def team(engine: Engine, db_url: str, tmp_path: Path) -> Team:
    for name in ("companies.csv", "endusers.csv"):
        import_file(engine, ROOT / "examples" / name)
    sync_templates(engine, ROOT / "examples" / "templates")
    with engine.begin() as connection:
        sync_config_users(
            connection,
            [UserSettings(BOSS, "Boss", role="admin"), UserSettings(MEMBER, "Mia Member")],
        )
    settings, _ = settings_for(
        tmp_path,
        DATABASE__URL=db_url,
        TRACKING__BASE_URL="https://t.example",
        TRACKING__SIGNING_KEYS=f"[{'k' * 32}]",
        OUTREACH__ADMIN_SEND_THRESHOLD="2",
        # OAuth apps, so that `/beacon connect` makes links (they lead to fakes, if anywhere).
        OAUTH__GOOGLE_CLIENT_ID="google-client",
        OAUTH__GOOGLE_CLIENT_SECRET="google-secret",
        OAUTH__MICROSOFT_CLIENT_ID="microsoft-client",
        OAUTH__MICROSOFT_CLIENT_SECRET="microsoft-secret",
    )
    return Team(engine, settings, tmp_path)


UBOSS, UMEMBER, UNEW, USTRANGER = "UBOSS", "UMEMBER", "UNEW", "USTRANGER"
LEE = "lee.chen@acme-logistics.example"


class Slack:
    """The team's server with Slack on, and the fake Slack it talks to."""

    def __init__(self, team: Team, fake: FakeSlack, base: str) -> None:
        self.team = team
        self.fake = fake
        self.base = base
        self._urls = iter(range(1, 10_000))

    def post(self, body: str, **headers: str) -> httpx.Response:
        return httpx.post(
            f"{self.base}/slack/events", content=body, headers={**signed(body), **headers}
        )

    def command(self, text: str, user: str = UBOSS) -> tuple[httpx.Response, str]:
        """`/beacon <text>` typed by `user`: the HTTP answer and the response URL's name."""
        name = str(next(self._urls))
        answer = self.post(command_body(text, user, self.fake.response_url(name)))
        return answer, name

    def answer(self, name: str, count: int = 1) -> dict[str, Any]:
        """The `count`-th message posted to a response URL, once it has come."""
        deadline = time.monotonic() + 10
        while len(said := self.fake.said(name)) < count:
            assert time.monotonic() < deadline, f"no message {count} at response URL {name}"
            time.sleep(0.01)
        return said[count - 1]

    def press(self, message: dict[str, Any], action: str, user: str = UBOSS) -> str:
        [value] = [
            element["value"]
            for block in message["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
            if element["action_id"] == action
        ]
        name = str(next(self._urls))
        answer = self.post(action_body(action, value, user, self.fake.response_url(name)))
        assert answer.status_code == 200
        return name


@pytest.fixture
def slack(team: Team) -> Iterator[Slack]:
    with (
        FakeSlack(
            members={
                BOSS: UBOSS,
                MEMBER: UMEMBER,
                "newcomer@us.example": UNEW,
                "someone@elsewhere.example": USTRANGER,
            }
        ) as fake,
        serving(team, fake, signing_secret=SIGNING_SECRET) as slack,
    ):
        yield slack


@contextlib.contextmanager
def serving(team: Team, fake: FakeSlack, **slack: str) -> Iterator[Slack]:
    """The team's server with Slack on (the bot token and these `slack.*` keys), talking to
    `fake`; the team's settings become the server's."""
    team.settings = replace(
        team.settings,
        internal_domains=["us.example"],
        slack=replace(team.settings.slack, bot_token=BOT_TOKEN, api_url=fake.url, **slack),
    )
    port = free_port()
    config = uvicorn_config(
        team.settings, team.engine, "127.0.0.1", port, "warning", run_jobs=False, load_hits=False
    )
    with running_in_thread(config):
        yield Slack(team, fake, f"http://127.0.0.1:{port}")
