"""Named leases in the database: at most one holder at a time, for a limited time that the
holder renews. The active worker holds one (DESIGN §9); a standby takes it over when it runs
out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError

from store.schema import leases


def take_lease(
    connection: Connection, name: str, owner: str, *, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the lease for `ttl` from now; False while someone else holds it."""
    renewed = connection.execute(
        update(leases)
        .where(leases.c.name == name, or_(leases.c.owner == owner, leases.c.expires_at < now))
        .values(owner=owner, expires_at=now + ttl)
    ).rowcount
    if renewed:
        return True
    try:
        with connection.begin_nested():
            connection.execute(insert(leases).values(name=name, owner=owner, expires_at=now + ttl))
    except IntegrityError:  # held by another, or just taken by one
        return False
    return True


def release_lease(connection: Connection, name: str, owner: str) -> None:
    connection.execute(delete(leases).where(leases.c.name == name, leases.c.owner == owner))
