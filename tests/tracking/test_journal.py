"""The journal's writing side: hits keep being answered, and none answered is lost, when its
syncer process dies; a disk that refuses writes is said clearly, and hits are kept again once
it has room."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import Engine

from store.clock import utcnow
from tests.tracking.served import Load, poll, send_email, serving, stored
from tracking.classify import Hit
from tracking.journal import Journal, decode, journal_files

_WRITERS = 16


def _hit(agent: str) -> Hit:
    return Hit("open", utcnow(), None, "GET", agent, "198.51.100.1", None)


def test_a_killed_syncer_is_replaced_and_no_answered_hit_is_lost(tmp_path: Path) -> None:
    async def play() -> tuple[set[str], int]:
        journal = Journal(tmp_path)
        journal.start()
        answered: set[str] = set()
        stop = asyncio.Event()

        async def writer(number: int) -> None:
            count = 0
            while not stop.is_set():
                agent = f"w{number}-{count}"
                await journal.append(1, _hit(agent))
                answered.add(agent)
                count += 1

        writers = [asyncio.create_task(writer(n)) for n in range(_WRITERS)]
        while len(answered) < 200:
            await asyncio.sleep(0.01)
        (syncer,) = _syncers()
        os.kill(syncer, signal.SIGKILL)
        before = len(answered)
        # A new syncer takes over, and the writers go on being answered.
        deadline = time.monotonic() + 10
        while len(answered) < before + 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        replaced = _syncers()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=10)
        await journal.stop()
        assert len(answered) >= before + 200, "hits were no longer answered"
        assert replaced and syncer not in replaced
        return answered, journal.hits

    answered, counted = asyncio.run(play())
    kept = [
        decode(line).hit.user_agent
        for path in journal_files(tmp_path)
        for line in path.read_bytes().splitlines()
    ]
    assert answered <= set(kept)
    assert len(kept) == len(set(kept)) == counted
    assert _syncers() == []


def test_a_served_hit_is_answered_and_loaded_once_when_the_syncer_is_killed_under_load(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    email = send_email(engine, data)
    with serving(data, db_url) as served:
        with Load(served.base + email.pixel, clients=8) as load:
            poll(lambda: len(load.answers), lambda answered: answered > 100)
            (syncer,) = _syncers(served.process.pid)
            os.kill(syncer, signal.SIGKILL)
            killed_at = len(load.answers)
            answered = poll(lambda: len(load.answers), lambda n: n > killed_at + 100, 10)
        assert answered > killed_at + 100, "hits were no longer answered"
        assert load.broken == []
        replaced = _syncers(served.process.pid)
        assert replaced and syncer not in replaced
        acknowledged = load.acknowledged()
        got = poll(
            lambda: stored(engine, email.id), lambda found: acknowledged <= set(found.agents)
        )
    assert acknowledged <= set(got.agents)
    assert got.doubled() == []


def test_a_disk_that_refuses_writes_is_reported_and_hits_are_kept_again_once_it_has_room(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    email = send_email(engine, data)
    with serving(data, db_url) as served, httpx.Client(base_url=served.base) as client:
        assert client.get(email.pixel, headers={"user-agent": "before"}).status_code == 200
        # The server may write no file past 100 bytes: no journal record fits any more.
        limit = resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE, (100, limit[1]))
        full = client.get(email.pixel, headers={"user-agent": "disk full"})
        health = served.health()
        # The reader still gets the picture; the health check says hits are not kept, and why.
        assert (full.status_code, full.headers["content-type"]) == (200, "image/gif")
        assert health.status_code == 503
        assert health.json()["error"] == "hits cannot be journaled: [Errno 27] File too large"

        resource.prlimit(served.process.pid, resource.RLIMIT_FSIZE, limit)
        assert client.get(email.pixel, headers={"user-agent": "after"}).status_code == 200
        assert served.health().status_code == 200
        got = poll(lambda: stored(engine, email.id), lambda found: "after" in found.agents)
    assert sorted(got.agents) == ["after", "before"]


def _syncers(parent: int | None = None) -> list[int]:
    """The syncer processes of `parent` (this process by default)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
            command = (status.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if int(fields["PPid"]) == (parent or os.getpid()) and b"tracking.syncer" in command:
            found.append(int(status.parent.name))
    return found
