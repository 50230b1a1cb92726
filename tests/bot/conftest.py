"""A team as the command tests see it: the example audience and templates, an admin and a
member, a Maildir mailbox; commands run as `/beacon` runs them, and a worker runs their jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from bot.context import Reply
from bot.jobs import get_job, run_due
from bot.registry import run_text
from bot.users import User, UserSettings, find_user, sync_config_users
from mailbeacon.context import command_context, job_contexts
from mailbeacon.settings import Settings
from outreach.importer import import_file
from outreach.templates import sync_templates
from store.clock import utcnow
from tests.conftest import settings_for
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

    def work(self, only: int | None = None, on_end: Callable[[Any], None] | None = None) -> int:
        contexts = job_contexts(self.settings, self.engine, self.clock)
        return run_due(self.engine, "test-worker", contexts, self.clock, only=only, on_end=on_end)

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
    )
    return Team(engine, settings, tmp_path)
