"""Named leases in the database: at most one holder at a time, for a limited time that the
holder renews. The active worker holds one (DESIGN §9); a standby takes it over when it runs
out."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from store.schema import leases


def take_lease(
    connection: Connection, name: str, owner: str, *, now: datetime, ttl: timedelta
) -> bool:
    """Take or renew the lease for `ttl` from now; False while someone else holds it. A holder
    that is a dead process of this machine holds it no longer."""
    holder = connection.scalar(select(leases.c.owner).where(leases.c.name == name))
    gone = holder is not None and holder != owner and holder_gone(holder)
    renewed = connection.execute(
        update(leases)
        .where(
            leases.c.name == name,
            or_(leases.c.owner == (holder if gone else owner), leases.c.expires_at < now),
        )
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


def holder_name() -> str:
    """A lease holder's name: this machine, this process, and a tag for the holder within it."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def holder_gone(holder: str) -> bool:
    """Whether `holder` (made by holder_name) was a process of this machine that has died,
    so its leases can be taken at once rather than when they run out."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is as good as dead
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state == "Z"
