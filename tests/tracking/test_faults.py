"""The tracking server under faults, on SQLite and PostgreSQL: a database locked by another
process, malformed hits, and clients that send too much or too slowly."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine, make_url, text

from mailbeacon import serve
from tests.tracking.conftest import PERSON, ServerFactory, TrackingServer
from tracking.routes import PIXEL


@contextlib.contextmanager
def database_locked(engine: Engine) -> Iterator[None]:
    """Another process holds the database's locks: SQLite's write lock (readers still read, as
    WAL lets them), PostgreSQL's on the links and events tables (no one may even read them)."""
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
        locker.execute(text("LOCK TABLE links, events IN ACCESS EXCLUSIVE MODE"))
        yield
        locker.rollback()


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_a_locked_database_answers_at_once_and_loses_no_hit(server: TrackingServer) -> None:
    known, unknown = server.send(), server.send(["jonas@customer.example"])
    assert server.get(known.click_urls[1]).status_code == 302  # its links are now known
    with database_locked(server.engine):
        took, pixel = _timed(lambda: server.get(known.open_url))
        assert (pixel.status_code, pixel.content) == (200, PIXEL) and took < 0.5
        took, click = _timed(lambda: server.get(known.click_urls[2]))
        assert click.status_code == 302 and took < 0.5
        assert click.headers["location"] == known.destinations[2]
        took, first = _timed(lambda: server.get(unknown.click_urls[1]))
        assert took < 1.8
        if server.engine.dialect.name == "sqlite":  # its links can still be read
            assert first.headers["location"] == unknown.destinations[1]
        else:  # not known here, and the database cannot say: try again in a moment
            assert (first.status_code, first.headers["retry-after"]) == (503, "5")
        took, health = _timed(lambda: server.client.get(f"{server.base}/healthz"))
        # Green: the hits wait in the journal, which it shows.
        assert health.status_code == 200 and took < 2.0
        assert health.json()["journal"]["backlog_hits"] == 4
    # Every hit is loaded once the database is free, the one asked to retry too.
    assert [e.kind for e in server.events(known.id)] == ["click", "open", "click"]
    assert [e.kind for e in server.events(unknown.id)] == ["click"]


def test_a_malformed_client_address_or_agent_is_cleaned(server: TrackingServer) -> None:
    email = server.send()
    # Through the trusted proxy: anything it says is the client's address.
    assert server.get(email.open_url, ip="a" * 200).status_code == 200
    assert server.get(email.open_url, agent=PERSON + "x" * 20_000).status_code == 200
    assert server.get(email.click_urls[1], ip="2001:db8::1%" + "e" * 60).status_code == 302
    got = [(e.ip, len(e.user_agent)) for e in server.events(email.id)]
    assert got == [("", len(PERSON)), ("198.51.100.1", 1000), ("2001:db8::1", len(PERSON))]


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
