"""From the events log to the channels (DESIGN §6), in two steps that each survive a restart.

`dispatch` reads the events after a stored cursor, in id order, and writes one `deliveries` row
for every rule each sets off; the cursor moves in the same transaction, so an event is
dispatched once. `deliver` sends what is due and records the outcome in the row: delivered, or
tried again later with a growing delay, or failed for good after MAX_ATTEMPTS.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from notifier.alerts import Alert, Happening, describe
from notifier.channels import Channel, ChannelError, Recipient
from notifier.quiet import quiet_until
from notifier.rules import EventFacts, Rule, fires
from store.clock import Clock, utcnow
from store.schema import (
    UTCDateTime,
    campaigns,
    companies,
    cursors,
    deliveries,
    emails,
    endusers,
    events,
    links,
    subscriptions,
    templates,
    users,
)
from tracking.classify import WINDOW

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")
CURSOR = "notifier.events"
# A hit may still turn out to be a machine this long after it came (a honeypot hit from the same
# address reclassifies it), so an event is dispatched only once it is this old.
SETTLE = WINDOW
# Events older than this when first seen (a notifier that was down for days) alert nobody: an
# alert is news, not history.
NEWS = timedelta(days=1)
MAX_ATTEMPTS = 8


def retry_delay(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most an hour."""
    delay: timedelta = timedelta(seconds=30) * 2 ** (attempts - 1)
    return min(delay, timedelta(hours=1))


def dispatch(engine: Engine, *, clock: Clock = utcnow, chunk: int = 1000) -> int:
    """Deliveries for the settled events since the cursor, `chunk` events a transaction, until
    caught up; returns how many were written."""
    written = 0
    while True:
        new, read = _dispatch_chunk(engine, clock(), chunk)
        written += new
        if read < chunk:
            return written


def _dispatch_chunk(engine: Engine, now: datetime, chunk: int) -> tuple[int, int]:
    """(deliveries written, events read). The events and rules are read without the write
    lock; only the deliveries and the cursor's move are written, together and briefly, so
    the recorder is never kept waiting by a long round."""
    with engine.begin() as connection:
        position = _cursor(connection)
    with engine.connect() as connection:
        rows = connection.execute(_FACTS.where(events.c.id > position).limit(chunk)).all()
        settled = list(itertools.takewhile(lambda row: row.at <= now - SETTLE, rows))
        if not settled:
            return 0, 0
        kinds = {row.kind for row in settled}
        rules = [
            _as(Rule, row)
            for row in connection.execute(
                select(subscriptions).where(subscriptions.c.event_kind.in_(kinds))
            )
        ]
    new = [
        {"subscription_id": rule.id, "event_id": row.id, "channel": rule.channel}
        for row in settled
        if row.at >= now - NEWS
        for rule in rules
        if fires(rule, _as(EventFacts, row))
    ]
    with engine.begin() as connection:
        moved = connection.execute(
            update(cursors)
            .where(cursors.c.name == CURSOR, cursors.c.position == position)
            .values(position=settled[-1].id)
        ).rowcount
        if not moved:  # another dispatcher got there first: it wrote these
            return 0, 0
        if new:
            connection.execute(insert(deliveries), new)
    return len(new), len(settled)


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0  # waiting for the end of their user's quiet hours


def deliver(
    engine: Engine, channels: Mapping[str, Channel], *, clock: Clock = utcnow, limit: int = 100
) -> DeliveryReport:
    """Send the deliveries that are due on these channels, each outcome recorded as soon as it
    is known."""
    report = DeliveryReport()
    # Desktop alerts are not sent from here: the user's open /alerts pages read them.
    query = _DUE.where(deliveries.c.channel.in_(list(channels))).limit(limit)
    with engine.connect() as connection:
        due = connection.execute(query, {"now": clock()}).all()
    for row in due:
        until = quiet_until(clock(), row.user_timezone, row.quiet_hours)
        if until is not None:  # not an attempt: it waits for the end of the quiet
            values: dict[str, Any] = {"next_attempt_at": until}
            report.held += 1
        else:
            values = _attempt(row, channels, clock, report)
        with engine.begin() as connection:
            connection.execute(update(deliveries).where(deliveries.c.id == row.id).values(values))
    return report


def _attempt(
    row: Any, channels: Mapping[str, Channel], clock: Clock, report: DeliveryReport
) -> dict[str, Any]:
    """Send one delivery: the row's new values."""
    values: dict[str, Any] = {"attempts": row.attempts + 1}
    try:
        channel = channels[row.channel]
        recipient = Recipient(row.user_id, row.user_email, row.user_name, row.slack_user_id)
        channel.send(recipient, alert_of(row), key=str(row.id))
    except ChannelError as exc:
        values["last_error"] = str(exc)[:1000]
        if values["attempts"] >= MAX_ATTEMPTS:
            values["status"] = "failed"
            report.failed += 1
        else:
            values["next_attempt_at"] = clock() + retry_delay(values["attempts"])
            report.retrying += 1
    else:
        values.update(status="delivered", delivered_at=clock(), last_error=None)
        report.delivered += 1
    return values


def _cursor(connection: Connection) -> int:
    query = select(cursors.c.position).where(cursors.c.name == CURSOR).with_for_update()
    position = connection.scalar(query)
    if position is None:
        connection.execute(insert(cursors).values(name=CURSOR, position=0))
        return 0
    return int(position)


def _as(cls: type[D], row: Any) -> D:
    """The dataclass made of the row's columns of the same names."""
    return cls(**{field.name: getattr(row, field.name) for field in dataclasses.fields(cls)})


def alert_of(row: Any) -> Alert:
    """What the alert of a row of ALERT_ROWS says."""
    at: datetime = row.at
    return describe(
        Happening(
            kind=row.kind,
            at=at,
            subject=row.subject,
            # Outcomes belong to the first To recipient, an enduser or not.
            enduser_email=row.enduser_email or next(iter(row.to_addrs), None),
            enduser_name=row.enduser_name or None,
            company=row.company_name,
            campaign_id=row.campaign_id,
            campaign_name=row.campaign_name or None,
            url=row.url,
            machine_reason=row.machine_reason,
        )
    )


_earlier = aliased(events)


def _earlier_count(*, human: bool) -> Any:
    """1 when this email had an event of this kind before this one (by people, with `human`),
    else 0. An EXISTS stops at the first it finds, so an email with 20,000 opens costs no more
    than one with two."""
    query = select(_earlier.c.id).where(
        _earlier.c.email_id == events.c.email_id,
        _earlier.c.kind == events.c.kind,
        _earlier.c.id < events.c.id,
    )
    found = query.where(_earlier.c.machine.is_(False)) if human else query
    return case((exists(found), 1), else_=0)


_FACTS = (
    select(
        events.c.id,
        events.c.kind,
        events.c.machine,
        events.c.at,
        events.c.email_id,
        emails.c.sender_user_id,
        templates.c.key.label("template_key"),
        emails.c.campaign_id,
        emails.c.enduser_id,
        endusers.c.company_id,
        _earlier_count(human=True).label("earlier_human"),
        _earlier_count(human=False).label("earlier_all"),
    )
    .select_from(
        events.join(emails, emails.c.id == events.c.email_id)
        .outerjoin(templates, templates.c.id == emails.c.template_id)
        .outerjoin(endusers, endusers.c.id == emails.c.enduser_id)
    )
    .order_by(events.c.id)
)

ALERT_ROWS = (  # a delivery with all an alert says: filter and order as needed
    select(
        deliveries.c.id,
        deliveries.c.channel,
        deliveries.c.status,
        deliveries.c.attempts,
        users.c.id.label("user_id"),
        users.c.email.label("user_email"),
        users.c.name.label("user_name"),
        users.c.timezone.label("user_timezone"),
        users.c.slack_user_id,
        users.c.quiet_hours,
        events.c.kind,
        events.c.at,
        events.c.machine_reason,
        emails.c.subject,
        emails.c.to_addrs,
        emails.c.campaign_id,
        campaigns.c.name.label("campaign_name"),
        endusers.c.email.label("enduser_email"),
        endusers.c.name.label("enduser_name"),
        companies.c.name.label("company_name"),
        links.c.url,
    )
    .select_from(
        deliveries.join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        .join(users, users.c.id == subscriptions.c.user_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .join(emails, emails.c.id == events.c.email_id)
        .outerjoin(campaigns, campaigns.c.id == emails.c.campaign_id)
        .outerjoin(endusers, endusers.c.id == emails.c.enduser_id)
        .outerjoin(companies, companies.c.id == endusers.c.company_id)
        .outerjoin(
            links, and_(links.c.email_id == events.c.email_id, links.c.idx == events.c.link_idx)
        )
    )
    .order_by(deliveries.c.id)
)
_DUE = ALERT_ROWS.where(
    deliveries.c.status == "pending",
    or_(
        deliveries.c.next_attempt_at.is_(None),
        deliveries.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()),
    ),
)
