"""The single writer: hits queue up, a thread commits them in batches (group commit), and each
request is answered only after its batch is committed, so an acknowledged hit is never lost."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import queue
import threading
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from tracking.classify import Hit, Rules
from tracking.record import EmailCache, HitResult, PendingHit, write_hits
from tracking.settings import TrackingSettings

log = logging.getLogger(__name__)


class RecorderUnavailable(Exception):
    """The hit could not be committed (database down, or the recorder is stopped)."""


@dataclass
class _Job:
    item: PendingHit
    future: asyncio.Future[HitResult]


_STOP: list[_Job] = []


class Recorder:
    """Hits that arrive in the same turn of the event loop travel to the writer thread as one
    batch; while the writer commits, the next batch gathers. A batch is one transaction of at
    most `batch_max_rows` hits."""

    def __init__(self, engine: Engine, settings: TrackingSettings, rules: Rules) -> None:
        self._engine = engine
        self._settings = settings
        self._rules = rules
        self._emails = EmailCache()
        self._queue: queue.SimpleQueue[list[_Job]] = queue.SimpleQueue()
        self._gathering: list[_Job] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        self.rows = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="mailbeacon-recorder", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Commit everything queued, then stop the writer."""
        thread, self._thread = self._thread, None  # from now on, record() refuses
        if thread is None:
            return
        self._hand_over()
        self._queue.put(_STOP)
        await asyncio.to_thread(thread.join)

    async def record(self, email_id: int, hit: Hit) -> HitResult:
        if self._thread is None or self._loop is None:
            raise RecorderUnavailable("the recorder is not running")
        if self._settings.anonymize_ip:
            hit = replace(hit, ip=anonymize_ip(hit.ip))
        future: asyncio.Future[HitResult] = self._loop.create_future()
        if not self._gathering:
            self._loop.call_soon(self._hand_over)  # after the requests ready in this turn
        self._gathering.append(_Job(PendingHit(email_id, hit), future))
        return await future

    def _hand_over(self) -> None:
        if self._gathering:
            self._queue.put(self._gathering)
            self._gathering = []

    def _run(self) -> None:
        limit = self._settings.batch_max_rows
        while (batch := self._queue.get()) is not _STOP:
            # Take what else is waiting, up to the limit: the queue fills while we commit.
            while len(batch) < limit:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)
                    break
                batch = batch + more
            for start in range(0, len(batch), limit):
                self._commit(batch[start : start + limit])

    def _commit(self, batch: list[_Job]) -> None:
        outcome: list[HitResult] | BaseException
        try:
            with self._engine.begin() as connection:
                outcome = write_hits(
                    connection,
                    [job.item for job in batch],
                    self._rules,
                    self._emails,
                    tracking_enabled=self._settings.enabled,
                )
            self.batches += 1
            self.rows += len(batch)
        except Exception as exc:  # the database is down or broken: fail these hits, keep going
            log.exception("could not record %d tracking hits", len(batch))
            outcome = RecorderUnavailable(str(exc))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, batch, outcome)


def _settle(batch: list[_Job], outcome: list[HitResult] | BaseException) -> None:
    for i, job in enumerate(batch):
        if job.future.done():  # the client went away; the hit is recorded all the same
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome[i])


def anonymize_ip(ip: str) -> str:
    """IPv4 without its last octet, IPv6 without its last 80 bits."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
