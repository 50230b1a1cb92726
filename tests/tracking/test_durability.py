"""An acknowledged hit is never lost: SIGKILL the server under load, then count."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select

from mailbeacon.serve import free_port
from outreach.emails import Draft, create_email, mark_sent
from store.clock import utcnow
from store.schema import events
from tests.conftest import settings_for
from tracking.instrument import TrackingFlags
from tracking.tokens import TokenSigner


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_every_acknowledged_hit_survives_the_server_being_stopped(
    db_url: str, engine: Engine, tmp_path: Path, stop: signal.Signals
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    settings, environ = settings_for(tmp_path, DATABASE__URL=db_url, SERVER__PORT=str(port))
    with engine.begin() as connection:
        draft = Draft(
            "durability", ["a@customer.example"], "Hi", "<p>hi</p>", "hi", TrackingFlags(True, True)
        )
        email_id, _ = create_email(
            connection, draft, TokenSigner(settings.tracking.signing_keys), settings.tracking
        )
        mark_sent(connection, email_id, message_id="<d@test>", sent_at=utcnow())
    token = TokenSigner(settings.tracking.signing_keys).open_token(email_id)
    pixel = f"http://127.0.0.1:{port}/t/o/{token}.gif"

    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "mailbeacon.cli", "serve"],
            env={**os.environ, **environ},
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/healthz")
        acknowledged = asyncio.run(
            _load_until_stopped(pixel, server, stop, after=random.uniform(0.5, 1.5))
        )
        # uvicorn exits by the signal it got, after a graceful shutdown for SIGTERM.
        assert server.wait(timeout=30) == -stop
        if stop == signal.SIGTERM:
            assert "Application shutdown complete" in log.read_text()
    finally:
        server.kill()
        server.wait()

    assert len(acknowledged) > 100, "the load did not get going before the kill"
    with engine.connect() as connection:
        stored = set(
            connection.scalars(select(events.c.user_agent).where(events.c.email_id == email_id))
        )
    assert acknowledged <= stored


def _wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server did not come up")


async def _load_until_stopped(
    url: str, server: subprocess.Popen[bytes], stop: signal.Signals, after: float
) -> set[str]:
    acknowledged: set[str] = set()
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            agent = f"load-{next(counter)}"
            try:
                response = await client.get(url, headers={"User-Agent": agent})
            except httpx.TransportError:
                return
            if response.status_code == 200:
                acknowledged.add(agent)

    async def killer() -> None:
        # Stop it mid-load: after a random moment, once it has answered a good many hits (a
        # busy machine gets there later), and in any case within 30 s.
        await asyncio.sleep(after)
        deadline = time.monotonic() + 30
        while len(acknowledged) <= 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        server.send_signal(stop)

    async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=32)) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(32)))
    return acknowledged
