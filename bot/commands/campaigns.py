"""`/beacon campaigns` and `/beacon campaign`: my send-outs, and how one of them did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from bot.blocks import (
    Block,
    escape,
    fields_section,
    follow_up_button,
    header,
    person,
    rate,
    renders,
    rows,
    section,
    when,
)
from bot.blocks import context as note
from bot.context import Context, Reply, find_campaign
from bot.grammar import CommandError, Token, campaign_ref
from bot.permissions import admin_when
from bot.registry import command
from store.schema import campaigns, templates
from tracking.analytics import Rates, campaign_report

ROWS_SHOWN = 50  # endusers listed in the text
ROWS_GIVEN = 1000  # endusers in the data (Slack, --json); `total` says how many there are


def parse_scope(text: str, args: list[Token]) -> Literal["mine", "all"]:
    if not args:
        return "mine"
    if len(args) == 1 and args[0].word in ("mine", "all"):
        return "mine" if args[0].word == "mine" else "all"
    raise CommandError("list `mine` or `all` campaigns")


@command(
    "campaigns",
    usage="/beacon campaigns [mine|all]",
    summary="Your latest campaigns (an admin: everyone's) and where each stands",
    parse=parse_scope,
    permission=admin_when(
        lambda scope: scope == "all",
        "only an admin may list everyone's campaigns: try `/beacon campaigns`",
    ),
    section="Engagement",
)
def list_campaigns(scope: str, context: Context) -> Reply:
    query = (
        select(campaigns, templates.c.key)
        .select_from(campaigns.outerjoin(templates))
        .order_by(campaigns.c.id.desc())
        .limit(20)
    )
    if scope == "mine":
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


@dataclass(frozen=True)
class CampaignView:
    campaign: str


def parse_campaign(text: str, args: list[Token]) -> CampaignView:
    if len(args) != 1:
        raise CommandError("say which campaign, by its number or name")
    return CampaignView(campaign_ref(args[0]))


def rates_text(rates: Rates) -> str:
    return (
        f"open {rate(rates.open_rate)}, click {rate(rates.click_rate)}, "
        f"reply {rate(rates.reply_rate)}"
    )


def rates_data(rates: Rates) -> dict[str, Any]:
    return {
        "emails": rates.emails,
        "open_rate": rates.open_rate,
        "click_rate": rates.click_rate,
        "reply_rate": rates.reply_rate,
    }


@command(
    "campaign",
    usage="/beacon campaign <id|name>",
    summary="How one campaign did: sent, bounced, human and raw rates, and each enduser",
    parse=parse_campaign,
    section="Engagement",
)
def show_campaign(command: CampaignView, context: Context) -> Reply:
    with context.engine.connect() as connection:
        campaign = find_campaign(connection, command.campaign, context.user)
        report = campaign_report(connection, campaign.id, limit=ROWS_GIVEN)
    people = [_row(row) for row in report.rows]
    lines = [
        f"Campaign #{campaign.id} ({campaign.name}), {campaign.status}: {report.sent} of "
        f"{report.planned} sent, {report.failed} refused, {report.bounced} bounced, "
        f"{report.auto_replied} auto-{'reply' if report.auto_replied == 1 else 'replies'}",
        f"People: {rates_text(report.human)}",
        f"With machines: {rates_text(report.raw)}",
    ]
    lines += [_line(person) for person in people[:ROWS_SHOWN]]
    if report.total_rows > ROWS_SHOWN:
        lines.append(f"… and {report.total_rows - ROWS_SHOWN} more")
    data = {
        "campaign": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "planned": report.planned,
        "sent": report.sent,
        "failed": report.failed,
        "bounced": report.bounced,
        "auto_replied": report.auto_replied,
        "human": rates_data(report.human),
        "raw": rates_data(report.raw),
        "endusers": people,
        "total": report.total_rows,
    }
    return Reply("\n".join(lines), data)


def _row(row: Any) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "email_id": row.email_id,
        "email": row.email,
        "name": row.name,
        "company": row.company,
        "status": row.status,
        "first_opened_at": when(row.first_opened_at),
        "first_clicked_at": when(row.first_clicked_at),
        "clicks": row.clicks,
        "replied_at": when(row.replied_at),
        "bounced_at": when(row.bounced_at),
        "auto_replied_at": when(row.auto_replied_at),
        "machine": dict(row.machine),
    }


def _line(person: dict[str, Any]) -> str:
    done = []
    if person["bounced_at"]:
        done.append("bounced")
    if person["first_opened_at"]:
        done.append(f"opened {person['first_opened_at'][:16].replace('T', ' ')}")
    if person["clicks"]:
        done.append(f"{person['clicks']} {'click' if person['clicks'] == 1 else 'clicks'}")
    if person["replied_at"]:
        done.append(f"replied {person['replied_at'][:16].replace('T', ' ')}")
    if person["auto_replied_at"]:
        done.append("auto-reply")
    if person["machine"]:
        done.append(
            "machines: "
            + ", ".join(f"{reason} x{n}" for reason, n in sorted(person["machine"].items()))
        )
    if person["status"] != "sent":
        done.insert(0, person["status"])
    return f"- {person['email']}: {'; '.join(done) or 'nothing yet'}"


@renders("campaigns")
def campaigns_blocks(reply: Reply) -> list[Block]:
    items = reply.data["campaigns"]
    if not items:
        return [
            section(
                "No campaigns yet: `/beacon send &lt;template&gt; to &lt;audience&gt;` starts one."
            )
        ]
    return [header("Campaigns"), *rows(items, _campaign_row)]


def _campaign_row(c: dict[str, Any]) -> str:
    line = f"*#{c['id']} {escape(c['template'])}*: {c['status']}, {c['sent']}/{c['planned']} sent"
    return line + (f" ({escape(c['reason'])})" if c["reason"] else "")


@renders("campaign")
def campaign_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    return [
        header(f"Campaign #{d['campaign']} ({escape(d['name'])})"),
        *fields_section(
            ("Status", d["status"]),
            ("Sent", f"{d['sent']} of {d['planned']}"),
            ("Refused", d["failed"]),
            ("Bounced", d["bounced"]),
            ("Auto-replies", d["auto_replied"]),
        ),
        *fields_section(
            ("People", rates_line(d["human"])), ("With machines", rates_line(d["raw"]))
        ),
        note(
            f"Rates over {d['human']['emails']} sent emails. People only: machine opens and "
            "link scanners count only under _With machines_."
        ),
        *rows(d["endusers"], _enduser_row, total=d["total"]),
        follow_up_button(d["campaign"], "opened", include_machine=False),
    ]


def rates_line(rates: dict[str, Any]) -> str:
    """Rates of a command's data (`rates_data`, a stats row) as Slack shows them."""
    return (
        f"open {rate(rates['open_rate'])} · click {rate(rates['click_rate'])} · "
        f"reply {rate(rates['reply_rate'])}"
    )


def _enduser_row(p: dict[str, Any]) -> str:
    done = [] if p["status"] == "sent" else [escape(p["status"])]
    for key, what in (
        ("bounced_at", "bounced"),
        ("first_opened_at", "opened"),
        ("first_clicked_at", "clicked"),
        ("replied_at", "replied"),
        ("auto_replied_at", "auto-reply"),
    ):
        if p[key]:
            done.append(f"{what} {when(p[key])}")
    if p["clicks"]:
        done.append(f"{p['clicks']} {'click' if p['clicks'] == 1 else 'clicks'}")
    if p["machine"]:
        machines = ", ".join(f"{escape(why)} x{n}" for why, n in sorted(p["machine"].items()))
        done.append(f"machines: {machines}")
    return f"{person(p)}\n{' · '.join(done) or 'nothing yet'}"
