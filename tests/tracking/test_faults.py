"""The tracking server under faults, on SQLite and PostgreSQL: a database locked by another
process, malformed hits, and clients that send too much or too slowly."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, func, make_url, select, text

from mailbeacon import serve
from store.clock import utcnow
from store.schema import events
from tests.tracking.conftest import PERSON, ServerFactory, TrackingServer
from tests.tracking.test_recorder import SETTINGS, _send
from tracking.classify import Hit, Rules
from tracking.record import HitResult
from tracking.recorder import Recorder, RecorderUnavailable
from tracking.routes import PIXEL


@contextlib.contextmanager
def write_lock_held(engine: Engine) -> Iterator[None]:
    """Another process holds the write lock: SQLite's for the whole file, PostgreSQL's on the
    engagement rows the recorder locks before it writes."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        other = sqlite3.connect(str(url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    with engine.connect() as locker:
        locker.execute(text("LOCK TABLE engagements IN EXCLUSIVE MODE"))
        yield
        locker.rollback()


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_a_locked_database_answers_within_a_second(server: TrackingServer) -> None:
    known, unknown = server.send(), server.send(["jonas@customer.example"])
    assert server.get(known.click_urls[1]).status_code == 302  # its links are now known
    with write_lock_held(server.engine):
        took, pixel = _timed(lambda: server.get(known.open_url))
        assert (pixel.status_code, pixel.content) == (200, PIXEL) and took < 1.8
        took, click = _timed(lambda: server.get(known.click_urls[2]))
        assert click.status_code == 302 and took < 1.8
        assert click.headers["location"] == known.destinations[2]
        took, retry = _timed(lambda: server.get(unknown.click_urls[1]))
        assert (retry.status_code, retry.headers["retry-after"]) == (503, "5") and took < 1.8
        took, health = _timed(lambda: server.client.get(f"{server.base}/healthz"))
        assert took < 2.0
        # Once reads stop taking SQLite's write lock, the check gets through.
        assert health.status_code == 200 or health.json()["database"] == "busy"
    # The hits waited in the queue, and are recorded once the lock is free.
    deadline = time.monotonic() + 30
    while len(server.events(known.id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [e.kind for e in server.events(known.id)] == ["click", "open", "click"]


def test_a_malformed_client_address_or_agent_is_cleaned(server: TrackingServer) -> None:
    email = server.send()
    # Through the trusted proxy: anything it says is the client's address.
    assert server.get(email.open_url, ip="a" * 200).status_code == 200
    assert server.get(email.open_url, agent=PERSON + "x" * 20_000).status_code == 200
    assert server.get(email.click_urls[1], ip="2001:db8::1%" + "e" * 60).status_code == 302
    got = [(e.ip, len(e.user_agent)) for e in server.events(email.id)]
    assert got == [("", len(PERSON)), ("198.51.100.1", 1000), ("2001:db8::1", len(PERSON))]


def test_one_bad_hit_never_fails_its_batch(engine: Engine) -> None:
    first, second = _send(engine, "good-1"), _send(engine, "good-2")
    unstorable = Hit("open", utcnow(), link_idx=2**70, user_agent=PERSON)  # no column holds it
    hits = [
        (email_id, Hit("open", utcnow() - timedelta(seconds=i), user_agent=PERSON, ip=ip))
        for i in range(150)
        for email_id, ip in ((first, "198.51.100.7"), (second, "x" * 100))
    ]
    hits.insert(77, (first, unstorable))

    async def play() -> list[HitResult | BaseException]:
        recorder = Recorder(engine, SETTINGS, Rules(), answer_within=30)
        recorder.start()
        outcomes = await asyncio.gather(
            *(recorder.record(email_id, hit) for email_id, hit in hits), return_exceptions=True
        )
        await recorder.stop()
        return outcomes

    outcomes = asyncio.run(play())
    failed = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, BaseException)]
    assert failed == [77] and isinstance(outcomes[77], RecorderUnavailable)
    with engine.connect() as connection:
        query = select(events.c.email_id, func.count()).group_by(events.c.email_id)
        counts = {email_id: count for email_id, count in connection.execute(query)}
    assert counts == {first: 150, second: 150}


def _connect(server: TrackingServer) -> socket.socket:
    url = make_url(f"x://{server.base.removeprefix('http://')}")
    return socket.create_connection((str(url.host), int(url.port or 80)), timeout=10)


def test_a_20_mib_request_head_is_cut_and_others_are_served(server: TrackingServer) -> None:
    with _connect(server) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(OSError):  # the server hangs up on us half-way
            for _ in range(20 * 1024):
                sent += client.send(b"a" * 1024)
        answer = b""
        with contextlib.suppress(OSError):
            answer = client.recv(100)
    assert sent < 20 * 1024 * 1024 or answer.startswith(b"HTTP/1.1 4")
    assert server.client.get(f"{server.base}/healthz").status_code == 200


def test_a_client_that_never_finishes_its_request_is_cut(
    tracking_server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve, "REQUEST_HEAD_SECONDS", 0.5)
    server = tracking_server_factory()
    with _connect(server) as idle, _connect(server) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        for _ in range(10):  # a header line now and then keeps no one waiting forever
            with contextlib.suppress(OSError):
                slow.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.2)
        assert slow.recv(100) == b""
        assert idle.recv(100) == b""
        assert time.monotonic() - started < 5
    # A request that completes in time is answered as usual.
    assert server.client.get(f"{server.base}/healthz").status_code == 200
