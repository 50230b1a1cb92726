"""What every command handler shares: the context a command runs in, its reply, its failure,
and finding the template or campaign a user named (with the guard on who may see it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from bot.users import User
from outreach.mailbox import Mailbox
from outreach.oauth import OAuthSettings
from outreach.templates import StoredTemplate, latest_template
from store.clock import Clock, utcnow
from store.schema import campaigns
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner


class CommandFailed(Exception):
    """The command cannot be done as asked; the message says why and what to do instead."""


@dataclass(frozen=True)
class Reply:
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    needs_confirmation: bool = False
    job: int | None = None  # the durable job this command started, if any


@dataclass(frozen=True)
class Context:
    """Built in one place: mailbeacon.context.command_context()."""

    engine: Engine
    user: User
    tracking: TrackingSettings
    signer: TokenSigner
    admin_send_threshold: int
    mailbox_for: Callable[[User], Mailbox]  # a user's own mailbox
    clock: Clock = utcnow
    # What `alerts add … via` takes here: mailbeacon.channels.channel_names(settings).
    alert_channels: frozenset[str] = frozenset()
    # The OAuth apps mailboxes connect through (`/beacon connect`).
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    confirmed: bool = False  # the user confirmed (a button, `--yes`): a send goes out
    # Where the command came from, for a job to say how it ended: {"slack": {…}}; None: `cmd`.
    reply_to: dict[str, Any] | None = None


def find_template(connection: Connection, key: str) -> StoredTemplate:
    stored = latest_template(connection, key)
    if stored is None:
        raise CommandFailed(f"there is no template `{key}`: `/beacon templates` lists them")
    return stored


def find_campaign(connection: Connection, name: str, user: User) -> Any:
    """A campaign by number (12, #12) or by name (the newest of that name the user sent).
    Someone else's campaign is refused here, so no command can forget to check."""
    query = select(campaigns)
    if name.lstrip("#").isdigit():
        query = query.where(campaigns.c.id == int(name.lstrip("#")))
    else:
        query = query.where(campaigns.c.name == name, campaigns.c.sender_user_id == user.id)
    found = connection.execute(query.order_by(campaigns.c.id.desc()).limit(1)).first()
    if found is None:
        raise CommandFailed(f"there is no campaign `{name}`: `/beacon campaigns` lists yours")
    if found.sender_user_id != user.id and not user.is_admin:
        raise CommandFailed(
            "that campaign was sent by someone else: only an admin may look into other "
            "people's campaigns (`/beacon campaigns` lists yours)"
        )
    return found
