"""The single writer: hits queue up, a thread commits them in batches (group commit), and each
request is answered only after its batch is committed, so an acknowledged hit is never lost."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import queue
import threading
from dataclasses import dataclass, replace

from sqlalchemy import Engine, exc

from tracking.classify import Hit, Rules
from tracking.record import EmailCache, HitResult, PendingHit, write_hits
from tracking.settings import TrackingSettings

log = logging.getLogger(__name__)

# A hit is answered within this even while another process holds the database's write lock;
# it is still recorded once the lock is free.
ANSWER_WITHIN_SECONDS = 1.0
# What a browser or proxy may send is longer than anything worth storing.
MAX_USER_AGENT = 1000
# The database itself failed, not the hits: splitting the batch would only fail again.
_DATABASE_FAILED = (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)


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

    def __init__(
        self,
        engine: Engine,
        settings: TrackingSettings,
        rules: Rules,
        answer_within: float = ANSWER_WITHIN_SECONDS,
    ) -> None:
        self._engine = engine
        self._answer_within = answer_within
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
        hit = clean_hit(hit, anonymize=self._settings.anonymize_ip)
        future: asyncio.Future[HitResult] = self._loop.create_future()
        if not self._gathering:
            self._loop.call_soon(self._hand_over)  # after the requests ready in this turn
        self._gathering.append(_Job(PendingHit(email_id, hit), future))
        try:
            # On timeout the future is cancelled but the job stays queued (see _settle).
            return await asyncio.wait_for(future, self._answer_within)
        except TimeoutError:
            raise RecorderUnavailable("the database is busy") from None

    def known_click(self, email_id: int, link_idx: int | None) -> HitResult | None:
        """A click's answer from what the writer already knows of the email (None: nothing),
        for when the database cannot be asked."""
        return self._emails.known_click(email_id, link_idx)

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
        except Exception as error:
            if len(batch) > 1 and not isinstance(error, _DATABASE_FAILED):
                # One hit the database refuses must not fail the others: halve the batch
                # until that hit is alone.
                half = len(batch) // 2
                self._commit(batch[:half])
                self._commit(batch[half:])
                return
            # The database is down or broken: fail these hits, keep going.
            log.exception("could not record %d tracking hits", len(batch))
            outcome = RecorderUnavailable(str(error))
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


def clean_hit(hit: Hit, *, anonymize: bool) -> Hit:
    """The hit as it may be stored: its address a valid IP (or empty), anonymized if asked, and
    its user agent cut to a sane length. Both come from the request, or a proxy's header."""
    ip = anonymize_ip(hit.ip) if anonymize else valid_ip(hit.ip)
    return replace(hit, ip=ip, user_agent=hit.user_agent[:MAX_USER_AGENT])


def valid_ip(ip: str) -> str:
    """The address in its canonical form, or "" for anything else (a hostname, a port, junk)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(int(address))  # a zone is local to the proxy
    return str(address)


def anonymize_ip(ip: str) -> str:
    """IPv4 without its last octet, IPv6 without its last 80 bits."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
