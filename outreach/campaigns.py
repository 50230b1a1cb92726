"""A campaign is an outbox: every email is planned (rendered, instrumented, stored whole with a
unique key) before the first one leaves; a sender holding the campaign's lease then sends them
one by one, marking each before and after the provider call. Restarting resumes where it
stopped: nothing is sent twice and nobody is skipped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select, update

from outreach.emails import Draft, create_email, mark_sent
from outreach.mailbox import (
    DailyLimitReached,
    Delivered,
    Mailbox,
    MailboxError,
    PermanentFailure,
)
from outreach.maildir import build_message
from store.clock import Clock, utcnow
from store.schema import campaigns, emails
from tracking.instrument import TrackingFlags
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

LEASE = timedelta(seconds=60)
MAX_ATTEMPTS = 5
MAX_WAIT = LEASE / 3  # the longest Retry-After slept through while holding the lease


@dataclass(frozen=True)
class Outgoing:
    """One rendered email of a campaign, before tracking is added."""

    to: list[str]
    subject: str
    html: str
    text: str
    enduser_id: int | None  # the first To recipient
    cc: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CampaignPlan:
    name: str
    sender_address: str
    flags: TrackingFlags
    mode: Literal["individual", "group"] = "individual"
    audience: str = ""
    template_id: int | None = None
    template_key: str = ""
    sender_user_id: int | None = None
    mailbox_id: int | None = None


class CampaignBusy(Exception):
    """Another sender holds the campaign's lease, or the campaign is not sendable."""


@dataclass
class RunReport:
    sent: int = 0
    found_already_sent: int = 0  # in flight when a sender stopped, found at the provider
    failed: int = 0
    paused: str | None = None


def plan_campaign(
    connection: Connection,
    plan: CampaignPlan,
    outgoing: Sequence[Outgoing],
    signer: TokenSigner,
    tracking: TrackingSettings,
) -> int:
    """Write the campaign and every one of its emails, whole, in the caller's transaction."""
    campaign_id: int = connection.execute(
        campaigns.insert()
        .values(
            name=plan.name,
            template_id=plan.template_id,
            audience=plan.audience,
            mode=plan.mode,
            track_opens=plan.flags.opens,
            track_clicks=plan.flags.clicks,
            sender_user_id=plan.sender_user_id,
            mailbox_id=plan.mailbox_id,
            status="sending",
            planned_count=len(outgoing),
        )
        .returning(campaigns.c.id)
    ).scalar_one()
    for position, email in enumerate(outgoing):
        draft = Draft(
            idempotency_key=f"campaign-{campaign_id}-{position}",
            to=email.to,
            cc=email.cc,
            subject=email.subject,
            html=email.html,
            text=email.text,
            flags=plan.flags,
            enduser_id=email.enduser_id,
            sender_user_id=plan.sender_user_id,
            mailbox_id=plan.mailbox_id,
            campaign_id=campaign_id,
            template_id=plan.template_id,
            template_key=plan.template_key,
        )
        email_id, body = create_email(connection, draft, signer, tracking)
        message = build_message(
            sender=plan.sender_address,
            to=email.to,
            cc=email.cc,
            subject=email.subject,
            html=body.html,
            text=body.text,
        )
        connection.execute(
            update(emails)
            .where(emails.c.id == email_id)
            .values(message_id=message["Message-ID"], mime=message.as_bytes())
        )
    return campaign_id


def run_campaign(
    engine: Engine,
    campaign_id: int,
    mailbox: Mailbox,
    *,
    owner: str,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
) -> RunReport:
    """Send what is left of the campaign; returns when it is done or paused."""
    _take_lease(engine, campaign_id, owner, clock)
    report = RunReport()
    try:
        while (email := _next_email(engine, campaign_id)) is not None:
            if email.status == "sending":
                # It was in flight when a sender stopped: ask the provider before sending again.
                delivered = mailbox.find_sent(email.message_id)
                if delivered is not None:
                    _mark_sent(engine, campaign_id, email.id, delivered, owner, clock)
                    report.found_already_sent += 1
                    continue
            else:
                _mark_sending(engine, campaign_id, email.id, owner, clock)
            try:
                delivered = _send_with_retries(mailbox, _message(email.mime), sleep)
            except DailyLimitReached as exc:
                report.paused = f"{mailbox.address} reached its daily sending limit: {exc}"
                _set_status(engine, campaign_id, "paused", report.paused)
                return report
            except PermanentFailure as exc:
                _mark_failed(engine, campaign_id, email.id, str(exc))
                report.failed += 1
                continue
            except MailboxError as exc:
                report.paused = f"{mailbox.address} kept failing, try again later: {exc}"
                _set_status(engine, campaign_id, "paused", report.paused)
                return report
            _mark_sent(engine, campaign_id, email.id, delivered, owner, clock)
            report.sent += 1
        _set_status(engine, campaign_id, "sent", None)
        return report
    finally:
        _release_lease(engine, campaign_id, owner)


def _send_with_retries(
    mailbox: Mailbox, message: EmailMessage, sleep: Callable[[float], None]
) -> Delivered:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return mailbox.send(message)
        except (DailyLimitReached, PermanentFailure):
            raise
        except MailboxError as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            wait = exc.retry_after if exc.retry_after is not None else 2.0**attempt
            if wait > MAX_WAIT.total_seconds():
                # Waiting while holding the lease could let it run out and another sender
                # take over the email in flight: pause instead, and resume later.
                raise MailboxError(f"{exc} (asked to wait {wait:.0f} s)") from None
            sleep(wait)
    raise AssertionError("unreachable")


def _message(mime: bytes) -> EmailMessage:
    message = message_from_bytes(mime, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _next_email(engine: Engine, campaign_id: int) -> Any:
    with engine.connect() as connection:
        query = (
            select(emails.c.id, emails.c.status, emails.c.message_id, emails.c.mime)
            .where(emails.c.campaign_id == campaign_id, emails.c.status.in_(("planned", "sending")))
            .order_by(emails.c.id)
            .limit(1)
        )
        return connection.execute(query).first()


def _mark_sending(
    engine: Engine, campaign_id: int, email_id: int, owner: str, clock: Clock
) -> None:
    with engine.begin() as connection:
        if not _renew_lease(connection, campaign_id, owner, clock):
            _lost_lease(campaign_id, owner)
        connection.execute(update(emails).where(emails.c.id == email_id).values(status="sending"))


def _renew_lease(connection: Connection, campaign_id: int, owner: str, clock: Clock) -> bool:
    """Only the lease holder sends: one that lost its lease (stalled past LEASE) stops."""
    renewed: int = connection.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, campaigns.c.lease_owner == owner)
        .values(lease_expires_at=clock() + LEASE)
    ).rowcount
    return renewed == 1


def _lost_lease(campaign_id: int, owner: str) -> None:
    raise CampaignBusy(f"campaign {campaign_id}: {owner} lost its lease and stops")


def _mark_sent(
    engine: Engine, campaign_id: int, email_id: int, delivered: Delivered, owner: str, clock: Clock
) -> None:
    with engine.begin() as connection:
        # What the provider accepted is recorded even if the lease was lost meanwhile.
        mark_sent(
            connection,
            email_id,
            message_id=delivered.message_id,
            sent_at=clock(),
            provider_message_id=delivered.provider_message_id,
            thread_id=delivered.thread_id,
        )
        connection.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id)
            .values(sent_count=campaigns.c.sent_count + 1)
        )
        renewed = _renew_lease(connection, campaign_id, owner, clock)
    if not renewed:
        _lost_lease(campaign_id, owner)


def _mark_failed(engine: Engine, campaign_id: int, email_id: int, error: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(emails).where(emails.c.id == email_id).values(status="failed", error=error)
        )
        connection.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id)
            .values(failed_count=campaigns.c.failed_count + 1)
        )


def _take_lease(engine: Engine, campaign_id: int, owner: str, clock: Clock) -> None:
    now = clock()
    with engine.begin() as connection:
        taken = connection.execute(
            update(campaigns)
            .where(
                campaigns.c.id == campaign_id,
                campaigns.c.status.in_(("sending", "paused")),
                (campaigns.c.lease_owner.is_(None))
                | (campaigns.c.lease_owner == owner)
                | (campaigns.c.lease_expires_at.is_(None))
                | (campaigns.c.lease_expires_at < now),
            )
            .values(lease_owner=owner, lease_expires_at=now + LEASE, status="sending")
        ).rowcount
        if taken:
            return
        row = connection.execute(
            select(campaigns.c.status, campaigns.c.lease_owner).where(campaigns.c.id == campaign_id)
        ).first()
    if row is None:
        raise CampaignBusy(f"there is no campaign {campaign_id}")
    if row.status not in ("sending", "paused"):
        raise CampaignBusy(f"campaign {campaign_id} is {row.status}: there is nothing to send")
    raise CampaignBusy(f"campaign {campaign_id} is being sent by {row.lease_owner} right now")


def _release_lease(engine: Engine, campaign_id: int, owner: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id, campaigns.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def _set_status(engine: Engine, campaign_id: int, status: str, reason: str | None) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(campaigns)
            .where(campaigns.c.id == campaign_id)
            .values(status=status, status_reason=reason)
        )
