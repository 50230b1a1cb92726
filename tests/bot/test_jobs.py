"""Durable jobs on both databases: claimed by one holder at a time, taken over when their
holder dies, waiting when asked to, and failing with a sentence rather than a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update

from bot.context import CommandFailed, Context
from bot.jobs import Progress, RunLater, claim, enqueue, get_job, job, run_due
from store.clock import utcnow
from store.schema import jobs

RAN: list[dict[str, Any]] = []


@job("test-echo", describe=lambda arguments: f"echo {arguments['say']}")
def echo(arguments: dict[str, Any], context: Context, progress: Progress) -> dict[str, Any]:
    progress(1, 1)
    RAN.append(arguments)
    if arguments["say"] == "later":
        raise RunLater(timedelta(minutes=5), "paused: try again later")
    if arguments["say"] == "refuse":
        raise CommandFailed("the mailbox is not connected: run `mailbeacon connect gmail`")
    if arguments["say"] == "crash":
        raise KeyError("a bug")
    return {"text": f"said {arguments['say']}"}


def no_context(user_id: int | None) -> Context:
    return None  # type: ignore[return-value]  # echo needs none


def new_job(engine: Engine, say: str) -> int:
    with engine.begin() as connection:
        return enqueue(connection, "test-echo", {"say": say}, owner_user_id=None)


def row(engine: Engine, job_id: int) -> Any:
    with engine.connect() as connection:
        return get_job(connection, job_id)


def test_a_job_runs_once_and_keeps_its_result(engine: Engine) -> None:
    job_id = new_job(engine, "hello")
    assert run_due(engine, "worker-a", no_context) == 1
    done = row(engine, job_id)
    assert (done.status, done.result, done.progress_done, done.attempts) == (
        "done",
        {"text": "said hello"},
        1,
        1,
    )
    assert run_due(engine, "worker-a", no_context) == 0  # nothing is run twice


def test_two_claimers_at_once_get_the_job_once(engine: Engine) -> None:
    job_id = new_job(engine, "race")
    claimed: list[Any] = []
    start = threading.Barrier(4)

    def take(owner: str) -> None:
        start.wait()
        claimed.append(claim(engine, owner, utcnow()))

    threads = [threading.Thread(target=take, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [c.id for c in claimed if c is not None] == [job_id]
    # While its holder lives and beats, nobody else takes it.
    assert claim(engine, "late", utcnow()) is None


def test_a_job_whose_heartbeat_went_stale_is_taken_over(engine: Engine) -> None:
    job_id = new_job(engine, "again")
    with engine.begin() as connection:  # held by a worker on another machine
        connection.execute(
            update(jobs).values(
                status="running", claimed_by="elsewhere:1:x", heartbeat_at=utcnow(), attempts=1
            )
        )
    assert claim(engine, "here", utcnow()) is None
    assert claim(engine, "here", utcnow() + timedelta(seconds=61)).id == job_id
    assert row(engine, job_id).attempts == 2


def test_a_job_whose_process_keeps_dying_fails(engine: Engine) -> None:
    job_id = new_job(engine, "doomed")
    with engine.begin() as connection:
        connection.execute(
            update(jobs).values(status="running", claimed_by="elsewhere:1:x", attempts=5)
        )
    assert claim(engine, "here", utcnow()) is None
    assert row(engine, job_id).error == "its worker kept dying while running it"


def test_a_job_that_must_wait_is_run_again_later(engine: Engine) -> None:
    job_id = new_job(engine, "later")
    run_due(engine, "w", no_context)
    waiting = row(engine, job_id)
    assert (waiting.status, waiting.progress_note) == ("queued", "paused: try again later")
    assert run_due(engine, "w", no_context) == 0
    assert run_due(engine, "w", no_context, lambda: utcnow() + timedelta(minutes=6)) == 1


def test_failures_are_one_sentence(engine: Engine) -> None:
    refused, crashed = new_job(engine, "refuse"), new_job(engine, "crash")
    run_due(engine, "w", no_context)
    assert row(engine, refused).error == (
        "the mailbox is not connected: run `mailbeacon connect gmail`"
    )
    assert row(engine, crashed).error == (
        "it failed unexpectedly (KeyError); the server log has the details"
    )
    assert {row(engine, refused).status, row(engine, crashed).status} == {"failed"}


HOLDER = """
import sys, time
from bot.jobs import claim, job
from store.clock import utcnow
from store.engine import DatabaseSettings, make_engine
from store.leases import holder_name
engine = make_engine(DatabaseSettings(url=sys.argv[1]))
row = claim(engine, holder_name(), utcnow())
print(row.id, flush=True)
time.sleep(600)  # the job is running here when this process is killed
"""


def test_a_job_left_running_by_a_killed_process_is_taken_over_at_once(
    engine: Engine, db_url: str
) -> None:
    job_id = new_job(engine, "survivor")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert holder.stdout is not None
    assert int(holder.stdout.readline()) == job_id
    assert row(engine, job_id).status == "running"
    assert claim(engine, "here", utcnow()) is None  # its holder is alive
    holder.kill()
    holder.wait()
    holder.stdout.close()
    started = time.monotonic()
    assert run_due(engine, "here", no_context) == 1  # no waiting for a stale heartbeat
    assert time.monotonic() - started < 5
    done = row(engine, job_id)
    assert (done.status, done.attempts, done.result) == ("done", 2, {"text": "said survivor"})
