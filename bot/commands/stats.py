"""`/beacon stats` and `/beacon cohort`: rates by a dimension, and who engaged with what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from bot.blocks import Block, escape, fields_section, header, person, rate, renders, rows, section
from bot.blocks import context as note
from bot.commands.campaigns import rates_line, rates_text
from bot.context import CommandFailed, Context, Reply, find_campaign
from bot.grammar import CommandError, Token
from bot.registry import command
from outreach.filter_sql import audience_select
from outreach.filters import AudienceError
from store.schema import endusers
from tracking.analytics import Rates, stats
from tracking.cohorts import cohort_select, parse_cohort

By = Literal["template", "campaign", "company", "enduser", "sender"]
DIMENSIONS: tuple[By, ...] = ("template", "campaign", "company", "enduser", "sender")
LISTED = 50  # endusers a cohort lists in its text; the data has them all


def parse_since(token: Token) -> int:
    text = token.word
    if len(text) >= 2 and text.endswith("d") and text[:-1].isdigit() and int(text[:-1]) > 0:
        return int(text[:-1])
    raise CommandError(f"`since {token.text}`: say how many days back, like `since 30d`")


@dataclass(frozen=True)
class Stats:
    by: By | None = None
    since_days: int | None = None
    raw: bool = False


def parse_stats(text: str, args: list[Token]) -> Stats:
    by: By | None = None
    since: int | None = None
    raw = False
    rest = list(args)
    while rest:
        head = rest.pop(0)
        if head.word == "raw":
            raw = True
        elif head.word in ("by", "since") and not rest:
            raise CommandError(f"`{head.text}` needs a value after it")
        elif head.word == "by":
            value = rest.pop(0)
            if value.word not in DIMENSIONS:
                raise CommandError(f"`by {value.text}`: group by {', '.join(DIMENSIONS)}")
            by = DIMENSIONS[DIMENSIONS.index(value.word)]
        elif head.word == "since":
            since = parse_since(rest.pop(0))
        else:
            raise CommandError(f"`{head.text}`: say `by …`, `since 30d` or `raw`")
    return Stats(by, since, raw)


@command(
    "stats",
    usage="/beacon stats [by template|campaign|company|enduser|sender] [since 30d] [raw]",
    summary="Average open, click and reply rates, by a dimension; people only unless `raw`",
    parse=parse_stats,
    section="Engagement",
)
def show_stats(command: Stats, context: Context) -> Reply:
    since = None
    if command.since_days is not None:
        since = context.clock() - timedelta(days=command.since_days)
    mine = None if context.user.is_admin else context.user.id
    with context.engine.connect() as connection:
        rows = stats(connection, by=command.by, since=since, raw=command.raw, sender_user_id=mine)
    scope = "everyone's emails" if mine is None else "your emails"
    period = f" of the last {_days(command.since_days)}" if command.since_days else ""
    counted = "machines included" if command.raw else "people only; `raw` counts machines too"
    head = (
        f"Rates of {scope}{period}" + (f" by {command.by}" if command.by else "") + f" ({counted}):"
    )
    if not rows or not any(row.emails for row in rows):
        return Reply(
            f"{head}\nnothing sent yet.", {"rows": [], "by": command.by, "raw": command.raw}
        )
    lines = [head]
    for row in rows:
        rates = Rates(row.emails, row.open_rate, row.click_rate, row.reply_rate)
        emails = f"{row.emails} {'email' if row.emails == 1 else 'emails'}"
        lines.append(f"- {row.label}: {emails}, {rates_text(rates)}")
    data = [
        {
            "key": row.key,
            "label": row.label,
            "emails": row.emails,
            "open_rate": row.open_rate,
            "click_rate": row.click_rate,
            "reply_rate": row.reply_rate,
        }
        for row in rows
    ]
    return Reply("\n".join(lines), {"rows": data, "by": command.by, "raw": command.raw})


@renders("stats")
def stats_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    title = header("Rates" + (f" by {d['by']}" if d["by"] else ""))
    counted = note(
        "Machines included: Apple's privacy proxy and link scanners count too."
        if d["raw"]
        else "People only: `raw` counts machine opens and link scanners too."
    )
    if not d["rows"]:
        return [title, section("Nothing sent yet."), counted]
    if d["by"] is None:
        [r] = d["rows"]
        figures = fields_section(
            ("Emails", r["emails"]),
            ("Opened", rate(r["open_rate"])),
            ("Clicked", rate(r["click_rate"])),
            ("Replied", rate(r["reply_rate"])),
        )
        return [title, *figures, counted]
    return [title, *rows(d["rows"], _stats_row), counted]


def _stats_row(r: dict[str, Any]) -> str:
    n = r["emails"]
    return f"*{escape(r['label'])}*: {n} {'email' if n == 1 else 'emails'}\n{rates_line(r)}"


def parse_cohort_command(text: str, args: list[Token]) -> str:
    if not args:
        raise CommandError("say `engaged` or `unengaged`, then a template or campaign")
    return "cohort " + text[args[0].start : args[-1].end]


@command(
    "cohort",
    usage="/beacon cohort engaged|unengaged <template|campaign> [since 30d]",
    summary=(
        "Who engaged (opened, clicked or replied as a person), or did not, with a template or "
        "campaign; `send … to cohort …` sends to them"
    ),
    parse=parse_cohort_command,
    section="Engagement",
)
def cohort(text: str, context: Context) -> Reply:
    try:
        spec = parse_cohort(text)
        if spec is None:
            raise AudienceError("say `engaged` or `unengaged`, then a template or campaign", 7)
        with context.engine.connect() as connection:
            if spec.campaign_id is not None:
                find_campaign(connection, str(spec.campaign_id), context.user)
            ids = cohort_select(connection, spec, now=context.clock())
            people = connection.execute(
                audience_select(endusers.c.id.in_(ids.scalar_subquery()))
                .order_by(None)
                .order_by(endusers.c.email)
            ).all()
    except AudienceError as exc:
        raise CommandFailed(f"in the cohort:\n{exc.pretty(text)}") from None
    kind = "engaged with" if spec.engaged else "did not engage with"
    what = (
        f"campaign #{spec.campaign_id}"
        if spec.campaign_id is not None
        else f"template {spec.template_key}"
    )
    period = f" in the last {_days(spec.since_days)}" if spec.since_days else ""
    lines = [
        f"{len(people)} {'enduser' if len(people) == 1 else 'endusers'} {kind} {what}{period}:"
    ]
    lines += [
        f"- {p.email}" + (f" ({p.company_name})" if p.company_name else "") for p in people[:LISTED]
    ]
    if len(people) > LISTED:
        lines.append(f"… and {len(people) - LISTED} more")
    data = {
        "engaged": spec.engaged,
        "template": spec.template_key,
        "campaign": spec.campaign_id,
        "since_days": spec.since_days,
        "endusers": [{"email": p.email, "name": p.name, "company": p.company_name} for p in people],
    }
    return Reply("\n".join(lines), data)


@renders("cohort")
def cohort_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    people = d["endusers"]
    target = f"#{d['campaign']}" if d["campaign"] is not None else escape(d["template"])
    what = f"campaign {target}" if d["campaign"] is not None else f"template {target}"
    since = d["since_days"]
    words = f"cohort {'engaged' if d['engaged'] else 'unengaged'} {target}"
    words += f" since {since}d" if since else ""
    n = len(people)
    return [
        header(f"{'Engaged with' if d['engaged'] else 'Did not engage with'} {what}"),
        section(
            f"*{n}* {'enduser' if n == 1 else 'endusers'}"
            + (f" in the last {_days(since)}" if since else "")
        ),
        *rows(people, person),
        note(f"`/beacon send &lt;template&gt; to {words}` sends to them."),
    ]


def _days(n: int) -> str:
    return "day" if n == 1 else f"{n} days"
