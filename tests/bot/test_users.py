"""Users from config: created, then kept as config says, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from bot.users import UserSettings, find_user, sync_config_users


def test_config_users_are_created_and_follow_later_changes(engine: Engine) -> None:
    maria = UserSettings("Maria@US.example", "Maria", "admin", "Europe/Berlin", "22:00-07:00")
    with engine.begin() as connection:
        sync_config_users(connection, [maria])
        first = find_user(connection, "maria@us.example")
    assert first is not None
    assert (first.role, first.timezone, first.quiet_hours) == (
        "admin",
        "Europe/Berlin",
        "22:00-07:00",
    )
    with engine.begin() as connection:
        sync_config_users(connection, [UserSettings("maria@us.example", "Maria K.")])
        row = find_user(connection, "MARIA@us.example")
    assert row is not None
    # Config without quiet hours leaves those the user set (`/beacon alerts quiet`).
    assert (row.email, row.name, row.role, row.timezone, row.quiet_hours) == (
        "maria@us.example",
        "Maria K.",
        "member",
        "UTC",
        "22:00-07:00",
    )
