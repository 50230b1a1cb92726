"""One group-commit transaction: store a batch of hits as events, classify them (and reclassify
the email's recent hits in their light), and bring each touched engagement row up to date."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from store.schema import emails, endusers, engagements, events, links
from tracking.classify import WINDOW, EmailFacts, Hit, Rules, classify_window
from tracking.engagement import Tally, engagement_values


@dataclass(frozen=True)
class PendingHit:
    email_id: int
    hit: Hit


@dataclass(frozen=True)
class HitResult:
    found: bool  # the email (and, for a click, the link) exists
    recorded: bool
    destination: str | None = None  # a click's redirect target; None for the honeypot


UNKNOWN = HitResult(found=False, recorded=False)


def write_hits(
    connection: Connection,
    pending: Sequence[PendingHit],
    rules: Rules,
    *,
    tracking_enabled: bool,
    now: datetime,
) -> list[HitResult]:
    """Runs inside the caller's transaction; returns one result per pending hit, in order."""
    email_ids = sorted({p.email_id for p in pending})
    # On PostgreSQL, writers on the same emails take turns, so each one's engagement
    # recount below sees the other's committed events.
    connection.execute(
        select(engagements.c.email_id)
        .where(engagements.c.email_id.in_(email_ids))
        .order_by(engagements.c.email_id)
        .with_for_update()
    )
    facts = _email_rows(connection, email_ids)
    destinations = _links(
        connection, sorted({p.email_id for p in pending if p.hit.kind == "click"})
    )

    results: list[HitResult] = []
    to_record: dict[int, list[int]] = defaultdict(list)  # email id -> positions in `pending`
    for position, item in enumerate(pending):
        result = _result(item, facts.get(item.email_id), destinations, tracking_enabled)
        results.append(result)
        if result.recorded:
            to_record[item.email_id].append(position)
    if not to_record:
        return results

    new_events, reclassified = _classify(connection, pending, to_record, facts, destinations, rules)
    connection.execute(events.insert(), new_events)
    if reclassified:
        connection.execute(
            update(events)
            .where(events.c.id == bindparam("event_id"))
            .values(machine=True, machine_reason=bindparam("reason")),
            [{"event_id": i, "reason": r} for i, r in reclassified],
        )
    _recount(connection, sorted(to_record), facts, now)
    return results


def _email_rows(connection: Connection, email_ids: list[int]) -> dict[int, Any]:
    query = (
        select(
            emails.c.id,
            emails.c.sent_at,
            emails.c.sender_user_id,
            emails.c.open_tracking,
            emails.c.click_tracking,
            func.coalesce(endusers.c.tracking_opt_out, False).label("opt_out"),
        )
        .select_from(emails.outerjoin(endusers, emails.c.enduser_id == endusers.c.id))
        .where(emails.c.id.in_(email_ids))
    )
    return {row.id: row for row in connection.execute(query)}


def _links(connection: Connection, email_ids: list[int]) -> dict[int, dict[int, str | None]]:
    found: dict[int, dict[int, str | None]] = defaultdict(dict)
    if email_ids:
        query = select(links.c.email_id, links.c.idx, links.c.url, links.c.honeypot).where(
            links.c.email_id.in_(email_ids)
        )
        for row in connection.execute(query):
            found[row.email_id][row.idx] = None if row.honeypot else row.url
    return found


def _result(
    item: PendingHit,
    email: Any,
    destinations: dict[int, dict[int, str | None]],
    tracking_enabled: bool,
) -> HitResult:
    if email is None:
        return UNKNOWN
    hit = item.hit
    destination = None
    if hit.kind == "click":
        email_links = destinations.get(item.email_id, {})
        if hit.link_idx not in email_links:
            return UNKNOWN
        destination = email_links[hit.link_idx]
    tracked = email.open_tracking if hit.kind == "open" else email.click_tracking
    record = tracking_enabled and tracked and not email.opt_out
    return HitResult(found=True, recorded=record, destination=destination)


def _classify(
    connection: Connection,
    pending: Sequence[PendingHit],
    to_record: dict[int, list[int]],
    facts: dict[int, Any],
    destinations: dict[int, dict[int, str | None]],
    rules: Rules,
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Rows to insert, and (event id, reason) of stored hits that turn out to be machines."""
    since = min(pending[p].hit.at for positions in to_record.values() for p in positions) - WINDOW
    recent: dict[int, list[tuple[int, Hit]]] = defaultdict(list)
    query = select(
        events.c.id,
        events.c.email_id,
        events.c.kind,
        events.c.at,
        events.c.link_idx,
        events.c.ip,
        events.c.user_agent,
        events.c.details,
        events.c.machine_reason,
    ).where(
        events.c.email_id.in_(sorted(to_record)),
        events.c.kind.in_(("open", "click")),
        events.c.at >= since,
    )
    for row in connection.execute(query):
        # Classified again with its neighbours; its viewer cookie is not stored, but a hit
        # that had matched it would be a machine already.
        hit = Hit(
            row.kind,
            row.at,
            row.link_idx,
            method=(row.details or {}).get("method", "GET"),
            user_agent=row.user_agent or "",
            ip=row.ip or "",
            reason=row.machine_reason,
        )
        recent[row.email_id].append((row.id, hit))

    new_events: list[dict[str, Any]] = []
    reclassified: list[tuple[int, str]] = []
    for email_id, positions in to_record.items():
        email = facts[email_id]
        link_count = sum(1 for url in destinations.get(email_id, {}).values() if url is not None)
        stored = recent[email_id]
        new = [pending[p].hit for p in positions]
        reasons = classify_window(
            [hit for _, hit in stored] + new,
            EmailFacts(email.sent_at, email.sender_user_id, link_count),
            rules,
        )
        for (event_id, hit), reason in zip(stored, reasons, strict=False):
            if hit.reason is None and reason is not None:
                reclassified.append((event_id, reason))
        for hit, reason in zip(new, reasons[len(stored) :], strict=True):
            new_events.append(_event_row(email_id, replace(hit, reason=reason)))
    return new_events, reclassified


def _event_row(email_id: int, hit: Hit) -> dict[str, Any]:
    return {
        "email_id": email_id,
        "kind": hit.kind,
        "at": hit.at,
        "link_idx": hit.link_idx,
        "user_agent": hit.user_agent[:1000],
        "ip": hit.ip,
        "machine": hit.reason is not None,
        "machine_reason": hit.reason,
        "details": {"method": hit.method} if hit.method != "GET" else None,
    }


def _recount(
    connection: Connection, email_ids: list[int], facts: dict[int, Any], now: datetime
) -> None:
    """Recompute each touched engagement row from its events: always right, never drifting."""
    tallies: dict[int, list[Tally]] = defaultdict(list)
    query = (
        select(
            events.c.email_id,
            events.c.kind,
            events.c.machine,
            func.count().label("n"),
            func.min(events.c.at).label("first_at"),
        )
        .where(events.c.email_id.in_(email_ids))
        .group_by(events.c.email_id, events.c.kind, events.c.machine)
    )
    for row in connection.execute(query):
        tallies[row.email_id].append(Tally(row.kind, bool(row.machine), row.n, row.first_at))
    rows = [
        {
            "target_id": email_id,
            "updated_at": now,
            **engagement_values(
                tallies[email_id],
                open_tracking=facts[email_id].open_tracking,
                click_tracking=facts[email_id].click_tracking,
            ),
        }
        for email_id in email_ids
    ]
    statement = update(engagements).where(engagements.c.email_id == bindparam("target_id"))
    connection.execute(statement, rows)
