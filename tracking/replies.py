"""Replies, auto-replies and bounces enter the same event log as opens and clicks: each incoming
message once, credited to the exact email it answers (DESIGN §3 rules 3-5)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Protocol

from sqlalchemy import Connection, Engine, func, select, update

from store.clock import Clock, utcnow
from store.schema import emails, endusers, events, users
from tracking.engagement import INBOUND_COLUMNS, Tally
from tracking.inbound import UNLINKED, Inbound, Incoming, classify_inbound, credited_email
from tracking.record import merge_into_engagements

COUNTED = ("reply", "auto_reply", "bounce")
RESYNC_WINDOW = timedelta(days=90)  # how far back a resync looks for our threads


class Inbox(Protocol):
    """What reply sync needs of a mailbox: what arrived since a cursor, and the new cursor."""

    address: str

    def incoming(
        self, cursor: str | None, threads: Sequence[str]
    ) -> tuple[list[Incoming], str | None]:
        """What arrived since `cursor`, and the new cursor. When the cursor is gone, a resync
        reads `threads` (the provider's threads of our recent emails)."""
        ...


@dataclass
class SyncReport:
    cursor: str | None = None  # where the next sync starts (store it with the mailbox)
    seen: int = 0
    recorded: dict[str, int] = field(default_factory=dict)  # kind -> how many

    def summary(self) -> str:
        # In a fixed order: the mailbox hands messages over in an order of its own.
        kinds = [kind for kind in ("reply", "auto_reply", "bounce") if kind in self.recorded]
        counts = ", ".join(f"{self.recorded[kind]} {kind.replace('_', '-')}" for kind in kinds)
        read = f"{self.seen} message{'' if self.seen == 1 else 's'} read"
        return f"{read}; recorded: {counts or 'nothing new'}"


def record_inbound(
    connection: Connection,
    inbound: Inbound,
    *,
    received_at: datetime,
    fallback_id: str,
    thread_id: str | None = None,
) -> Inbound | None:
    """Store the message as an event of the email it answers and update that email's
    engagement row; what was recorded, or None when it answers none of ours, is internal, or
    was recorded before."""
    if inbound.kind == "unrelated" and inbound.reason == UNLINKED and thread_id is not None:
        inbound = replace(inbound, kind="reply", reason="in one of our threads")
    if inbound.kind not in COUNTED:
        return None
    key = inbound.message_id or fallback_id
    if connection.scalar(select(events.c.id).where(events.c.inbound_message_id == key)):
        return None
    candidates = [i for i in (inbound.in_reply_to, *inbound.references) if i]
    ours = {
        row.message_id: row.id
        for row in connection.execute(
            select(emails.c.id, emails.c.message_id).where(emails.c.message_id.in_(candidates))
        )
    }
    email_id = credited_email(inbound, ours)
    if email_id is None and thread_id is not None:
        # No header names one of ours: the newest of ours in the provider's thread.
        email_id = connection.scalar(
            select(emails.c.id)
            .where(emails.c.thread_id == thread_id, emails.c.status == "sent")
            .order_by(emails.c.id.desc())
            .limit(1)
        )
    if email_id is None:
        return None
    details: dict[str, object] = {
        "from": inbound.sender,
        "subject": inbound.subject[:300],
        "snippet": inbound.snippet[:300],
        "reason": inbound.reason,
    }
    if inbound.failed_recipients:
        details["failed_recipients"] = list(inbound.failed_recipients)
    connection.execute(
        events.insert().values(
            email_id=email_id,
            kind=inbound.kind,
            at=received_at,
            details=details,
            inbound_message_id=key,
        )
    )
    tallies = {email_id: [Tally(inbound.kind, False, 1, received_at)]}
    merge_into_engagements(connection, tallies, {email_id: (True, True)}, INBOUND_COLUMNS)
    if inbound.kind == "bounce" and inbound.failed_recipients:
        # Left out of later audiences unless forced.
        connection.execute(
            update(endusers)
            .where(func.lower(endusers.c.email).in_(list(inbound.failed_recipients)))
            .values(bounced_at=received_at)
        )
    return inbound


def sync_inbox(
    engine: Engine,
    inbox: Inbox,
    *,
    internal_domains: Collection[str],
    cursor: str | None = None,
    clock: Clock = utcnow,
) -> SyncReport:
    """Read what arrived since `cursor` and record every reply, auto-reply and bounce to one of
    our emails. Running it again records nothing new."""
    with engine.connect() as connection:
        internal = {address.lower() for address in connection.scalars(select(users.c.email))}
    since = clock() - RESYNC_WINDOW
    with engine.connect() as connection:
        threads = list(
            connection.scalars(
                select(emails.c.thread_id)
                .where(emails.c.thread_id.is_not(None), emails.c.sent_at >= since)
                .distinct()
            )
        )
    arrived, new_cursor = inbox.incoming(cursor, threads)
    report = SyncReport(cursor=new_cursor)
    for message_in in arrived:
        report.seen += 1
        message = message_from_bytes(message_in.raw, policy=policy.compat32)
        inbound = classify_inbound(
            message, internal_domains=internal_domains, internal_addresses=internal
        )
        fallback = hashlib.sha256(f"{inbox.address}\0{message_in.key}".encode()).hexdigest()
        with engine.begin() as connection:
            recorded = record_inbound(
                connection,
                inbound,
                received_at=clock(),
                fallback_id=f"<{fallback}@mailbeacon>",
                thread_id=message_in.thread_id,
            )
        if recorded is not None:
            report.recorded[recorded.kind] = report.recorded.get(recorded.kind, 0) + 1
    return report
