"""Shared fixtures: every store test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from mailbeacon.settings import Settings, load_settings, with_generated_keys
from store.engine import DatabaseSettings, make_engine
from store.migrate import upgrade

POSTGRES_URL = os.environ.get("MAILBEACON_TEST_DATABASE_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each kind (PostgreSQL: a schema of its own per test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mailbeacon.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL: set MAILBEACON_TEST_DATABASE_URL to run this test on it")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database migrated to the newest schema once, for each test to copy."""
    path = tmp_path_factory.mktemp("template") / "mailbeacon.db"
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{path}"))
    upgrade(engine)
    engine.dispose()  # its last connection checkpoints the WAL into the file
    return path


@pytest.fixture
def engine(db_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on a database migrated to the newest schema (on SQLite, a copy of one)."""
    if db_url.startswith("sqlite:///"):
        shutil.copyfile(request.getfixturevalue("sqlite_template"), db_url[len("sqlite:///") :])
    engine = make_engine(DatabaseSettings(url=db_url))
    if not db_url.startswith("sqlite:///"):
        upgrade(engine)
    yield engine
    engine.dispose()


def settings_for(data_dir: Path, **keys: str) -> tuple[Settings, dict[str, str]]:
    """Settings as a server would load them, from environment-style overrides such as
    DATABASE__URL="…"; reply sync and alerts are off unless asked for. Also returns the
    environment, for a server started as a separate process."""
    environ = {
        "MAILBEACON__DATA_DIR": str(data_dir),
        "MAILBEACON__TRACKING__REPLY_SYNC_SECONDS": "0",
        "MAILBEACON__NOTIFIER__DISPATCH_SECONDS": "0",
        **{f"MAILBEACON__{key}": value for key, value in keys.items()},
    }
    return with_generated_keys(load_settings(None, environ)), environ
