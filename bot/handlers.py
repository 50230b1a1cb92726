"""Running a parsed `/beacon` command: the same for Slack and for `mailbeacon cmd`.

Each handler returns a Reply (text for people, data for --json); mistakes a user can make
raise CommandFailed with what was wrong and how to fix it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from bot.alerts import alerts_add, alerts_list, alerts_quiet, alerts_remove, digest
from bot.commands import (
    USAGE,
    AlertsAdd,
    AlertsList,
    AlertsQuiet,
    AlertsRemove,
    Campaigns,
    Command,
    Digest,
    Help,
    NonOpeners,
    Preview,
    Send,
    Templates,
)
from bot.context import CommandFailed, Context, Reply, find_campaign, find_template
from bot.permissions import Forbidden, check_campaign_access, check_command, check_send_size
from outreach.audience import resolve_audience
from outreach.campaigns import (
    CampaignBusy,
    CampaignPlan,
    Outgoing,
    RunReport,
    plan_campaign,
    run_campaign,
)
from outreach.filters import AudienceError
from outreach.templates import RenderError, list_templates
from outreach.templates import render_all as render_each
from store.schema import campaigns, companies, templates
from tracking.analytics import not_engaged
from tracking.instrument import TrackingFlags

PREVIEW_LINES = 12


def execute(command: Command, context: Context, *, confirmed: bool = False) -> Reply:
    try:
        check_command(command, context.user)
        if isinstance(command, Help):
            return Reply("\n".join(USAGE.values()), {"usage": list(USAGE.values())})
        if isinstance(command, Templates):
            return _templates(context)
        if isinstance(command, Preview):
            return _preview(command, context)
        if isinstance(command, Send):
            return _send(command, context, confirmed)
        if isinstance(command, Campaigns):
            return _campaigns(command, context)
        if isinstance(command, NonOpeners):
            return _nonopeners(command, context)
        if isinstance(command, AlertsAdd):
            return alerts_add(command, context)
        if isinstance(command, AlertsList):
            return alerts_list(context)
        if isinstance(command, AlertsRemove):
            return alerts_remove(command, context)
        if isinstance(command, AlertsQuiet):
            return alerts_quiet(command, context)
        if isinstance(command, Digest):
            return digest(command, context)
    except AudienceError as exc:
        audience = command.audience if isinstance(command, Send) else getattr(command, "to", "")
        raise CommandFailed(f"in the audience:\n{exc.pretty(audience)}") from None
    except (Forbidden, RenderError, CampaignBusy) as exc:
        raise CommandFailed(str(exc)) from None
    raise AssertionError(f"no handler for {command!r}")


def _templates(context: Context) -> Reply:
    with context.engine.connect() as connection:
        stored = list_templates(connection)
    if not stored:
        return Reply(
            "No templates yet: add files to the templates folder and run "
            "`mailbeacon templates sync`.",
            {"templates": []},
        )
    lines, data = [], []
    for item in stored:
        t = item.template
        tracked = ", ".join(
            k for k, on in (("opens", t.track_opens), ("clicks", t.track_clicks)) if on
        )
        lines.append(
            f"{t.key} (v{item.version}): {t.description or t.subject} "
            f"[tracks {tracked or 'nothing'}]"
        )
        data.append(
            {
                "key": t.key,
                "version": item.version,
                "description": t.description,
                "track_opens": t.track_opens,
                "track_clicks": t.track_clicks,
            }
        )
    return Reply("\n".join(lines), {"templates": data})


def _preview(command: Preview, context: Context) -> Reply:
    # Never committed: an unknown address would become an enduser, which a preview must not do.
    with context.engine.connect() as connection:
        stored = find_template(connection, command.template)
        audience = resolve_audience(connection, command.to, force=True)
        recipients = _contexts(connection, audience.endusers, context.user, command.template)
    [rendered] = render_each(stored.template, recipients[:1])
    text = f"Subject: {rendered.subject}\n\n{rendered.text}"
    return Reply(text, {"subject": rendered.subject, "html": rendered.html, "text": rendered.text})


def _send(command: Send, context: Context, confirmed: bool) -> Reply:
    # One transaction: the audience (new endusers included) and the whole planned campaign are
    # committed together, or, for the preview and on any error, not at all.
    with context.engine.connect() as connection:
        stored = find_template(connection, command.template)
        template = stored.template
        audience = resolve_audience(connection, command.audience)
        if not audience.endusers:
            raise CommandFailed(f"nobody matches `{command.audience}`: {audience.summary()}")
        check_send_size(context.user, len(audience.endusers), context.admin_send_threshold)
        recipients = _contexts(connection, audience.endusers, context.user, template.key)
        if command.mode == "group":
            recipients = recipients[:1]  # one email, rendered for the first To recipient
        rendered = render_each(template, recipients)  # everyone, before anything is sent
        opens, clicks = command.track_opens, command.track_clicks
        flags = TrackingFlags(
            opens=template.track_opens if opens is None else opens,
            clicks=template.track_clicks if clicks is None else clicks,
        )
        everyone = [row.email for row in audience.endusers]
        if command.mode == "group":
            first = rendered[0]
            outgoing = [
                Outgoing(everyone, first.subject, first.html, first.text, audience.endusers[0].id)
            ]
        else:
            outgoing = [
                Outgoing([row.email], r.subject, r.html, r.text, row.id)
                for row, r in zip(audience.endusers, rendered, strict=True)
            ]
        summary = {
            "template": template.key,
            "version": stored.version,
            "recipients": everyone,
            "emails": len(outgoing),
            "mode": command.mode,
            "track_opens": flags.opens,
            "track_clicks": flags.clicks,
            "audience": audience.summary(),
        }
        if not confirmed:
            return Reply(_send_preview(summary, rendered[0]), summary, needs_confirmation=True)
        plan = CampaignPlan(
            name=template.key,
            sender_address=context.user.email,
            flags=flags,
            mode=command.mode,
            audience=command.audience,
            template_id=stored.id,
            template_key=template.key,
            sender_user_id=context.user.id,
        )
        campaign_id = plan_campaign(connection, plan, outgoing, context.signer, context.tracking)
        connection.commit()
    mailbox = context.mailbox_for(context.user)
    owner = f"cmd:{context.user.email}"
    total = len(outgoing)

    def tell(report: RunReport) -> None:
        context.progress(f"campaign {campaign_id}: {report.sent + report.failed} of {total} done")

    report = run_campaign(context.engine, campaign_id, mailbox, owner=owner, progress=tell)
    text = f"Campaign {campaign_id}: sent {report.sent} of {len(outgoing)} emails ({command.mode})."
    if report.paused:
        text += f"\nPaused: {report.paused}. It resumes when the limit lifts."
    data = {**summary, "campaign": campaign_id, "sent": report.sent, "paused": report.paused}
    return Reply(text, data)


def _send_preview(summary: dict[str, Any], first: Any) -> str:
    tracked = [k for k in ("opens", "clicks") if summary[f"track_{k}"]]
    body = "\n".join(first.text.splitlines()[:PREVIEW_LINES])
    return (
        f"Send `{summary['template']}` (v{summary['version']}) as {summary['emails']} "
        f"{'email' if summary['emails'] == 1 else 'emails'} ({summary['mode']}), tracking "
        f"{' and '.join(tracked) or 'nothing'} (replies always).\n"
        f"Audience: {summary['audience']}\n\n"
        f"First email, to {summary['recipients'][0]}:\nSubject: {first.subject}\n\n{body}\n\n"
        "Confirm to send (on the command line: --yes)."
    )


def _campaigns(command: Campaigns, context: Context) -> Reply:
    query = (
        select(campaigns, templates.c.key)
        .select_from(campaigns.outerjoin(templates))
        .order_by(campaigns.c.id.desc())
        .limit(20)
    )
    if command.scope == "mine":
        query = query.where(campaigns.c.sender_user_id == context.user.id)
    with context.engine.connect() as connection:
        rows = connection.execute(query).all()
    if not rows:
        return Reply(
            "No campaigns yet: `/beacon send <template> to <audience>` starts one.",
            {"campaigns": []},
        )
    data = [
        {
            "id": r.id,
            "template": r.key or r.name,
            "status": r.status,
            "sent": r.sent_count,
            "planned": r.planned_count,
            "reason": r.status_reason,
        }
        for r in rows
    ]
    lines = [
        f"#{c['id']} {c['template']}: {c['status']}, {c['sent']}/{c['planned']} sent"
        + (f" ({c['reason']})" if c["reason"] else "")
        for c in data
    ]
    return Reply("\n".join(lines), {"campaigns": data})


def _nonopeners(command: NonOpeners, context: Context) -> Reply:
    with context.engine.connect() as connection:
        campaign = find_campaign(connection, command.campaign, context.user)
        check_campaign_access(context.user, campaign.sender_user_id)
        found = not_engaged(
            connection, campaign.id, command.outcome, include_machine=command.include_machine
        )
    who = [
        {"email_id": r.email_id, "email": r.email, "name": r.name, "company": r.company}
        for r in found.endusers
    ]
    counting = (
        "machine opens and clicks count too"
        if command.include_machine
        else "machine opens and clicks do not count; add `include machine` to count them"
    )
    title = (
        f"{len(who)} {'enduser has' if len(who) == 1 else 'endusers have'} not "
        f"{command.outcome} campaign #{campaign.id} ({campaign.name})"
    )
    lines = [f"{title}: {counting}." if command.outcome != "replied" else f"{title}."]
    lines += [
        f"- {w['email']}"
        + (
            f" ({', '.join(x for x in (w['name'], w['company']) if x)})"
            if w["name"] or w["company"]
            else ""
        )
        for w in who
    ]
    if found.untracked:
        n = found.untracked
        lines.append(
            f"{n} {'email was' if n == 1 else 'emails were'} sent without that tracking: "
            "nobody can tell."
        )
    data = {
        "campaign": campaign.id,
        "outcome": command.outcome,
        "endusers": who,
        "untracked": found.untracked,
        "include_machine": command.include_machine,
    }
    return Reply("\n".join(lines), data)


def _contexts(
    connection: Connection, endusers: list[Any], user: Any, campaign: str
) -> list[tuple[str, dict[str, Any]]]:
    """What templates see: enduser and company with their attributes, the sender, the campaign."""
    company_ids = sorted({row.company_id for row in endusers if row.company_id is not None})
    by_id = {
        row.id: {**row.attributes, "name": row.name, "domain": row.domain}
        for row in connection.execute(select(companies).where(companies.c.id.in_(company_ids)))
    }
    sender = {"name": user.name or user.email, "email": user.email}
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
