"""A send-out as `send` and `followup` make it: every email rendered before anything is
planned, a preview until the user confirms, then the campaign planned and its job written in
one transaction; and the job that sends it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select

from bot.context import CommandFailed, Context, Reply
from bot.jobs import Progress, RunLater, enqueue, job
from bot.users import User
from outreach.campaigns import (
    CampaignBusy,
    CampaignPlan,
    Outgoing,
    earlier_emails,
    plan_campaign,
    reply_subject,
    run_campaign,
)
from outreach.templates import RenderError, StoredTemplate, render_all
from store.clock import Clock, utcnow
from store.schema import campaigns, companies, jobs
from tracking.instrument import TrackingFlags

PREVIEW_LINES = 12
REPEAT_WINDOW = timedelta(minutes=10)  # the same send again this soon needs `again`
UNFINISHED = ("sending", "paused")


def recipient_contexts(
    connection: Connection, endusers: Sequence[Any], user: User, campaign: str
) -> list[tuple[str, dict[str, Any]]]:
    """What templates see: enduser and company with their attributes, the sender, the campaign."""
    company_ids = sorted({row.company_id for row in endusers if row.company_id is not None})
    by_id = {
        row.id: {**row.attributes, "name": row.name, "domain": row.domain}
        for row in connection.execute(select(companies).where(companies.c.id.in_(company_ids)))
    }
    sender = {"name": user.display_name, "email": user.email}
    return [
        (
            row.email,
            {
                "enduser": {
                    **row.attributes,
                    "email": row.email,
                    "name": row.name,
                    "role": row.role,
                },
                "company": by_id.get(row.company_id, {}),
                "sender": sender,
                "campaign": {"name": campaign},
            },
        )
        for row in endusers
    ]


@dataclass(frozen=True)
class SendOut:
    """What a send-out will be, before it is confirmed."""

    plan: CampaignPlan
    outgoing: list[Outgoing]
    summary: dict[str, Any]  # what the preview says, as data
    first_subject: str
    first_text: str


def outline(
    connection: Connection,
    context: Context,
    stored: StoredTemplate,
    endusers: Sequence[Any],
    *,
    mode: str,
    flags: TrackingFlags,
    audience: str,
    follow_up_of: int | None = None,
) -> SendOut:
    """Render every email (one error stops it all and says where), in the order of
    `endusers`: in a group email the first is the first To recipient, who is credited."""
    template = stored.template
    recipients = recipient_contexts(connection, endusers, context.user, template.key)
    if mode == "group":
        recipients = recipients[:1]  # one email, rendered for the first To recipient
    try:
        rendered = render_all(template, recipients)
    except RenderError as exc:
        raise CommandFailed(str(exc)) from None
    everyone = [row.email for row in endusers]
    if mode == "group":
        first = rendered[0]
        outgoing = [Outgoing(everyone, first.subject, first.html, first.text, endusers[0].id)]
    else:
        outgoing = [
            Outgoing([row.email], r.subject, r.html, r.text, row.id)
            for row, r in zip(endusers, rendered, strict=True)
        ]
    plan = CampaignPlan(
        name=template.key,
        sender_address=context.user.email,
        flags=flags,
        mode="group" if mode == "group" else "individual",
        audience=audience,
        template_id=stored.id,
        template_key=template.key,
        sender_user_id=context.user.id,
        follow_up_of=follow_up_of,
    )
    summary = {
        "template": template.key,
        "version": stored.version,
        "recipients": everyone,
        "first": everyone[0],
        "emails": len(outgoing),
        "mode": mode,
        "track_opens": flags.opens,
        "track_clicks": flags.clicks,
    }
    first_subject = rendered[0].subject
    if follow_up_of is not None:  # it goes into the thread of the email they got
        before = earlier_emails(connection, follow_up_of).get(endusers[0].id)
        if before is not None:
            first_subject = reply_subject(before.subject)
    return SendOut(plan, outgoing, summary, first_subject, rendered[0].text)


def check_not_repeated(
    connection: Connection, context: Context, template: str, audience: str
) -> None:
    """The same template to the same audience by the same user, while the earlier one is
    unfinished or recent, is most likely a second click: say so rather than send twice."""
    since = context.clock() - REPEAT_WINDOW
    query = (
        select(campaigns)
        .where(
            campaigns.c.sender_user_id == context.user.id,
            campaigns.c.name == template,
            campaigns.c.status.in_(UNFINISHED) | (campaigns.c.created_at >= since),
        )
        .order_by(campaigns.c.id.desc())
    )
    wanted = " ".join(audience.split()).lower()
    for row in connection.execute(query):
        if " ".join(row.audience.split()).lower() == wanted:
            done = row.sent_count + row.failed_count
            raise CommandFailed(
                f"you already sent `{template}` to this audience: campaign #{row.id} is "
                f"{row.status}, {done}/{row.planned_count} done"
                + (
                    " (it finishes on its own; `/beacon jobs` shows how far)"
                    if row.status in UNFINISHED
                    else ""
                )
                + ". To send it once more anyway, add `again` at the end."
            )


def confirm_or_start(
    connection: Connection, context: Context, send_out: SendOut, note: str
) -> Reply:
    """The preview until confirmed; then the campaign and its job, in the caller's transaction
    (which the caller commits)."""
    summary = {**send_out.summary, "audience": note}
    if not context.confirmed:
        first_lines = send_out.first_text.splitlines()[:PREVIEW_LINES]
        summary = {
            **summary,
            "first_subject": send_out.first_subject,
            "first_text": "\n".join(first_lines),
        }
        return Reply(preview_text(summary, send_out), summary, needs_confirmation=True)
    campaign_id = plan_campaign(
        connection, send_out.plan, send_out.outgoing, context.signer, context.tracking
    )
    job_id = enqueue(
        connection,
        "send",
        {"campaign": campaign_id},
        owner_user_id=context.user.id,
        total=len(send_out.outgoing),
        reply_to=context.reply_to,
    )
    n = len(send_out.outgoing)
    text = (
        f"Campaign #{campaign_id} ({send_out.plan.name}): {n} {_emails(n)} "
        f"({summary['mode']}) on the way as job #{job_id}."
    )
    return Reply(text, {**summary, "campaign": campaign_id}, job=job_id)


def preview_text(summary: dict[str, Any], send_out: SendOut) -> str:
    tracked = [k for k in ("opens", "clicks") if summary[f"track_{k}"]]
    body = "\n".join(send_out.first_text.splitlines()[:PREVIEW_LINES])
    n = summary["emails"]
    if summary["mode"] == "group":
        shape = (
            f"one email to {len(summary['recipients'])} people (group); {summary['first']} is "
            "first in To: and is credited with what the email does"
        )
    else:
        shape = f"{n} {_emails(n)} (individual)"
    return (
        f"Send `{summary['template']}` (v{summary['version']}) as {shape}, tracking "
        f"{' and '.join(tracked) or 'nothing'} (replies always).\n"
        f"Audience: {summary['audience']}\n\n"
        f"First email, to {summary['first']}:\nSubject: {send_out.first_subject}\n\n{body}\n\n"
        "Confirm to send (on the command line: --yes)."
    )


def _emails(n: int) -> str:
    return "email" if n == 1 else "emails"


# A daily limit lifts within the day; a provider that keeps failing is tried again sooner.
DAILY_LIMIT_WAIT = timedelta(hours=1)
FAILING_WAIT = timedelta(minutes=5)
BUSY_WAIT = timedelta(seconds=30)


@job("send", describe=lambda arguments: f"send-out of campaign #{arguments['campaign']}")
def send_job(arguments: dict[str, Any], context: Context, progress: Progress) -> dict[str, Any]:
    """Send what is left of a campaign. Safe to repeat: the outbox sends nothing twice."""
    campaign_id = int(arguments["campaign"])
    row = _campaign(context, campaign_id)
    total, base = row.planned_count, row.sent_count + row.failed_count
    if row.status in UNFINISHED:

        def tell(report: Any) -> None:
            progress(base + report.sent + report.failed + report.found_already_sent, total)

        try:
            report = run_campaign(
                context.engine,
                campaign_id,
                context.mailbox_for(context.user),
                owner=progress.owner,
                clock=context.clock,
                progress=tell,
            )
        except CampaignBusy as exc:
            raise RunLater(BUSY_WAIT, f"waiting: {exc}") from None
        if report.paused:
            wait = DAILY_LIMIT_WAIT if "daily" in report.paused else FAILING_WAIT
            raise RunLater(wait, f"paused: {report.paused}")
        row = _campaign(context, campaign_id)
    failed = f", {row.failed_count} refused" if row.failed_count else ""
    return {
        "text": (
            f"Campaign #{campaign_id} ({row.name}): sent {row.sent_count} of "
            f"{row.planned_count} {_emails(row.planned_count)}{failed}."
        ),
        "campaign": campaign_id,
        "status": row.status,
        "sent": row.sent_count,
        "failed": row.failed_count,
    }


def _campaign(context: Context, campaign_id: int) -> Any:
    with context.engine.connect() as connection:
        row = connection.execute(select(campaigns).where(campaigns.c.id == campaign_id)).first()
    if row is None:
        raise CommandFailed(f"there is no campaign #{campaign_id}")
    return row


def adopt_orphans(engine: Engine, clock: Clock = utcnow) -> list[int]:
    """A job for every unfinished send-out that never had one (planned by an older version,
    or sent straight from code), so that starting the worker finishes it. Their numbers."""
    now = clock()
    with engine.begin() as connection:
        unfinished = connection.execute(
            select(
                campaigns.c.id,
                campaigns.c.sender_user_id,
                campaigns.c.planned_count,
                campaigns.c.created_at,
            ).where(
                campaigns.c.status.in_(UNFINISHED),
                or_(campaigns.c.lease_expires_at.is_(None), campaigns.c.lease_expires_at < now),
            )
        ).all()
        if not unfinished:
            return []
        # A send-out's job is never older than the send-out itself.
        since = min(row.created_at for row in unfinished)
        arguments = connection.scalars(
            select(jobs.c.arguments).where(jobs.c.kind == "send", jobs.c.created_at >= since)
        )
        covered = {int(argument.get("campaign", 0)) for argument in arguments}
        adopted = [row for row in unfinished if row.id not in covered]
        for row in adopted:
            enqueue(
                connection,
                "send",
                {"campaign": row.id},
                owner_user_id=row.sender_user_id,
                total=row.planned_count,
            )
    return [row.id for row in adopted]
