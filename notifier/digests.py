"""The daily digest (DESIGN §6): each morning, at the user's local time, what their emails did
the day before, sent once per user per day even across restarts.

`due_day` and `compose` are pure; `gather` reads; `send_due_digests` is the job.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, Engine, func, select, update

from notifier.alerts import Alert
from notifier.channels import Channel, ChannelError, Recipient
from store.clock import Clock, utcnow
from store.schema import campaigns, digests, emails, endusers, engagements, events, users

log = logging.getLogger(__name__)

# "Not opened yet" looks at the emails of the last week.
NOT_OPENED_WINDOW = timedelta(days=7)
LISTED = 10  # names listed per section; the rest are counted


def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone(name: str) -> tzinfo:
    """The user's time zone; UTC for a name this machine does not know."""
    return ZoneInfo(name) if is_time_zone(name) else UTC


def due_day(now: datetime, time_zone: str, at: str, last_sent_day: date | None) -> date | None:
    """The local day whose digest is due now (it covers the day before), or None: not yet
    `at` o'clock there, or already sent today."""
    local = now.astimezone(zone(time_zone))
    hours, minutes = (int(part) for part in at.split(":"))
    if local.time() < time(hours, minutes):
        return None
    today = local.date()
    return None if last_sent_day is not None and last_sent_day >= today else today


@dataclass(frozen=True)
class Engaged:
    who: str  # the enduser's name or address
    did: tuple[str, ...]  # of "opened", "clicked", "replied", in that order


@dataclass(frozen=True)
class Digest:
    day: date  # the day it covers
    sent: int  # emails the user sent that day
    campaigns: tuple[str, ...]
    open_rate: float | None  # of those emails, human only; None: none was tracked
    click_rate: float | None
    reply_rate: float | None
    engaged: tuple[Engaged, ...] = ()  # people who did something that day, any email of theirs
    not_opened: dict[str, int] = field(default_factory=dict)  # campaign -> emails not opened
    not_opened_ids: tuple[int, ...] = ()  # those campaigns, for buttons where a channel has them


def gather(connection: Connection, user_id: int, day: date, time_zone: str) -> Digest:
    start = datetime.combine(day, time(), zone(time_zone)).astimezone(UTC)
    end = start + timedelta(days=1)
    mine = emails.c.sender_user_id == user_id
    that_day = mine & (emails.c.sent_at >= start) & (emails.c.sent_at < end)
    sent, opens, clicks, replies = connection.execute(
        select(
            func.count(),
            func.avg(engagements.c.open_rate),
            func.avg(engagements.c.click_rate),
            func.avg(engagements.c.reply_rate),
        )
        .select_from(emails.join(engagements, engagements.c.email_id == emails.c.id))
        .where(that_day)
    ).one()
    names = connection.scalars(
        select(campaigns.c.name)
        .where(campaigns.c.id.in_(select(emails.c.campaign_id).where(that_day)))
        .order_by(campaigns.c.id)
    )
    return Digest(
        day=day,
        sent=sent,
        campaigns=tuple(dict.fromkeys(names)),  # each name once
        open_rate=_percent(opens),
        click_rate=_percent(clicks),
        reply_rate=_percent(replies),
        engaged=_engaged(connection, user_id, start, end),
        **_not_opened(connection, user_id, end),
    )


def _engaged(
    connection: Connection, user_id: int, start: datetime, end: datetime
) -> tuple[Engaged, ...]:
    query = (
        select(events.c.kind, endusers.c.name, endusers.c.email, emails.c.to_addrs)
        .select_from(
            events.join(emails, emails.c.id == events.c.email_id).outerjoin(
                endusers, endusers.c.id == emails.c.enduser_id
            )
        )
        .where(
            emails.c.sender_user_id == user_id,
            events.c.at >= start,
            events.c.at < end,
            events.c.machine.is_(False),
            events.c.kind.in_(("open", "click", "reply")),
        )
        .order_by(events.c.id)
    )
    did: dict[str, set[str]] = {}
    for row in connection.execute(query):
        who = row.name or row.email or next(iter(row.to_addrs), "someone")
        did.setdefault(who, set()).add(row.kind)
    order = (("open", "opened"), ("click", "clicked"), ("reply", "replied"))
    return tuple(
        Engaged(who, tuple(word for kind, word in order if kind in kinds))
        for who, kinds in did.items()
    )


def _not_opened(connection: Connection, user_id: int, end: datetime) -> dict[str, Any]:
    query = (
        select(campaigns.c.id, func.coalesce(campaigns.c.name, ""), func.count())
        .select_from(
            engagements.join(emails, emails.c.id == engagements.c.email_id).outerjoin(
                campaigns, campaigns.c.id == emails.c.campaign_id
            )
        )
        .where(
            emails.c.sender_user_id == user_id,
            emails.c.sent_at >= end - NOT_OPENED_WINDOW,
            emails.c.sent_at < end,
            engagements.c.open_rate == 0,
        )
        .group_by(campaigns.c.id, campaigns.c.name)
        .order_by(campaigns.c.name, campaigns.c.id)
    )
    rows = connection.execute(query).all()
    counts: dict[str, int] = {}
    for _, name, count in rows:
        counts[name or "(single emails)"] = counts.get(name or "(single emails)", 0) + count
    return {"not_opened": counts, "not_opened_ids": tuple(i for i, _, _ in rows if i is not None)}


def _percent(value: object) -> float | None:
    return None if value is None else round(float(str(value)))


def compose(digest: Digest) -> Alert:
    """The digest as an email: a subject that says the most, and the rest line by line."""
    day = f"{digest.day:%a %d %b}"
    title = f"Your mailbeacon digest for {day}: {digest.sent} sent, {len(digest.engaged)} engaged"
    lines = []
    if digest.sent:
        rates = ", ".join(
            f"{what} {'n/a' if rate is None else f'{rate:.0f}%'}"
            for what, rate in (
                ("opened", digest.open_rate),
                ("clicked", digest.click_rate),
                ("replied", digest.reply_rate),
            )
        )
        lines.append(f"Sent {digest.sent} ({', '.join(digest.campaigns) or 'single emails'}).")
        lines.append(f"Of those: {rates}.")
    else:
        lines.append("You sent nothing that day.")
    if digest.engaged:
        lines.append("")
        lines.append("Who engaged:")
        lines += [f"- {e.who}: {', '.join(e.did)}" for e in digest.engaged[:LISTED]]
        if len(digest.engaged) > LISTED:
            lines.append(f"- and {len(digest.engaged) - LISTED} more")
    if digest.not_opened:
        lines.append("")
        lines.append("Not opened yet (emails of the last 7 days):")
        lines += [
            f"- {campaign}: {count} (`/beacon nonopeners {campaign}` lists them)"
            for campaign, count in digest.not_opened.items()
        ]
    return Alert(title, "\n".join(lines), digest.not_opened_ids)


def send_due_digests(
    engine: Engine, channels: Mapping[str, Channel], *, clock: Clock = utcnow
) -> int:
    """Send every digest that is due, by each user's channel (email when theirs is not set up
    here); returns how many went out. Its key is made from the user and the day, so a digest
    sent just before a crash is found (Message-ID, Slack metadata), not sent again."""
    now = clock()
    with engine.connect() as connection:
        rows = connection.execute(
            select(digests, users.c.email, users.c.name, users.c.timezone, users.c.slack_user_id)
            .join(users, users.c.id == digests.c.user_id)
            .where(digests.c.enabled)
        ).all()
    sent = 0
    for row in rows:
        today = due_day(now, row.timezone, row.at_time, row.last_sent_day)
        if today is None:
            continue
        with engine.connect() as connection:
            digest = gather(connection, row.user_id, today - timedelta(days=1), row.timezone)
        recipient = Recipient(row.user_id, row.email, row.name, slack_user_id=row.slack_user_id)
        channel = channels.get(row.channel) or channels["email"]
        try:
            channel.send(recipient, compose(digest), key=f"digest.{row.user_id}.{today}")
        except ChannelError as exc:
            log.warning("digest for %s: not sent, tried again soon: %s", row.email, exc)
            continue
        with engine.begin() as connection:
            connection.execute(
                update(digests).where(digests.c.user_id == row.user_id).values(last_sent_day=today)
            )
        sent += 1
    return sent


def set_digest(
    connection: Connection,
    user_id: int,
    *,
    enabled: bool,
    at: str | None,
    channel: str | None = None,
) -> Any:
    """Turn the user's digest on (at `at`, else as before, else 09:00; by `channel`, else as
    before, else email) or off: the row."""
    found = connection.execute(select(digests).where(digests.c.user_id == user_id)).first()
    values: dict[str, Any] = {"enabled": enabled}
    if at is not None:
        values["at_time"] = at
    if channel is not None:
        values["channel"] = channel
    if found is None:
        connection.execute(digests.insert().values(user_id=user_id, **values))
    else:
        connection.execute(update(digests).where(digests.c.user_id == user_id).values(values))
    return connection.execute(select(digests).where(digests.c.user_id == user_id)).one()
