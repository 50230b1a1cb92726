"""`mailbeacon serve` under load while its database is away for 30 s, on SQLite and PostgreSQL:
PostgreSQL stopped (cut off behind a proxy), SQLite's write lock held by another process (SQLite
has no server to stop; this also is the 20 s write lock of issue 11, held longer). Pixels are
answered from the journal at once all along, /healthz stays green and shows the backlog, and
once the database is back every hit is loaded, none twice."""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import httpx
from sqlalchemy import Engine, make_url

from tests.fakes.tcp_proxy import TcpProxy
from tests.tracking.served import Answer, Load, Stored, poll, send_email, serving, stored

# A modest 400 hits/s: the answer times measured are then the server's, not a queue's.
CLIENTS, PER_SECOND = 8, 50
# What a pixel's answer may take while the database is away, at the 99th percentile. Not the
# max: on a shared 2-core machine one answer in thousands waits for a CPU or the disk (measured
# here: p99 6-20 ms, max up to 280 ms), which says nothing about the server.
ANSWER_SECONDS = 0.05
HEALTH_EVERY = 2.0

Fault = Callable[[], AbstractContextManager[None]]


def test_hits_are_answered_and_all_loaded_while_the_database_is_stopped(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    with _stoppable(db_url, engine) as (server_url, stopped):
        run = _under_load(stopped, 30, engine, tmp_path / "data", server_url)
    _assert_answered_at_once(run, 30)
    sqlite = engine.dialect.name == "sqlite"
    # The health check only reads, and SQLite's readers go on under another's write lock (WAL).
    assert {(h.status_code, h.json()["database"]) for h in run.health} == {
        (200, "ok" if sqlite else "unreachable")
    }
    if not sqlite:  # and the loader says why it waits
        assert all(h.json()["journal"]["loader_error"] for h in run.health)
    backlog = [h.json()["journal"]["backlog_hits"] for h in run.health]
    assert len(backlog) >= 10 and all(a < b for a, b in pairwise(backlog)), backlog
    _assert_every_hit_loaded_once(run)


@dataclass(frozen=True)
class Run:
    during: list[Answer]  # the pixels asked during the fault
    health: list[httpx.Response]  # /healthz, every HEALTH_EVERY s during the fault
    acknowledged: set[str]
    broken: list[str]  # why a client's connection broke, if one did
    stored: Stored  # once every acknowledged hit is loaded, or 30 s after the load


def _under_load(fault: Fault, seconds: float, engine: Engine, data: Path, url: str) -> Run:
    """Pixel hits at a steady pace before, during and for a while after the fault (held for
    `seconds`), then the loader gets 30 s to load them all."""
    email = send_email(engine, data)
    health: list[httpx.Response] = []
    with serving(data, url) as served:
        with Load(served.base + email.pixel, CLIENTS, PER_SECOND) as load:
            time.sleep(0.5)
            with fault():
                began = time.monotonic()
                while time.monotonic() + HEALTH_EVERY < began + seconds:
                    time.sleep(HEALTH_EVERY)
                    health.append(served.health())
                time.sleep(max(0.0, began + seconds - time.monotonic()))
                ended = time.monotonic()
            time.sleep(0.5)  # hits go on coming while the loader catches up
        acknowledged = load.acknowledged()
        got = poll(lambda: stored(engine, email.id), lambda now: acknowledged <= set(now.agents))
    during = [answer for answer in load.answers if began <= answer.sent <= ended]
    return Run(during, health, acknowledged, load.broken, got)


def _assert_answered_at_once(run: Run, seconds: float) -> None:
    assert not run.broken
    assert {answer.status for answer in run.during} == {200}
    # Answers at their pace: the pixels were not held back.
    assert len(run.during) > seconds * CLIENTS * PER_SECOND / 2
    took = [answer.took for answer in run.during]
    p99 = statistics.quantiles(took, n=100)[98]
    assert p99 < ANSWER_SECONDS, f"p99 {p99 * 1000:.0f} ms, max {max(took) * 1000:.0f} ms"


def _assert_every_hit_loaded_once(run: Run) -> None:
    agents = set(run.stored.agents)
    missing = run.acknowledged - agents
    assert not missing, f"{len(missing)} of {len(run.acknowledged)} acknowledged hits were lost"
    assert run.stored.doubled() == []
    assert agents == run.acknowledged  # every hit was answered: none was in flight at the end
    assert run.stored.opens == len(run.acknowledged)


@contextlib.contextmanager
def _stoppable(db_url: str, engine: Engine) -> Iterator[tuple[str, Fault]]:
    """The URL the server is to use, and how to stop its database for a while. PostgreSQL is
    reached through a proxy, and the proxy is stopped: no one can connect, and the open
    connections are cut. SQLite has no server to stop: another process holds its write lock."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        yield db_url, lambda: _write_lock_held(engine)
        return
    with TcpProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy.stopped


# Takes SQLite's write lock, says so, and keeps it until it is killed.
_HOLD_WRITE_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(3600)
"""


@contextlib.contextmanager
def _write_lock_held(engine: Engine) -> Iterator[None]:
    """Another process holds SQLite's write lock for the block, taken by a transaction begun
    IMMEDIATE: readers go on (WAL), writers wait."""
    command = [sys.executable, "-c", _HOLD_WRITE_LOCK, str(engine.url.database)]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            yield
        finally:
            holder.kill()  # and its lock goes with it
