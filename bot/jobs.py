"""Durable jobs: the slow work a command starts (a send-out, a digest sent now), written in the
same transaction as the data it acts on and run by the active worker. A kind of job is one
function (`@job("send")`), like a command. A job that was running when its process died is
claimed again (its holder is gone, or its heartbeat went stale), so every kind is written to be
safe to repeat."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, and_, or_, select, update

from bot.context import CommandFailed, Context
from store.clock import Clock, utcnow
from store.leases import holder_gone
from store.schema import jobs

log = logging.getLogger(__name__)

STALE = timedelta(seconds=60)  # a running job whose heartbeat is older was abandoned
MAX_RECOVERIES = 5  # a job whose process keeps dying is failed, not retried forever


class RunLater(Exception):
    """The job cannot go on now (a daily sending limit): it waits and is run again."""

    def __init__(self, delay: timedelta, note: str) -> None:
        super().__init__(note)
        self.delay = delay
        self.note = note


class Progress:
    """What a running job tells whoever waits for it; each report is also its heartbeat."""

    def __init__(
        self,
        engine: Engine,
        job_id: int,
        owner: str,
        clock: Clock,
        stopping: threading.Event | None = None,
        watcher: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self.engine = engine
        self.job_id = job_id
        self.owner = owner  # the job's holder: leases taken for it use this name
        self._clock = clock
        self._stopping = stopping
        self._watcher = watcher

    def __call__(self, done: int, total: int | None = None, note: str | None = None) -> None:
        """Report how far the job got; at a shutdown, stop it here (it is queued again and
        resumes where it stopped)."""
        if self._stopping is not None and self._stopping.is_set():
            raise RunLater(timedelta(0), "stopped by a shutdown; it goes on at the next start")
        values: dict[str, Any] = {"progress_done": done, "heartbeat_at": self._clock()}
        if total is not None:
            values["progress_total"] = total
        values["progress_note"] = note
        with self.engine.begin() as connection:
            connection.execute(update(jobs).where(jobs.c.id == self.job_id).values(values))
        if self._watcher is not None:
            try:
                self._watcher(done, total)
            except Exception:  # telling is best effort; the job goes on
                log.exception("job %s: could not tell its progress", self.job_id)


class Watcher(Protocol):
    """Who tells the user about a job that has a `reply_to` (Slack: bot.slack_reports)."""

    def progress(self, row: Any, done: int, total: int | None) -> None: ...

    def ended(self, row: Any) -> None: ...


Run = Callable[[dict[str, Any], Context, Progress], dict[str, Any]]
R = TypeVar("R", bound=Run)


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Run  # returns the result: {"text": what to tell the user, ...data}
    describe: Callable[[dict[str, Any]], str]  # what the job does, in a few words


_KINDS: dict[str, JobKind] = {}


def job(name: str, *, describe: Callable[[dict[str, Any]], str]) -> Callable[[R], R]:
    def register(run: R) -> R:
        if name in _KINDS:
            raise ValueError(f"the job kind {name!r} is registered twice")
        _KINDS[name] = JobKind(name, run, describe)
        return run

    return register


def describe(row: Any) -> str:
    kind = _KINDS.get(row.kind)
    return kind.describe(row.arguments) if kind else row.kind


def enqueue(
    connection: Connection,
    kind: str,
    arguments: dict[str, Any],
    *,
    owner_user_id: int | None,
    total: int | None = None,
    reply_to: dict[str, Any] | None = None,
) -> int:
    """A new job, in the caller's transaction: it exists exactly when the data it acts on does.
    `reply_to` says where to tell how it ended (the command's Context.reply_to)."""
    if kind not in _KINDS:
        raise ValueError(f"no job kind {kind!r}")
    job_id: int = connection.execute(
        jobs.insert()
        .values(
            kind=kind,
            arguments=arguments,
            owner_user_id=owner_user_id,
            progress_total=total,
            reply_to=reply_to,
        )
        .returning(jobs.c.id)
    ).scalar_one()
    return job_id


def get_job(connection: Connection, job_id: int) -> Any:
    return connection.execute(select(jobs).where(jobs.c.id == job_id)).first()


def claim(engine: Engine, owner: str, now: datetime, *, only: int | None = None) -> Any:
    """Take the next job that is due (or `only` that one), or one abandoned by a dead holder;
    None when there is none. A conditional update: two claimers never both get one."""
    due = and_(jobs.c.status == "queued", or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now))
    abandoned = and_(jobs.c.status == "running", jobs.c.claimed_by != owner)
    query = select(jobs).where(or_(due, abandoned)).order_by(jobs.c.id)
    if only is not None:
        query = query.where(jobs.c.id == only)
    with engine.begin() as connection:
        for row in connection.execute(query.limit(20)).all():
            if row.status == "running" and not _abandoned(row, now):
                continue
            recovering = row.status == "running"
            if recovering and row.attempts >= MAX_RECOVERIES:
                _finish(connection, row.id, now, error="its worker kept dying while running it")
                continue
            taken = connection.execute(
                update(jobs)
                .where(
                    jobs.c.id == row.id,
                    jobs.c.status == row.status,
                    jobs.c.attempts == row.attempts,
                )
                .values(
                    status="running",
                    claimed_by=owner,
                    attempts=row.attempts + 1,
                    heartbeat_at=now,
                    started_at=row.started_at or now,
                    run_after=None,
                )
            ).rowcount
            if taken:
                return get_job(connection, row.id)
    return None


def _abandoned(row: Any, now: datetime) -> bool:
    return bool(
        row.heartbeat_at is None
        or row.heartbeat_at < now - STALE
        or (row.claimed_by and holder_gone(row.claimed_by))
    )


def heartbeat(connection: Connection, owner: str, now: datetime) -> None:
    """The jobs `owner` is running are alive (the worker calls this as it renews its lease)."""
    connection.execute(
        update(jobs)
        .where(jobs.c.claimed_by == owner, jobs.c.status == "running")
        .values(heartbeat_at=now)
    )


def run_claimed(
    engine: Engine,
    row: Any,
    owner: str,
    context_for: Callable[[int | None], Context],
    clock: Clock = utcnow,
    stopping: threading.Event | None = None,
    watcher: Watcher | None = None,
) -> None:
    """Run a job this holder claimed, and record how it ended; a `watcher` hears how far it
    got and how it ended, where the job has a `reply_to` (it tells the user)."""
    kind = _KINDS.get(row.kind)
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        if kind is None:
            raise CommandFailed(f"this server does not know jobs of kind {row.kind!r}")
        told = None
        if watcher is not None and row.reply_to:
            told = lambda done, total: watcher.progress(row, done, total)  # noqa: E731
        progress = Progress(engine, row.id, owner, clock, stopping, told)
        result = kind.run(row.arguments, context_for(row.owner_user_id), progress)
    except RunLater as later:
        with engine.begin() as connection:
            connection.execute(
                update(jobs)
                .where(jobs.c.id == row.id)
                .values(
                    status="queued",
                    claimed_by=None,
                    run_after=clock() + later.delay,
                    progress_note=later.note,
                )
            )
        _tell(engine, row.id, watcher)
        return
    except CommandFailed as exc:
        error = str(exc)
    except Exception as exc:  # a bug: said in the log in full, and to the user in one line
        log.exception("job %s (%s) failed", row.id, row.kind)
        error = f"it failed unexpectedly ({type(exc).__name__}); the server log has the details"
    with engine.begin() as connection:
        _finish(connection, row.id, clock(), result=result, error=error)
    _tell(engine, row.id, watcher)


def _tell(engine: Engine, job_id: int, watcher: Watcher | None) -> None:
    if watcher is None:
        return
    with engine.connect() as connection:
        ended = get_job(connection, job_id)
    if ended.reply_to:
        try:
            watcher.ended(ended)
        except Exception:  # the job is done either way; telling it is best effort
            log.exception("job %s: could not tell how it ended", job_id)


def _finish(
    connection: Connection,
    job_id: int,
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    connection.execute(
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(
            status="failed" if error else "done",
            result=result,
            error=error,
            finished_at=now,
            claimed_by=None,
        )
    )


def run_due(
    engine: Engine,
    owner: str,
    context_for: Callable[[int | None], Context],
    clock: Clock = utcnow,
    *,
    only: int | None = None,
    stopping: threading.Event | None = None,
    watcher: Watcher | None = None,
) -> int:
    """Run due jobs one after another until none is left (or just `only`); how many ran."""
    ran = 0
    while (
        not (stopping and stopping.is_set())
        and (row := claim(engine, owner, clock(), only=only)) is not None
    ):
        run_claimed(engine, row, owner, context_for, clock, stopping, watcher)
        ran += 1
        if only is not None:
            break
    return ran


def list_jobs(connection: Connection, owner_user_id: int, limit: int = 20) -> list[Any]:
    query = (
        select(jobs)
        .where(jobs.c.owner_user_id == owner_user_id)
        .order_by(jobs.c.id.desc())
        .limit(limit)
    )
    return list(connection.execute(query))
