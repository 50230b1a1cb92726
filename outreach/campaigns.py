"""A campaign is an outbox: every email is planned (rendered, instrumented, stored whole with a
unique key) before the first one leaves; a sender holding the campaign's lease then sends them
in order, a chunk at a time, marking each chunk "sending" before the provider calls and each
email's outcome after them. Restarting first asks the provider about every email that was
"sending": nothing is sent twice and nobody is skipped."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Literal

from sqlalchemy import Connection, Engine, bindparam, select, update

from outreach.emails import Draft, create_emails, mark_sent_many
from outreach.mailbox import (
    DailyLimitReached,
    Delivered,
    Mailbox,
    MailboxError,
    PermanentFailure,
)
from outreach.maildir import build_message
from store.clock import Clock, utcnow
from store.leases import holder_gone
from store.schema import campaigns, emails
from tracking.instrument import TrackingFlags
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

CHUNK = 50  # emails marked "sending" together: after a crash each is looked up at the provider
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
    # A follow-up campaign: each enduser's email goes into the thread of the one they got in
    # this earlier campaign (In-Reply-To, References, "Re:" subject, the provider's thread).
    follow_up_of: int | None = None


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
    earlier = earlier_emails(connection, plan.follow_up_of)
    previous = [earlier.get(email.enduser_id) for email in outgoing]  # None: not a follow-up
    drafts = []
    for position, (email, before) in enumerate(zip(outgoing, previous, strict=True)):
        drafts.append(
            Draft(
                idempotency_key=f"campaign-{campaign_id}-{position}",
                to=email.to,
                cc=email.cc,
                subject=reply_subject(before.subject) if before else email.subject,
                html=email.html,
                text=email.text,
                flags=plan.flags,
                enduser_id=email.enduser_id,
                sender_user_id=plan.sender_user_id,
                mailbox_id=plan.mailbox_id,
                campaign_id=campaign_id,
                template_id=plan.template_id,
                template_key=plan.template_key,
                thread_id=before.thread_id if before else None,
                in_reply_to=before.message_id if before else None,
            )
        )
    messages = []
    created = create_emails(connection, drafts, signer, tracking)
    for (email_id, body), draft, before in zip(created, drafts, previous, strict=True):
        message = build_message(
            sender=plan.sender_address,
            to=draft.to,
            cc=draft.cc,
            subject=draft.subject,
            html=body.html,
            text=body.text,
            in_reply_to=draft.in_reply_to,
            references=[before.in_reply_to] if before and before.in_reply_to else None,
        )
        messages.append(
            {"target": email_id, "message_id": message["Message-ID"], "mime": message.as_bytes()}
        )
    if messages:
        connection.execute(update(emails).where(emails.c.id == bindparam("target")), messages)
    return campaign_id


def earlier_emails(connection: Connection, campaign_id: int | None) -> dict[int | None, Any]:
    """The sent emails of an earlier campaign, by enduser."""
    if campaign_id is None:
        return {}
    query = select(
        emails.c.enduser_id,
        emails.c.subject,
        emails.c.message_id,
        emails.c.thread_id,
        emails.c.in_reply_to,
    ).where(
        emails.c.campaign_id == campaign_id,
        emails.c.status == "sent",
        emails.c.enduser_id.is_not(None),  # so an email to nobody known never matches
    )
    return {row.enduser_id: row for row in connection.execute(query)}


def reply_subject(subject: str) -> str:
    return subject if subject[:3].lower() == "re:" else f"Re: {subject}"


def run_campaign(
    engine: Engine,
    campaign_id: int,
    mailbox: Mailbox,
    *,
    owner: str,
    clock: Clock = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[RunReport], None] = lambda report: None,
) -> RunReport:
    """Send what is left of the campaign; returns when it is done or paused. `progress` hears
    the report after every chunk."""
    _take_lease(engine, campaign_id, owner, clock)
    report = RunReport()
    try:
        # In flight when a sender stopped: ask the provider before sending any of it again.
        for email in _emails(engine, campaign_id, "sending"):
            delivered = mailbox.find_sent(email.message_id)
            found = [(email.id, delivered)] if delivered else []
            unsent = [] if delivered else [email.id]
            _record(engine, campaign_id, owner, clock, sent=found, unsent=unsent)
            report.found_already_sent += len(found)
        after = 0
        while chunk := _emails(engine, campaign_id, "planned", after=after):
            after = chunk[-1].id
            _record(engine, campaign_id, owner, clock, sending=[email.id for email in chunk])
            sent: list[tuple[int, Delivered]] = []
            failed: list[tuple[int, str]] = []
            for email in chunk:
                try:
                    message = _message(email.mime)
                    delivered = _send_with_retries(mailbox, message, email.thread_id, sleep)
                except PermanentFailure as exc:
                    failed.append((email.id, str(exc)))
                    continue
                except DailyLimitReached as exc:
                    report.paused = f"{mailbox.address} reached its daily sending limit: {exc}"
                    break
                except MailboxError as exc:
                    report.paused = f"{mailbox.address} kept failing, try again later: {exc}"
                    break
                sent.append((email.id, delivered))
            done = {email_id for email_id, _ in sent} | {email_id for email_id, _ in failed}
            unsent = [email.id for email in chunk if email.id not in done]
            _record(engine, campaign_id, owner, clock, sent=sent, failed=failed, unsent=unsent)
            report.sent += len(sent)
            report.failed += len(failed)
            progress(report)
            if report.paused:
                _set_status(engine, campaign_id, "paused", report.paused)
                return report
        _set_status(engine, campaign_id, "sent", None)
        return report
    finally:
        _release_lease(engine, campaign_id, owner)


def _send_with_retries(
    mailbox: Mailbox, message: EmailMessage, thread_id: str | None, sleep: Callable[[float], None]
) -> Delivered:
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return mailbox.send(message, thread_id)
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
    # compat32 parses ten times faster than the default policy, and the planned bytes need
    # no re-interpretation: mailboxes only read a few headers and serialize them again.
    message = BytesParser(EmailMessage, policy=policy.compat32).parsebytes(mime)
    assert isinstance(message, EmailMessage)
    return message


def _emails(engine: Engine, campaign_id: int, status: str, after: int = 0) -> list[Any]:
    query = (
        select(emails.c.id, emails.c.message_id, emails.c.thread_id, emails.c.mime)
        .where(
            emails.c.campaign_id == campaign_id,
            emails.c.status == status,
            emails.c.id > after,
        )
        .order_by(emails.c.id)
        .limit(CHUNK)
    )
    with engine.connect() as connection:
        return list(connection.execute(query))


def _record(
    engine: Engine,
    campaign_id: int,
    owner: str,
    clock: Clock,
    *,
    sending: Sequence[int] = (),
    sent: Sequence[tuple[int, Delivered]] = (),
    failed: Sequence[tuple[int, str]] = (),
    unsent: Sequence[int] = (),
) -> None:
    """One transaction for a chunk: what goes out next, what went out, what failed, and what
    is back to planned. What the provider accepted is recorded even if the lease was lost."""
    now = clock()
    with engine.begin() as connection:
        mark_sent_many(
            connection,
            [
                {
                    "email_id": email_id,
                    "message_id": delivered.message_id,
                    "sent_at": now,
                    "provider_message_id": delivered.provider_message_id,
                    "thread_id": delivered.thread_id,
                }
                for email_id, delivered in sent
            ],
        )
        statuses: list[dict[str, Any]] = [
            *({"target": i, "status": "sending", "error": None} for i in sending),
            *({"target": i, "status": "failed", "error": error} for i, error in failed),
            *({"target": i, "status": "planned", "error": None} for i in unsent),
        ]
        if statuses:
            connection.execute(update(emails).where(emails.c.id == bindparam("target")), statuses)
        if sent or failed:
            connection.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(
                    sent_count=campaigns.c.sent_count + len(sent),
                    failed_count=campaigns.c.failed_count + len(failed),
                )
            )
        renewed = _renew_lease(connection, campaign_id, owner, now)
    if not renewed:
        raise CampaignBusy(f"campaign {campaign_id}: {owner} lost its lease and stops")


def _renew_lease(connection: Connection, campaign_id: int, owner: str, now: datetime) -> bool:
    """Only the lease holder sends: one that lost its lease (stalled past LEASE) stops."""
    renewed: int = connection.execute(
        update(campaigns)
        .where(campaigns.c.id == campaign_id, campaigns.c.lease_owner == owner)
        .values(lease_expires_at=now + LEASE)
    ).rowcount
    return renewed == 1


def _take_lease(engine: Engine, campaign_id: int, owner: str, clock: Clock) -> None:
    """Take the campaign's lease: free, run out, ours, or held by a process of this machine
    that has died (taken at once, not when it runs out)."""
    now = clock()
    with engine.begin() as connection:
        holder = connection.scalar(
            select(campaigns.c.lease_owner).where(campaigns.c.id == campaign_id)
        )
        dead = holder is not None and holder_gone(holder)
        taken = connection.execute(
            update(campaigns)
            .where(
                campaigns.c.id == campaign_id,
                campaigns.c.status.in_(("sending", "paused")),
                (campaigns.c.lease_owner.is_(None))
                | (campaigns.c.lease_owner == (holder if dead else owner))
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
