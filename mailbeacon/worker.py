"""The worker (APScheduler 3): the jobs that commands start, reply sync over every mailbox,
alerts and digests, run only by the process that holds the worker lease."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from apscheduler.job import Job as APSchedulerJob
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, select, update

from bot.jobs import Watcher, heartbeat, run_due
from bot.sendout import adopt_orphans
from mailbeacon.channels import alert_channels
from mailbeacon.context import job_contexts
from mailbeacon.settings import Settings
from mailbeacon.slackbot import slack_reports
from notifier.channels import Channel
from notifier.digests import send_due_digests
from notifier.dispatcher import SETTLE, DeliveryReport, deliver, dispatch
from outreach.accounts import credential_keeper, open_mailbox
from outreach.mailbox import MailboxError
from outreach.maildir import MaildirMailbox
from outreach.oauth import OAuthError
from store.clock import Clock, utcnow
from store.crypto import CredentialCipher, CredentialsUnreadable
from store.leases import holder_name, release_lease, take_lease
from store.schema import mailboxes
from tracking.replies import Inbox, sync_inbox

log = logging.getLogger(__name__)
READABLE = ("gmail", "outlook", "maildir")  # an SMTP server cannot be read


def sync_replies(settings: Settings, engine: Engine) -> list[str]:
    """One round of reply sync over the embedded Maildir and every readable connected mailbox;
    each mailbox's cursor is stored for the next round. Returns a line per mailbox."""
    cipher = CredentialCipher(settings.secrets.encryption_keys)
    maildir = Path(settings.outreach.maildir)
    with engine.connect() as connection:
        rows = list(connection.execute(select(mailboxes).where(mailboxes.c.provider.in_(READABLE))))
    lines = []
    inboxes: list[tuple[int | None, str | None, Inbox]] = [
        (None, None, MaildirMailbox(maildir, "maildir"))
    ]
    for row in rows:
        try:
            credentials = cipher.decrypt(row.credentials) if row.credentials else {}
            box = open_mailbox(
                row.id,
                row.provider,
                row.address,
                credentials,
                oauth=settings.oauth,
                maildir_folder=maildir,
                keep_credentials=credential_keeper(engine, cipher),
            )
        except (CredentialsUnreadable, OAuthError) as exc:
            lines.append(f"{row.address}: not read: {exc}")
            continue
        # Gmail, Outlook and Maildir mailboxes can all be read (READABLE).
        inboxes.append((row.id, row.sync_cursor, cast(Inbox, box)))
    for mailbox_id, cursor, inbox in inboxes:
        try:
            report = sync_inbox(
                engine, inbox, internal_domains=settings.internal_domains, cursor=cursor
            )
        except MailboxError as exc:
            lines.append(f"{inbox.address}: not read: {exc}")
            continue
        if mailbox_id is not None and report.cursor != cursor:
            with engine.begin() as connection:
                connection.execute(
                    update(mailboxes)
                    .where(mailboxes.c.id == mailbox_id)
                    .values(sync_cursor=report.cursor)
                )
        lines.append(f"{inbox.address}: {report.summary()}")
    return lines


# Digests are due by the minute: looking once a minute is enough, and a mailbox that keeps
# failing is tried again once a minute, not at every alerts round.
DIGEST_CHECK_SECONDS = 60.0


def send_alerts(engine: Engine, channels: Mapping[str, Channel]) -> DeliveryReport:
    """New events into alerts, then every alert that is due out: one round."""
    dispatch(engine)
    return deliver(engine, channels)


WORKER_LEASE = "worker"
LEASE_TTL = timedelta(seconds=30)
RENEW_SECONDS = 10.0


class Worker:
    """Whether this process is the active worker: the one holding the worker lease, which it
    renews every RENEW_SECONDS. Any other process with jobs waits as a standby and takes over
    once the lease runs out, so no job ever runs in two processes at once."""

    def __init__(self, engine: Engine, clock: Clock = utcnow) -> None:
        self.owner = holder_name()
        self.active = False
        self.stopping = threading.Event()  # running jobs stop at their next progress report
        self._engine = engine
        self._clock = clock

    def renew(self) -> bool:
        try:
            with self._engine.begin() as connection:
                now = self._clock()
                held = take_lease(connection, WORKER_LEASE, self.owner, now=now, ttl=LEASE_TTL)
                # Jobs it is still running are alive, even if it lost the lease meanwhile.
                heartbeat(connection, self.owner, now)
        except Exception:  # the database is away: do no work until it is back
            log.exception("worker lease: cannot reach the database")
            held = False
        if held != self.active:
            log.info("worker lease: %s", "active" if held else "standing by")
        self.active = held
        return held

    def release(self) -> None:
        self.active = False
        with self._engine.begin() as connection:
            release_lease(connection, WORKER_LEASE, self.owner)


# A wake comes this long after its hits settle, and serves every hit settling this close to it.
WAKE_MARGIN = timedelta(milliseconds=100)


class Jobs:
    def __init__(
        self, scheduler: AsyncIOScheduler, worker: Worker, alerts: APSchedulerJob | None
    ) -> None:
        self.scheduler = scheduler
        self.worker = worker
        self.alerts = alerts
        self._wakes: list[datetime] = []  # when loaded hits settle, soonest first
        self._loop = asyncio.get_running_loop()  # the scheduler's, where wakes are kept

    def alerts_due(self, newest: datetime) -> None:
        """Hits up to `newest` are in the database: run the alerts round as soon as they have
        settled, rather than at its next turn."""
        due = newest + SETTLE + WAKE_MARGIN
        if self.alerts is None or (self._wakes and due - self._wakes[-1] < WAKE_MARGIN):
            return  # one wake serves the hits that settle within the margin of each other
        self._wakes.append(due)
        self._next_wake()

    def alerts_ran(self, started: datetime) -> None:
        """Called from the alerts round's thread: the wakes it served are done."""
        self._loop.call_soon_threadsafe(self._served, started)

    def _served(self, started: datetime) -> None:
        self._wakes = [due for due in self._wakes if due > started]
        self._next_wake()

    def _next_wake(self) -> None:
        job = self.alerts
        if job is None or not self._wakes:
            return
        # Not in the past: the scheduler would call that run missed, and skip it.
        soonest = max(self._wakes[0], datetime.now(UTC))
        if job.next_run_time is None or soonest < job.next_run_time:
            job.modify(next_run_time=soonest)

    async def stop(self) -> None:
        """Stop scheduling, stop running jobs at their next step (they are queued again), and
        hand the lease on at once rather than when it runs out."""
        self.worker.stopping.set()
        self.scheduler.shutdown(wait=False)
        await asyncio.to_thread(self.worker.release)


# Jobs are looked for every second; this many run at once, so a `digest now` need not wait
# for a long send-out to end.
JOB_SECONDS = 1.0
JOBS_AT_ONCE = 3


def run_jobs(
    settings: Settings, engine: Engine, worker: Worker, watcher: Watcher | None = None
) -> int:
    """Every job that is due, including those a dead process left running, and a job for any
    send-out that has none (one left unfinished by an older version). `watcher` tells Slack
    users how their jobs go."""
    adopt_orphans(engine)
    return run_due(
        engine,
        worker.owner,
        job_contexts(settings, engine),
        stopping=worker.stopping,
        watcher=watcher,
    )


def start_jobs(settings: Settings, engine: Engine) -> Jobs:
    """Jobs every second; reply sync every tracking.reply_sync_seconds, alerts every
    notifier.dispatch_seconds (and as soon as loaded hits settle) and digests every minute (when
    alerts are on), each one round at a time, starting now, and only while this process is the
    active worker."""
    alerts_on = settings.notifier.dispatch_seconds > 0
    # Built once: the Slack channel remembers the members it looked up, and the reports the
    # progress messages they keep up to date.
    channels = alert_channels(settings, engine)
    reports = slack_reports(settings)
    worker = Worker(engine)
    worker.renew()
    scheduler = AsyncIOScheduler(timezone=UTC)

    def every(seconds: float, work: Callable[[], object]) -> APSchedulerJob:
        return scheduler.add_job(
            _if_active(worker, work),
            "interval",
            seconds=seconds,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )

    async def renew() -> None:
        await asyncio.to_thread(worker.renew)

    scheduler.add_job(renew, "interval", seconds=RENEW_SECONDS, max_instances=1)
    if settings.tracking.reply_sync_seconds > 0:
        every(
            settings.tracking.reply_sync_seconds,
            lambda: _log_sync(sync_replies(settings, engine)),
        )
    jobs = Jobs(scheduler, worker, None)
    if alerts_on:

        def alerts_round() -> None:
            started = datetime.now(UTC)
            try:
                _log_alerts(send_alerts(engine, channels))
            finally:
                jobs.alerts_ran(started)

        jobs.alerts = every(settings.notifier.dispatch_seconds, alerts_round)
        every(DIGEST_CHECK_SECONDS, lambda: send_due_digests(engine, channels))
    scheduler.add_job(
        _if_active(worker, lambda: run_jobs(settings, engine, worker, reports)),
        "interval",
        seconds=JOB_SECONDS,
        max_instances=JOBS_AT_ONCE,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return jobs


def _if_active(worker: Worker, work: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        if worker.active:
            await asyncio.to_thread(work)

    return job


def _log_sync(lines: list[str]) -> None:
    for line in lines:
        log.info("reply sync: %s", line)


def _log_alerts(report: DeliveryReport) -> None:
    if report.retrying or report.failed:
        log.warning(
            "alerts: %d sent, %d to retry, %d failed for good",
            report.delivered,
            report.retrying,
            report.failed,
        )
