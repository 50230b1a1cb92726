"""A user's alert rules: add, list, remove, and say in words what one does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select

from store.schema import campaigns, companies, subscriptions

_DONE = {"open": "opens", "click": "clicks a link in", "reply": "replies to"}
_CHANNELS = {"slack": "in Slack", "email": "by email", "desktop": "on your desktop"}


@dataclass(frozen=True)
class NewRule:
    event_kind: str
    channel: str
    template_key: str | None = None
    campaign_id: int | None = None
    company_id: int | None = None
    everyone: bool = False  # everyone's emails, not only the user's own
    include_machine: bool = False
    first_only: bool = False


def add_subscription(connection: Connection, user_id: int, rule: NewRule) -> int:
    return int(
        connection.execute(
            subscriptions.insert()
            .values(
                user_id=user_id,
                event_kind=rule.event_kind,
                channel=rule.channel,
                template_key=rule.template_key,
                campaign_id=rule.campaign_id,
                company_id=rule.company_id,
                sender_scope="all" if rule.everyone else "mine",
                human_only=not rule.include_machine,
                throttle="first" if rule.first_only else "every",
            )
            .returning(subscriptions.c.id)
        ).scalar_one()
    )


def list_subscriptions(connection: Connection, user_id: int) -> list[Any]:
    """The user's rules, oldest first, with the names of what they narrow to."""
    query = (
        select(
            subscriptions,
            campaigns.c.name.label("campaign_name"),
            companies.c.name.label("company_name"),
        )
        .select_from(
            subscriptions.outerjoin(
                campaigns, campaigns.c.id == subscriptions.c.campaign_id
            ).outerjoin(companies, companies.c.id == subscriptions.c.company_id)
        )
        .where(subscriptions.c.user_id == user_id)
        .order_by(subscriptions.c.id)
    )
    return list(connection.execute(query))


def remove_subscription(connection: Connection, user_id: int, subscription_id: int) -> bool:
    """Remove one of the user's own rules; False when they have none by that id."""
    removed = connection.execute(
        delete(subscriptions).where(
            subscriptions.c.id == subscription_id, subscriptions.c.user_id == user_id
        )
    )
    return removed.rowcount == 1


def in_words(row: Any) -> str:
    """`#3: when someone opens one of your emails from template outage (the first time), by
    email`: what a rule listed by list_subscriptions() does."""
    whose = "anyone's email" if row.sender_scope == "all" else "one of your emails"
    narrowed = []
    if row.template_key:
        narrowed.append(f"from template {row.template_key}")
    if row.campaign_id is not None:
        name = f" ({row.campaign_name})" if row.campaign_name else ""
        narrowed.append(f"in campaign #{row.campaign_id}{name}")
    if row.company_id is not None:
        narrowed.append(f"sent to {row.company_name}")
    notes = []
    if row.throttle == "first":
        notes.append("the first time")
    if not row.human_only:
        notes.append("machines included")
    if row.event_kind == "bounce":
        head = f"when {whose} bounces"
    else:
        head = f"when someone {_DONE[row.event_kind]} {whose}"
    text = " ".join([head, *narrowed])
    if notes:
        text += f" ({', '.join(notes)})"
    return f"#{row.id}: {text}, {_CHANNELS.get(row.channel, row.channel)}"
