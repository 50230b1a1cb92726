"""An acknowledged hit is never lost nor counted twice: `mailbeacon serve` is stopped under load
(SIGKILL, SIGTERM) and started again on the same data folder, and every hit it answered is
loaded, once."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.tracking.served import Load, poll, send_email, serving, stored

CLIENTS = 32  # at most this many hits are in flight: journaled, and not answered yet


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_every_acknowledged_hit_is_loaded_once_after_a_restart(
    db_url: str, engine: Engine, tmp_path: Path, stop: signal.Signals
) -> None:
    data = tmp_path / "data"
    email = send_email(engine, data)
    with serving(data, db_url) as first, Load(first.base + email.pixel, CLIENTS) as load:
        # Stop it mid-load: after a random moment, once it has answered a good many hits (a
        # busy machine gets there later).
        time.sleep(random.uniform(0.3, 1.0))
        poll(lambda: len(load.answers), lambda answered: answered > 100)
        first.process.send_signal(stop)
        # uvicorn exits by the signal it got, after a graceful shutdown for SIGTERM.
        assert first.process.wait(timeout=30) == -stop
    if stop == signal.SIGTERM:
        assert "Application shutdown complete" in first.log.read_text()
    acknowledged = load.acknowledged()
    assert len(acknowledged) > 100, "the load did not get going before the stop"

    with serving(data, db_url) as second:
        # A journal file nobody writes any more is deleted once loaded to its end; the new
        # server has had no hit, so it has no file of its own.
        files = poll(lambda: sorted(data.glob("journal/*.hits")), lambda found: not found)
        health = poll(second.health, lambda answer: answer.json()["journal"]["backlog_hits"] == 0)
        got = stored(engine, email.id)
    assert (files, health.json()["journal"]["backlog_hits"]) == ([], 0)
    missing = acknowledged - set(got.agents)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged hits were lost"
    assert got.doubled() == []
    # The hits in flight at the stop may be kept or not: they were never answered.
    assert len(set(got.agents) - acknowledged) <= CLIENTS
    assert got.opens == len(got.agents)
