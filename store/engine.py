"""Engines for SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


@dataclass(frozen=True)
class DatabaseSettings:
    # Empty means sqlite:///<data_dir>/mailbeacon.db, filled in by the composition root.
    url: str = ""
    # FULL fsyncs the WAL at each commit: an acknowledged hit survives power loss, not only a
    # crash. Group commit keeps that affordable.
    sqlite_synchronous: Literal["full", "normal"] = "full"
    pool_size: int = 10


def make_engine(settings: DatabaseSettings) -> Engine:
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(settings)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_size=settings.pool_size, pool_pre_ping=True)


def _sqlite_engine(settings: DatabaseSettings) -> Engine:
    url = make_url(settings.url)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={settings.sqlite_synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A transaction begun on purpose (`engine.begin()`, `connection.begin()`) writes: BEGIN
        # IMMEDIATE takes the write lock up front, so one that reads and then writes never fails
        # half-way with SQLITE_BUSY when another writer got there first. One that SQLAlchemy
        # begins by itself on a plain `engine.connect()` only reads: a deferred BEGIN, which in
        # WAL mode never waits for the write lock nor keeps a writer (the recorder) waiting.
        connection.exec_driver_sql("BEGIN" if is_autobegin() else "BEGIN IMMEDIATE")

    return engine


def is_autobegin() -> bool:
    """Whether the transaction being begun (asked from a "begin" event listener) is
    SQLAlchemy's autobegin, a read on a connection nobody began a transaction on, rather than
    an explicit begin()."""
    frame = sys._getframe(2)
    for _ in range(6):
        if frame is None:
            return False
        if frame.f_code.co_name == "_autobegin":
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
