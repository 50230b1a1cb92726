"""Internal users: who may run commands, and whose mailbox a send goes out from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, func, select, update

from store.schema import users


@dataclass(frozen=True)
class UserSettings:
    email: str
    name: str = ""
    role: Literal["member", "admin"] = "member"
    timezone: str = "UTC"
    # "22:00-07:00" in the user's time zone: alerts wait until it ends. Empty: never quiet.
    quiet_hours: str = ""
    slack_user_id: str = ""


def sync_config_users(connection: Connection, configured: Sequence[UserSettings]) -> None:
    """Users listed in config exist with the name, role and time zone given there, and the
    quiet hours when config gives them."""
    for user in configured:
        values = {
            "name": user.name,
            "role": user.role,
            "timezone": user.timezone,
            "slack_user_id": user.slack_user_id or None,
        }
        if user.quiet_hours:  # else as the user set them (`/beacon alerts quiet`)
            values["quiet_hours"] = user.quiet_hours
        email = user.email.strip().lower()
        changed = connection.execute(
            update(users).where(func.lower(users.c.email) == email).values(values)
        ).rowcount
        if not changed:
            connection.execute(users.insert().values(email=email, **values))


@dataclass(frozen=True)
class User:
    """An internal user, as commands see who is asking."""

    id: int
    email: str
    name: str
    role: str  # member | admin
    timezone: str
    quiet_hours: str | None
    slack_user_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def display_name(self) -> str:
        return self.name or self.email


def _user(row: Any) -> User:
    return User(
        row.id, row.email, row.name, row.role, row.timezone, row.quiet_hours, row.slack_user_id
    )


def find_user(connection: Connection, email: str) -> User | None:
    query = select(users).where(func.lower(users.c.email) == email.strip().lower())
    row = connection.execute(query).first()
    return None if row is None else _user(row)


def user_by_id(connection: Connection, user_id: int) -> User | None:
    row = connection.execute(select(users).where(users.c.id == user_id)).first()
    return None if row is None else _user(row)


def user_by_slack_id(connection: Connection, slack_user_id: str) -> User | None:
    row = connection.execute(select(users).where(users.c.slack_user_id == slack_user_id)).first()
    return None if row is None else _user(row)


def link_slack_user(
    connection: Connection,
    slack_user_id: str,
    email: str,
    name: str,
    internal_domains: Sequence[str],
) -> User | None:
    """The internal user a Slack member is, by the email Slack reports: a configured user, or a
    new member when the address is of an internal domain. None for anyone else."""
    address = email.strip().lower()
    found = find_user(connection, address)
    if found is not None:
        if found.slack_user_id not in (None, slack_user_id):
            return None  # that user is linked to another Slack member (config says so)
        connection.execute(
            update(users).where(users.c.id == found.id).values(slack_user_id=slack_user_id)
        )
        return user_by_slack_id(connection, slack_user_id)
    domain = address.rpartition("@")[2]
    if not any(domain == d.lower() or domain.endswith(f".{d.lower()}") for d in internal_domains):
        return None
    connection.execute(users.insert().values(email=address, name=name, slack_user_id=slack_user_id))
    return user_by_slack_id(connection, slack_user_id)
