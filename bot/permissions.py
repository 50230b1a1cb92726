"""Who may do what. Commands name their rule in the registry (`permission=`), and the registry
checks it before the handler runs; another user's campaign is refused by the lookup itself
(bot.context.find_campaign). Pure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.context import CommandFailed
from bot.users import User


def admin_when(asks: Callable[[Any], bool], refusal: str) -> Callable[[Any, User], str | None]:
    """A permission: a command that `asks` for this needs an admin; `refusal` says so."""

    def permission(command: Any, user: User) -> str | None:
        return refusal if asks(command) and not user.is_admin else None

    return permission


def check_send_size(user: User, recipients: int, threshold: int) -> None:
    if recipients > threshold and not user.is_admin:
        raise CommandFailed(
            f"sending to {recipients} endusers needs an admin (members may send to at most "
            f"{threshold}): narrow the audience or ask an admin"
        )
