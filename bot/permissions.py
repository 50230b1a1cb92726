"""Who may do what: one guard, consulted before a command runs. Pure."""

from __future__ import annotations

from typing import Any

from bot.commands import AlertsAdd, Campaigns, Command


class Forbidden(Exception):
    """The user may not do this; the message says who may."""


def check_command(command: Command, user: Any) -> None:
    if isinstance(command, Campaigns) and command.scope == "all" and user.role != "admin":
        raise Forbidden("only an admin may list everyone's campaigns: try `/beacon campaigns`")
    if isinstance(command, AlertsAdd) and command.everyone and user.role != "admin":
        raise Forbidden(
            "only an admin may hear about everyone's emails: leave out `from everyone` to hear "
            "about your own"
        )


def check_send_size(user: Any, recipients: int, threshold: int) -> None:
    if recipients > threshold and user.role != "admin":
        raise Forbidden(
            f"sending to {recipients} endusers needs an admin (members may send to at most "
            f"{threshold}): narrow the audience or ask an admin"
        )


def check_campaign_access(user: Any, campaign_owner_id: int | None) -> None:
    if campaign_owner_id != user.id and user.role != "admin":
        raise Forbidden(
            "that campaign was sent by someone else: only an admin may look into other "
            "people's campaigns (`/beacon campaigns` lists yours)"
        )
