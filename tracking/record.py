"""One loader transaction: store a batch of hits as events, classify them (and reclassify
the email's recent hits in their light), and bring each touched engagement row up to date."""

from __future__ import annotations

import functools
import json
import operator
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Connection, Select, Update, bindparam, func, select, update

from store.schema import UTCDateTime, emails, endusers, engagements, events, links
from store.sql import among, greatest, least, takes_arrays
from tracking.classify import HONEYPOT_IDX, WINDOW, EmailFacts, Hit, Rules, classify_window
from tracking.engagement import HIT_COLUMNS, INBOUND_COLUMNS, Tally, engagement_values

# How long the facts of an email are trusted: an enduser's opt-out takes effect within this.
FACTS_TTL_SECONDS = 30.0
FACTS_CACHE_SIZE = 100_000


@dataclass(frozen=True)
class PendingHit:
    email_id: int
    hit: Hit
    hit_id: str | None = None  # its journal record's: the event is stored once


@dataclass
class _Email:
    """What the rules need to know of an email; its links are loaded on its first click."""

    sent_at: datetime | None
    sender_user_id: int | None
    open_tracking: bool
    click_tracking: bool
    opt_out: bool
    fetched: float
    links: dict[int, str | None] | None = None  # index -> destination (None: the honeypot)

    @property
    def link_count(self) -> int:
        return sum(1 for url in (self.links or {}).values() if url is not None)


class EmailCache:
    """Emails hit again and again are looked up once every FACTS_TTL_SECONDS, not per hit."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._emails: dict[int, _Email] = {}

    def lookup(
        self, connection: Connection, email_ids: set[int], clicked: set[int]
    ) -> dict[int, _Email]:
        now = self._clock()
        stale = {
            i for i in email_ids if now - self._emails.get(i, _NEVER).fetched > FACTS_TTL_SECONDS
        }
        if stale:
            if len(self._emails) > FACTS_CACHE_SIZE:
                self._emails.clear()
            for i in stale:
                self._emails.pop(i, None)  # gone from the database: gone from here too
            query = _emails_query(takes_arrays(connection))
            for row in connection.execute(query, {"ids": sorted(stale)}):
                self._emails[row.id] = _Email(
                    row.sent_at,
                    row.sender_user_id,
                    row.open_tracking,
                    row.click_tracking,
                    bool(row.opt_out),
                    now,
                )
        found = {i: self._emails[i] for i in email_ids if i in self._emails}
        unlinked = sorted(i for i in clicked if i in found and found[i].links is None)
        if unlinked:
            loaded: dict[int, dict[int, str | None]] = {i: {} for i in unlinked}
            for link in connection.execute(
                _links_query(takes_arrays(connection)), {"ids": unlinked}
            ):
                loaded[link.email_id][link.idx] = None if link.honeypot else link.url
            for i, email_links in loaded.items():
                found[i].links = email_links
        return found


_NEVER = _Email(None, None, False, False, False, fetched=float("-inf"))


# The statements below, one for each way of passing a list of ids (store.sql.among).
@functools.cache
def _emails_query(arrays: bool) -> Select[Any]:
    return (
        select(
            emails.c.id,
            emails.c.sent_at,
            emails.c.sender_user_id,
            emails.c.open_tracking,
            emails.c.click_tracking,
            func.coalesce(endusers.c.tracking_opt_out, False).label("opt_out"),
        )
        .select_from(emails.outerjoin(endusers, emails.c.enduser_id == endusers.c.id))
        .where(among(emails.c.id, "ids", arrays=arrays))
    )


@functools.cache
def _links_query(arrays: bool) -> Select[Any]:
    return select(links.c.email_id, links.c.idx, links.c.url, links.c.honeypot).where(
        among(links.c.email_id, "ids", arrays=arrays)
    )


def write_hits(
    connection: Connection,
    pending: Sequence[PendingHit],
    rules: Rules,
    cache: EmailCache,
    *,
    tracking_enabled: bool,
) -> list[bool]:
    """Runs inside the caller's transaction; returns, for each pending hit in order, whether it
    was recorded (not when its email or link is unknown, or not tracked)."""
    clicked = {p.email_id for p in pending if p.hit.kind == "click"}
    known = cache.lookup(connection, {p.email_id for p in pending}, clicked)

    results: list[bool] = []
    to_record: dict[int, list[PendingHit]] = defaultdict(list)
    for item in pending:
        recorded = _recorded(item, known.get(item.email_id), tracking_enabled)
        results.append(recorded)
        if recorded:
            to_record[item.email_id].append(item)
    if not to_record:
        return results

    arrays = takes_arrays(connection)
    if arrays:
        # Writers in other processes touching the same emails take turns, always in the same
        # order (no deadlock). SQLite needs none of this: BEGIN IMMEDIATE serializes writers.
        connection.execute(_LOCK, {"ids": sorted(to_record)})
    new_events, reclassified = _classify(connection, to_record, known, rules)
    _insert_events(connection, new_events)
    if reclassified:
        connection.execute(
            _RECLASSIFY, [{"event_id": event_id, "reason": r} for _, event_id, r in reclassified]
        )
    recount = {email_id for email_id, _, _ in reclassified}
    _add_to_engagements(connection, new_events, recount, known)
    _recount_engagements(connection, sorted(recount), known)
    return results


def _recorded(item: PendingHit, email: _Email | None, tracking_enabled: bool) -> bool:
    hit = item.hit
    if email is None or (hit.kind == "click" and hit.link_idx not in (email.links or {})):
        return False
    tracked = email.open_tracking if hit.kind == "open" else email.click_tracking
    return tracking_enabled and tracked and not email.opt_out


def _classify(
    connection: Connection,
    to_record: dict[int, list[PendingHit]],
    known: dict[int, _Email],
    rules: Rules,
) -> tuple[list[dict[str, Any]], list[tuple[int, int, str]]]:
    """Rows to insert, and (email id, event id, reason) of stored hits that turn out to be
    machines."""
    recent = _recent_hits(connection, to_record)
    new_events: list[dict[str, Any]] = []
    reclassified: list[tuple[int, int, str]] = []
    for email_id, new in to_record.items():
        email = known[email_id]
        stored = recent.get(email_id, [])
        reasons = classify_window(
            [hit for _, hit in stored] + [item.hit for item in new],
            EmailFacts(email.sent_at, email.sender_user_id, email.link_count),
            rules,
        )
        for (event_id, hit), reason in zip(stored, reasons, strict=False):
            if hit.reason is None and reason is not None:
                reclassified.append((email_id, event_id, reason))
        for item, reason in zip(new, reasons[len(stored) :], strict=True):
            new_events.append(_event_row(email_id, item, reason))
    return new_events, reclassified


def _recent_hits(
    connection: Connection, to_record: dict[int, list[PendingHit]]
) -> dict[int, list[tuple[int, Hit]]]:
    """The stored hits the window signals may look at or reclassify: recent clicks (the
    honeypot and link bursts are clicks), and recent opens of emails whose honeypot was just hit."""
    since = min(item.hit.at for items in to_record.values() for item in items) - WINDOW
    honeypotted = sorted(
        email_id
        for email_id, items in to_record.items()
        if any(i.hit.kind == "click" and i.hit.link_idx == HONEYPOT_IDX for i in items)
    )
    recent: dict[int, list[tuple[int, Hit]]] = defaultdict(list)
    lookups = [("click", sorted(to_record))] + ([("open", honeypotted)] if honeypotted else [])
    query = _recent_query(takes_arrays(connection))
    for kind, email_ids in lookups:
        params = {"kind": kind, "ids": email_ids, "since": since}
        for row in connection.execute(query, params):
            # Classified again with its neighbours; its viewer cookie is not stored, but a hit
            # that had matched it would be a machine already.
            hit = Hit(
                kind,  # type: ignore[arg-type]
                row.at,
                row.link_idx,
                method=(row.details or {}).get("method", "GET"),
                user_agent=row.user_agent or "",
                ip=row.ip or "",
                reason=row.machine_reason,
            )
            recent[row.email_id].append((row.id, hit))
    return recent


@functools.cache
def _recent_query(arrays: bool) -> Select[Any]:
    return select(
        events.c.id,
        events.c.email_id,
        events.c.at,
        events.c.link_idx,
        events.c.ip,
        events.c.user_agent,
        events.c.details,
        events.c.machine_reason,
    ).where(
        among(events.c.email_id, "ids", arrays=arrays),
        events.c.kind == bindparam("kind"),
        events.c.at >= bindparam("since", type_=UTCDateTime()),
    )


_LOCK = (  # PostgreSQL's alone
    select(engagements.c.email_id)
    .where(among(engagements.c.email_id, "ids", arrays=True))
    .order_by(engagements.c.email_id)
    .with_for_update()
)


_EVENT_COLUMNS = (
    "hit_id",
    "email_id",
    "kind",
    "at",
    "link_idx",
    "user_agent",
    "ip",
    "machine",
    "machine_reason",
    "details",
)


def _insert_events(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """The batch goes to the driver as it is, without SQLAlchemy's handling of each row's
    parameters (much of the loader's time): PostgreSQL takes it with COPY, SQLite with one
    executemany."""
    columns = ", ".join(_EVENT_COLUMNS)
    if takes_arrays(connection):
        driver = connection.connection.driver_connection
        assert driver is not None
        with driver.cursor().copy(f"COPY {events.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                # As SQLAlchemy's JSON writes it: None is the JSON null.
                copy.write_row((*_pick_event(row)[:-1], json.dumps(row["details"])))
        return
    # The values as SQLAlchemy's types would store them.
    processors = [
        (i, process)
        for i, name in enumerate(_EVENT_COLUMNS)
        if (process := events.c[name].type.bind_processor(connection.dialect)) is not None
    ]
    values = []
    for row in rows:
        value = list(_pick_event(row))
        for i, process in processors:
            value[i] = process(value[i])
        values.append(tuple(value))
    marks = ", ".join("?" * len(_EVENT_COLUMNS))
    connection.exec_driver_sql(f"INSERT INTO {events.name} ({columns}) VALUES ({marks})", values)


_pick_event = operator.itemgetter(*_EVENT_COLUMNS)


_RECLASSIFY = (
    update(events)
    .where(events.c.id == bindparam("event_id"))
    .values(machine=True, machine_reason=bindparam("reason"))
)


def _event_row(email_id: int, item: PendingHit, reason: str | None) -> dict[str, Any]:
    hit = item.hit
    return {
        "hit_id": item.hit_id,
        "email_id": email_id,
        "kind": hit.kind,
        "at": hit.at,
        "link_idx": hit.link_idx,
        "user_agent": hit.user_agent,
        "ip": hit.ip,
        "machine": reason is not None,
        "machine_reason": reason,
        "details": {"method": hit.method} if hit.method != "GET" else None,
    }


# Adding a batch to a stored engagement row: counts add up, a rate that reached 100 stays 100,
# and first times keep the earliest. The rules themselves live in engagement_values().
_COUNTS = ("opens", "opens_raw", "clicks", "clicks_raw", "replies")
_RATES = ("open_rate", "open_rate_raw", "click_rate", "click_rate_raw", "reply_rate")
_FIRSTS = ("first_opened_at", "first_clicked_at", "replied_at", "auto_replied_at", "bounced_at")
assert set(_COUNTS + _RATES + _FIRSTS) == set(HIT_COLUMNS + INBOUND_COLUMNS)


def _merge(name: str, value: Any) -> Any:
    column = engagements.c[name]
    if name in _COUNTS:
        return column + value
    if name in _RATES:  # NULL (tracking off) on both sides or on neither
        return greatest(column, value)
    return func.coalesce(least(column, value), column, value)


@functools.cache
def _merge_statement(columns: tuple[str, ...], arrays: bool) -> Update:
    """One UPDATE for the whole batch. With `arrays` (PostgreSQL), each column's values go as
    one array, unnested side by side into the rows to join: one statement, not one per row."""
    names = ("target_id", *columns)
    types = {"target_id": engagements.c.email_id.type} | {
        name: engagements.c[name].type for name in columns
    }
    if arrays:
        given = select(
            *(func.unnest(bindparam(n, type_=ARRAY(types[n]))).label(n) for n in names)
        ).subquery("given")
        values = {name: given.c[name] for name in names}
    else:
        values = {name: bindparam(name, type_=types[name]) for name in names}
    return (
        update(engagements)
        .where(engagements.c.email_id == values["target_id"])
        .values({name: _merge(name, values[name]) for name in columns})
    )


def merge_into_engagements(
    connection: Connection,
    batch: dict[int, list[Tally]],
    flags: dict[int, tuple[bool, bool]],
    columns: tuple[str, ...],
) -> None:
    """Add each email's new tallies to its engagement row with one atomic UPDATE: no read, so
    writers in other processes cannot be missed. `flags`: (open tracking, click tracking)."""
    rows = []
    for email_id, tallies in sorted(batch.items()):
        opens, clicks = flags[email_id]
        values = engagement_values(tallies, open_tracking=opens, click_tracking=clicks)
        rows.append({"target_id": email_id, **{name: values[name] for name in columns}})
    if not rows:
        return
    arrays = takes_arrays(connection)
    statement = _merge_statement(columns, arrays)
    if arrays:
        connection.execute(statement, {name: [row[name] for row in rows] for name in rows[0]})
    else:
        connection.execute(statement, rows)


def _add_to_engagements(
    connection: Connection,
    new_events: list[dict[str, Any]],
    skip: set[int],
    known: dict[int, _Email],
) -> None:
    batch: dict[int, list[Tally]] = defaultdict(list)
    for event in new_events:
        if event["email_id"] not in skip:
            batch[event["email_id"]].append(Tally(event["kind"], event["machine"], 1, event["at"]))
    flags = {i: (known[i].open_tracking, known[i].click_tracking) for i in batch}
    merge_into_engagements(connection, batch, flags, HIT_COLUMNS)


def _recount_engagements(
    connection: Connection, email_ids: list[int], known: dict[int, _Email]
) -> None:
    """Emails whose stored hits were reclassified are recounted from all their events."""
    if not email_ids:
        return
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
    rows = []
    for email_id in email_ids:
        email = known[email_id]
        values = engagement_values(
            tallies[email_id],
            open_tracking=email.open_tracking,
            click_tracking=email.click_tracking,
        )
        rows.append({"target_id": email_id, **{name: values[name] for name in HIT_COLUMNS}})
    statement = update(engagements).where(engagements.c.email_id == bindparam("target_id"))
    connection.execute(statement, rows)
