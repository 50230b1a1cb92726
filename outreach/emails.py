"""An outgoing email's records: the emails row, its engagement row and its tracked links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Connection, bindparam, select, update

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
    [created] = create_emails(connection, [draft], signer, settings)
    return created


def create_emails(
    connection: Connection, drafts: Sequence[Draft], signer: TokenSigner, settings: TrackingSettings
) -> list[tuple[int, Instrumented]]:
    """Plan many emails with a handful of statements, whatever their number."""
    enduser_ids = sorted({d.enduser_id for d in drafts if d.enduser_id is not None})
    opted_out = set(
        connection.scalars(
            select(endusers.c.id).where(endusers.c.id.in_(enduser_ids), endusers.c.tracking_opt_out)
        )
    )
    flags = [effective_flags(d.flags, settings, d.enduser_id in opted_out) for d in drafts]
    email_ids: list[int] = list(
        connection.scalars(
            emails.insert().returning(emails.c.id, sort_by_parameter_order=True),
            [
                {
                    "idempotency_key": d.idempotency_key,
                    "to_addrs": d.to,
                    "cc_addrs": d.cc,
                    "subject": d.subject,
                    "enduser_id": d.enduser_id,
                    "sender_user_id": d.sender_user_id,
                    "mailbox_id": d.mailbox_id,
                    "campaign_id": d.campaign_id,
                    "template_id": d.template_id,
                    "thread_id": d.thread_id,
                    "in_reply_to": d.in_reply_to,
                    "open_tracking": f.opens,
                    "click_tracking": f.clicks,
                }
                for d, f in zip(drafts, flags, strict=True)
            ],
        )
    )
    connection.execute(
        engagements.insert(),
        [
            {
                "email_id": email_id,
                "enduser_id": d.enduser_id,
                "campaign_id": d.campaign_id,
                "template_id": d.template_id,
                "sender_user_id": d.sender_user_id,
                "open_rate": 0 if f.opens else None,
                "open_rate_raw": 0 if f.opens else None,
                "click_rate": 0 if f.clicks else None,
                "click_rate_raw": 0 if f.clicks else None,
            }
            for email_id, d, f in zip(email_ids, drafts, flags, strict=True)
        ],
    )
    bodies = [
        instrument(
            d.html,
            d.text,
            email_id=email_id,
            flags=f,
            signer=signer,
            base_url=settings.base_url,
            utm=settings.utm,
            utm_context={"campaign": str(d.campaign_id or ""), "template": d.template_key},
            honeypot=settings.honeypot,
        )
        for email_id, d, f in zip(email_ids, drafts, flags, strict=True)
    ]
    link_rows = [
        {"email_id": email_id, "idx": link.idx, "url": link.url, "honeypot": link.honeypot}
        for email_id, body in zip(email_ids, bodies, strict=True)
        for link in body.links
    ]
    if link_rows:
        connection.execute(links.insert(), link_rows)
    return list(zip(email_ids, bodies, strict=True))


def mark_sent(
    connection: Connection, email_id: int, *, message_id: str, sent_at: datetime, **extra: Any
) -> None:
    mark_sent_many(
        connection, [{"email_id": email_id, "message_id": message_id, "sent_at": sent_at, **extra}]
    )


def mark_sent_many(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each row: email_id, message_id, sent_at, and optionally provider_message_id, thread_id."""
    if not rows:
        return
    emails_rows = [
        {
            "target": row["email_id"],
            "status": "sent",
            **{k: v for k, v in row.items() if k != "email_id"},
        }
        for row in rows
    ]
    target: BindParameter[int] = bindparam("target")
    connection.execute(update(emails).where(emails.c.id == target), emails_rows)
    connection.execute(
        update(engagements).where(engagements.c.email_id == target),
        [{"target": row["email_id"], "sent_at": row["sent_at"]} for row in rows],
    )
