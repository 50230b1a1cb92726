"""Scheduled work of the all-in-one server (APScheduler 3): reply sync over every mailbox, and
alerts."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, select, update

from mailbeacon.channels import alert_channels, email_channel
from mailbeacon.settings import Settings
from notifier.digests import send_due_digests
from notifier.dispatcher import DeliveryReport, deliver, dispatch
from outreach.accounts import credential_keeper, open_mailbox
from outreach.mailbox import MailboxError
from outreach.maildir import MaildirMailbox
from outreach.oauth import OAuthError
from store.crypto import CredentialCipher, CredentialsUnreadable
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


def send_alerts(settings: Settings, engine: Engine) -> DeliveryReport:
    """New events into alerts, then every alert that is due out: one round."""
    dispatch(engine)
    return deliver(engine, alert_channels(settings, engine))


def send_digests(settings: Settings, engine: Engine) -> int:
    return send_due_digests(engine, email_channel(settings, engine))


def start_jobs(settings: Settings, engine: Engine) -> AsyncIOScheduler | None:
    """Reply sync every tracking.reply_sync_seconds, alerts every notifier.dispatch_seconds and
    digests every minute (when alerts are on), each one round at a time, starting now."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    async def reply_sync() -> None:
        for line in await asyncio.to_thread(sync_replies, settings, engine):
            log.info("reply sync: %s", line)

    async def alerts() -> None:
        report = await asyncio.to_thread(send_alerts, settings, engine)
        if report.retrying or report.failed:
            log.warning(
                "alerts: %d sent, %d to retry, %d failed for good",
                report.delivered,
                report.retrying,
                report.failed,
            )

    async def digests() -> None:
        await asyncio.to_thread(send_digests, settings, engine)

    alerts_on = settings.notifier.dispatch_seconds > 0
    jobs = [
        (reply_sync, settings.tracking.reply_sync_seconds),
        (alerts, settings.notifier.dispatch_seconds),
        (digests, DIGEST_CHECK_SECONDS if alerts_on else 0),
    ]
    for job, seconds in jobs:
        if seconds > 0:
            scheduler.add_job(
                job,
                "interval",
                seconds=seconds,
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC),
            )
    if not scheduler.get_jobs():
        return None
    scheduler.start()
    return scheduler
