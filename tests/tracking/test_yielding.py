"""The loader leaves the machine to its web process while that is busy answering a burst, and
loads the hits once it is not (or YIELD_SECONDS after its last batch at the latest)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from store.clock import utcnow
from store.schema import events
from tests.helpers import journal_hits, sent_email
from tracking.classify import Hit, Rules
from tracking.cpu import ProcessCpu
from tracking.loader import YIELD_SECONDS, HitLoader, keep_loading, yields

_BUSY = "while True: pass"
_IDLE = "import time; time.sleep(60)"


@contextmanager
def _process(code: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(0.2)  # started, and at it
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize(("code", "low", "high"), [(_BUSY, 0.6, 1.05), (_IDLE, 0.0, 0.1)])
def test_a_process_cpu_is_the_share_of_one_cpu_it_wanted(
    code: str, low: float, high: float
) -> None:
    with _process(code) as process:
        cpu = ProcessCpu(process.pid)
        cpu.mark()
        time.sleep(0.5)
        assert low <= cpu.since_mark() <= high


def test_a_process_that_is_gone_looks_idle() -> None:
    with _process(_IDLE) as process:
        cpu = ProcessCpu(process.pid)
        cpu.mark()
    assert cpu.since_mark() == 0.0


@pytest.mark.parametrize(
    ("server_cpu", "since_last_batch", "waits"),
    [
        (0.95, 1.0, True),  # a burst: the hits wait in the journal
        (0.3, 1.0, False),  # normal load: loaded at once
        (0.95, YIELD_SECONDS, False),  # a long burst: loaded all the same, at most this late
    ],
)
def test_the_loader_waits_only_while_its_server_is_busy_and_not_for_long(
    server_cpu: float, since_last_batch: float, waits: bool
) -> None:
    assert yields(server_cpu, since_last_batch) is waits


def test_hits_wait_while_the_server_is_busy_and_are_loaded_when_it_is_not(
    engine: Engine, tmp_path: Path
) -> None:
    email_id = sent_email(engine, "burst")
    hit = Hit("open", utcnow(), None, "GET", "Thunderbird", "198.51.100.1", None)
    stop = threading.Event()
    with _process(_BUSY) as server:
        loader = HitLoader(engine, tmp_path, Rules())
        watcher = threading.Thread(
            target=keep_loading,
            args=(loader, stop.wait, lambda report: None, ProcessCpu(server.pid)),
        )
        watcher.start()
        try:
            time.sleep(0.3)  # its first pass found nothing; it now watches the busy server
            journal_hits(tmp_path, [(email_id, hit)] * 5)
            time.sleep(1.0)
            assert _stored(engine) == 0, "the loader loaded while its server was busy"
            server.kill()
            server.wait()
            deadline = time.monotonic() + 2
            while _stored(engine) < 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _stored(engine) == 5
        finally:
            stop.set()
            watcher.join(timeout=10)


def _stored(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(events)) or 0
