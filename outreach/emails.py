"""An outgoing email's records: the emails row, its engagement row and its tracked links."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update

from store.schema import emails, endusers, engagements, links
from tracking.instrument import Instrumented, TrackingFlags, instrument
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner


@dataclass(frozen=True)
class Draft:
    idempotency_key: str
    to: list[str]
    subject: str
    html: str
    text: str
    flags: TrackingFlags
    cc: list[str] = field(default_factory=list)
    enduser_id: int | None = None  # the FIRST To recipient: outcomes are credited to them
    sender_user_id: int | None = None
    mailbox_id: int | None = None
    campaign_id: int | None = None
    template_id: int | None = None
    template_key: str = ""
    thread_id: str | None = None
    in_reply_to: str | None = None


def effective_flags(
    requested: TrackingFlags, settings: TrackingSettings, enduser_opted_out: bool
) -> TrackingFlags:
    """Tracking is off when switched off globally or when the enduser opted out."""
    if not settings.enabled or enduser_opted_out:
        return TrackingFlags(opens=False, clicks=False)
    return requested


def create_email(
    connection: Connection, draft: Draft, signer: TokenSigner, settings: TrackingSettings
) -> tuple[int, Instrumented]:
    """Plan one email: its row, engagement row and link rows, and the instrumented body."""
    opted_out = False
    if draft.enduser_id is not None:
        opted_out = bool(
            connection.scalar(
                select(endusers.c.tracking_opt_out).where(endusers.c.id == draft.enduser_id)
            )
        )
    flags = effective_flags(draft.flags, settings, opted_out)
    email_id: int = connection.execute(
        emails.insert()
        .values(
            idempotency_key=draft.idempotency_key,
            to_addrs=draft.to,
            cc_addrs=draft.cc,
            subject=draft.subject,
            enduser_id=draft.enduser_id,
            sender_user_id=draft.sender_user_id,
            mailbox_id=draft.mailbox_id,
            campaign_id=draft.campaign_id,
            template_id=draft.template_id,
            thread_id=draft.thread_id,
            in_reply_to=draft.in_reply_to,
            open_tracking=flags.opens,
            click_tracking=flags.clicks,
        )
        .returning(emails.c.id)
    ).scalar_one()
    connection.execute(
        engagements.insert().values(
            email_id=email_id,
            enduser_id=draft.enduser_id,
            campaign_id=draft.campaign_id,
            template_id=draft.template_id,
            sender_user_id=draft.sender_user_id,
            open_rate=0 if flags.opens else None,
            open_rate_raw=0 if flags.opens else None,
            click_rate=0 if flags.clicks else None,
            click_rate_raw=0 if flags.clicks else None,
        )
    )
    result = instrument(
        draft.html,
        draft.text,
        email_id=email_id,
        flags=flags,
        signer=signer,
        base_url=settings.base_url,
        utm=settings.utm,
        utm_context={"campaign": str(draft.campaign_id or ""), "template": draft.template_key},
        honeypot=settings.honeypot,
    )
    if result.links:
        connection.execute(
            links.insert(),
            [
                {"email_id": email_id, "idx": link.idx, "url": link.url, "honeypot": link.honeypot}
                for link in result.links
            ],
        )
    return email_id, result


def mark_sent(
    connection: Connection, email_id: int, *, message_id: str, sent_at: datetime, **extra: Any
) -> None:
    connection.execute(
        update(emails)
        .where(emails.c.id == email_id)
        .values(status="sent", message_id=message_id, sent_at=sent_at, **extra)
    )
    connection.execute(
        update(engagements).where(engagements.c.email_id == email_id).values(sent_at=sent_at)
    )
