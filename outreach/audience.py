"""Who an email goes to: a list of addresses, a cohort (tracking/cohorts.py) or a filter
(outreach/filters.py). Resolving one reads the endusers, and creates those of a list that are not
known yet."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    select,
)

from outreach.filter_sql import audience_select, to_sql
from outreach.filters import AudienceError, parse
from outreach.importer import CompanyDirectory, CompanyRef, normalize_email
from store.clock import utcnow
from store.schema import companies, endusers
from tracking.cohorts import cohort_select, parse_cohort

# --- Resolving an audience against the database ----------------------------------------------


@dataclass(frozen=True)
class Audience:
    # Who gets the email: endusers columns + company_name, in the audience's order (the first is
    # a group email's first To recipient, credited with its outcomes; see resolve_audience).
    endusers: list[Row[Any]]
    excluded_bounced: list[str] = field(default_factory=list)  # left out; `force` includes them
    tracking_off: list[str] = field(default_factory=list)  # emailed, but opted out of tracking
    created: list[str] = field(default_factory=list)  # new endusers made from the address list

    def summary(self) -> str:
        notes = []
        if self.created:
            notes.append(f"{len(self.created)} new: added to the endusers")
        if self.excluded_bounced:
            notes.append(
                f"{len(self.excluded_bounced)} bounced left out: use force to include them"
            )
        if self.tracking_off:
            notes.append(f"{len(self.tracking_off)} without tracking: opted out")
        count = len(self.endusers)
        head = f"{count} {'enduser' if count == 1 else 'endusers'}"
        return f"{head} ({'; '.join(notes)})" if notes else head


_SEPARATORS = re.compile(r"[^\s,;]+")


def parse_addresses(text: str) -> list[str] | None:
    """The addresses (normalized, each once) if the text is a list of them, that is if its first
    word holds an @; None for a filter."""
    items = list(_SEPARATORS.finditer(text))
    if not items or "@" not in items[0].group():
        return None
    addresses: list[str] = []
    for item in items:
        try:
            address = normalize_email(item.group())
        except ValueError:
            raise AudienceError(
                f"{item.group()!r} is not an email address: list addresses like "
                "dana@acme.example, separated by commas or spaces",
                item.start(),
            ) from None
        if address not in addresses:
            addresses.append(address)
    return addresses


def resolve_audience(
    connection: Connection,
    text: str,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> Audience:
    """Who `text` sends to: addresses, a cohort (`cohort unengaged outage since 30d`, as of
    `now`, by default the current time) or a filter. Addresses not yet known become endusers
    (written on `connection`: roll back for a preview). Bounced endusers are left out unless
    `force`.

    The order: an address list keeps the order it was typed in (each address once, where it
    first appears). A cohort or a filter is ordered by name, ignoring case, then by email; the
    endusers without a name come after those with one, by email. `excluded_bounced` and
    `tracking_off` follow the same order."""
    addresses = parse_addresses(text)
    if addresses is not None:
        created = _create_endusers(connection, addresses)
        rows = connection.execute(audience_select(endusers.c.email.in_(addresses))).all()
        typed = {address: index for index, address in enumerate(addresses)}
        ordered = sorted(rows, key=lambda row: typed[row.email])
        return _split(ordered, force=force, created=created)
    cohort = parse_cohort(text)
    if cohort is None:
        where = to_sql(parse(text))
    else:
        ids = cohort_select(connection, cohort, now=utcnow() if now is None else now)
        where = endusers.c.id.in_(ids)
    rows = connection.execute(audience_select(where)).all()
    return _split(sorted(rows, key=_by_name), force=force, created=[])


def _by_name(row: Row[Any]) -> tuple[bool, str, str]:
    name: str = row.name.strip()
    return (not name, name.casefold(), row.email)


def _split(rows: Sequence[Row[Any]], *, force: bool, created: list[str]) -> Audience:
    chosen: list[Row[Any]] = []
    bounced: list[Row[Any]] = []
    for row in rows:
        (bounced if row.bounced_at is not None and not force else chosen).append(row)
    return Audience(
        endusers=chosen,
        excluded_bounced=[row.email for row in bounced],
        tracking_off=[row.email for row in chosen if row.tracking_opt_out],
        created=created,
    )


def _create_endusers(connection: Connection, addresses: list[str]) -> list[str]:
    """Create the addresses not yet known, each with the company of its email's domain."""
    query = select(endusers.c.email).where(endusers.c.email.in_(addresses))
    known = set(connection.scalars(query))
    new = [address for address in addresses if address not in known]
    if not new:
        return []
    refs = connection.execute(select(companies.c.id, companies.c.name, companies.c.domain))
    directory = CompanyDirectory([CompanyRef(r.id, r.name, r.domain) for r in refs])
    rows: list[dict[str, Any]] = []
    for address in new:
        company = directory.for_email(address)
        company_id = None if company is None else company.id
        rows.append({"email": address, "company_id": company_id, "attributes": {}})
    connection.execute(endusers.insert(), rows)
    return new
