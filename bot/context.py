"""What every command handler shares: the context a command runs in, its reply, its failure,
and finding the template or campaign a user named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from outreach.mailbox import Mailbox
from outreach.templates import StoredTemplate, latest_template
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


@dataclass(frozen=True)
class Context:
    engine: Engine
    user: Any  # the users row of who is asking
    tracking: TrackingSettings
    signer: TokenSigner
    admin_send_threshold: int
    mailbox_for: Callable[[Any], Mailbox]  # a user's own mailbox
    progress: Callable[[str], None] = lambda line: None  # long work says how far it got
    # What `alerts add … via` takes here: mailbeacon.channels.channel_names(settings).
    alert_channels: frozenset[str] = frozenset()


def find_template(connection: Connection, key: str) -> StoredTemplate:
    stored = latest_template(connection, key)
    if stored is None:
        raise CommandFailed(f"there is no template `{key}`: `/beacon templates` lists them")
    return stored


def find_campaign(connection: Connection, name: str, user: Any) -> Any:
    """A campaign by number (12, #12) or by name (the newest of that name the user sent)."""
    query = select(campaigns)
    if name.lstrip("#").isdigit():
        query = query.where(campaigns.c.id == int(name.lstrip("#")))
    else:
        query = query.where(campaigns.c.name == name, campaigns.c.sender_user_id == user.id)
    found = connection.execute(query.order_by(campaigns.c.id.desc()).limit(1)).first()
    if found is None:
        raise CommandFailed(f"there is no campaign `{name}`: `/beacon campaigns` lists yours")
    return found
