"""Named leases, on SQLite and PostgreSQL: one holder at a time, renewed, taken over when they
run out, released."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from store.leases import release_lease, take_lease

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


def _take(engine: Engine, owner: str, seconds: float = 0) -> bool:
    with engine.begin() as connection:
        now = NOW + timedelta(seconds=seconds)
        return take_lease(connection, "worker", owner, now=now, ttl=TTL)


def test_one_holder_at_a_time_until_the_lease_runs_out(engine: Engine) -> None:
    assert _take(engine, "a")
    assert not _take(engine, "b", 1)
    assert _take(engine, "a", 20)  # renewed: now good until 50 s
    assert not _take(engine, "b", 45)
    assert _take(engine, "b", 51)  # a stopped renewing: b takes over
    assert not _take(engine, "a", 52)


def test_a_released_lease_is_free_at_once(engine: Engine) -> None:
    assert _take(engine, "a")
    with engine.begin() as connection:
        release_lease(connection, "worker", "b")  # not b's to release
    assert not _take(engine, "b", 1)
    with engine.begin() as connection:
        release_lease(connection, "worker", "a")
    assert _take(engine, "b", 2)
