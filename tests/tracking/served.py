"""`mailbeacon serve` as a process of its own under load, for the fault tests
(test_durability.py, test_journal_faults.py): the served process, the load, and what it stored."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, select

from mailbeacon.serve import free_port
from outreach.emails import Draft, create_email, mark_sent
from store.clock import utcnow
from store.schema import engagements, events
from tests.conftest import settings_for
from tracking.instrument import TrackingFlags
from tracking.tokens import TokenSigner

TRACKED = TrackingFlags(opens=True, clicks=True)

T = TypeVar("T")


def poll(probe: Callable[[], T], until: Callable[[T], bool], seconds: float = 30) -> T:
    """Probe until `until` likes the answer or `seconds` have passed; the last answer, for the
    test to assert on."""
    deadline = time.monotonic() + seconds
    while True:
        answer = probe()
        if until(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@dataclass(frozen=True)
class SentEmail:
    id: int
    pixel: str  # the path of its open pixel


def send_email(engine: Engine, data: Path) -> SentEmail:
    """A tracked email, sent, with the signing key of a server on the `data` folder."""
    settings, _ = settings_for(data)
    signer = TokenSigner(settings.tracking.signing_keys)
    with engine.begin() as connection:
        draft = Draft("load", ["a@customer.example"], "Hi", "<p>hi</p>", "hi", TRACKED)
        email_id, _ = create_email(connection, draft, signer, settings.tracking)
        mark_sent(connection, email_id, message_id="<load@test>", sent_at=utcnow())
    return SentEmail(email_id, f"/t/o/{signer.open_token(email_id)}.gif")


@dataclass(frozen=True)
class Stored:
    agents: list[str]  # the user agent of each event stored for the email
    opens: int  # its opens (machines' too), as its engagement row counts them

    def doubled(self) -> list[str]:
        return [agent for agent, times in Counter(self.agents).items() if times > 1]


def stored(engine: Engine, email_id: int) -> Stored:
    with engine.connect() as connection:
        agents = connection.scalars(
            select(events.c.user_agent).where(events.c.email_id == email_id)
        )
        opens = connection.scalar(
            select(engagements.c.opens_raw).where(engagements.c.email_id == email_id)
        )
        return Stored(list(agents), opens or 0)


@dataclass(frozen=True)
class Served:
    process: subprocess.Popen[bytes]
    base: str
    log: Path  # its standard error

    def health(self) -> httpx.Response:
        return httpx.get(f"{self.base}/healthz", timeout=5)

    def up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the server exited:\n{self.log.read_text()}")
        try:
            return self.health().status_code == 200
        except httpx.TransportError:
            return False


@contextlib.contextmanager
def serving(data: Path, database_url: str) -> Iterator[Served]:
    """`mailbeacon serve` on the data folder, a process of its own, until the block ends; then
    it is stopped, and neither it nor a process it started (its loader) may be left running."""
    port = free_port()
    _, environ = settings_for(data, DATABASE__URL=database_url, SERVER__PORT=str(port))
    log = data / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailbeacon.cli", "serve"],
            env={**os.environ, **environ},
            cwd=data,  # no config.yaml there: the settings are the environment's alone
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    served = Served(process, f"http://127.0.0.1:{port}", log)
    try:
        assert poll(served.up, bool), f"the server did not come up:\n{log.read_text()}"
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        left = poll(lambda: _processes_of(data), lambda found: not found, seconds=15)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the server were left running: {left}"


def _processes_of(data: Path) -> list[int]:
    """The processes started for the data folder (a server, its loader), by their environment."""
    ours = f"MAILBEACON__DATA_DIR={data}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):  # not ours to read, or gone meanwhile
            if ours in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found


@dataclass(frozen=True)
class Answer:
    agent: str
    sent: float  # time.monotonic() when asked
    took: float  # seconds until the whole answer was in
    status: int


class Load:
    """Pixel hits from `clients` at once, each on a keep-alive connection of its own, each hit
    with a user agent no other hit has, and at most `per_second` hits a second per client (None:
    as fast as they are answered), until the block ends or a client's connection breaks.

    Raw asyncio sockets in a thread of their own: a light client that never retries, so the
    times measured are the server's."""

    def __init__(self, url: str, clients: int, per_second: float | None = None) -> None:
        parts = urlsplit(url)
        self._address = (parts.hostname or "", parts.port or 80)
        self._request = (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUser-Agent: %s\r\n\r\n"
        )
        self._clients = clients
        self._pause = 1 / per_second if per_second else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load")
        self.answers: list[Answer] = []
        self.broken: list[str] = []  # why a client's connection broke, if one did

    def acknowledged(self) -> set[str]:
        return {answer.agent for answer in self.answers if answer.status == 200}

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()  # each client stops once its hit in flight is answered
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the load did not stop"

    async def _run(self) -> None:
        await asyncio.gather(*(self._client(number) for number in range(self._clients)))

    async def _client(self, number: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(*self._address)
        except OSError as error:
            self.broken.append(f"client {number}: {error!r}")
            return
        try:
            for count in itertools.count():
                if self._stop.is_set():
                    return
                agent = f"load-{number}-{count}"
                sent = time.monotonic()
                writer.write((self._request % agent).encode())
                status = await asyncio.wait_for(_answer(reader), timeout=10)
                self.answers.append(Answer(agent, sent, time.monotonic() - sent, status))
                await asyncio.sleep(sent + self._pause - time.monotonic())
        except (OSError, EOFError, TimeoutError) as error:  # IncompleteReadError is an EOFError
            self.broken.append(f"client {number}: {error!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _answer(reader: asyncio.StreamReader) -> int:
    """The status of an HTTP/1.1 answer, once it is read to its end."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
    await reader.readexactly(int(length[1]) if length else 0)
    return int(head.split(b" ", 2)[1])
