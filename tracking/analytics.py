"""Figures over many emails, read from the engagement rows: average rates (of the 0/100/NULL
columns, so an email whose tracking was off does not count: Planhat's definition), who has not
engaged, a campaign's report and stats by template, campaign, company, enduser or sender."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    FromClause,
    String,
    Subquery,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    true,
)

from store.schema import (
    campaigns,
    companies,
    emails,
    endusers,
    engagements,
    events,
    templates,
    users,
)

Outcome = Literal["opened", "clicked", "replied"]
Dimension = Literal["template", "campaign", "company", "enduser", "sender"]

# Sent, whatever happened next: what every rate is averaged over.
_SENT = engagements.c.sent_at.is_not(None)
_REPLIED = engagements.c.reply_rate == 100
_LISTED_IDS = 1_000


def _rate_columns(raw: bool) -> tuple[Column[Any], Column[Any]]:
    """The open and click columns: human-only, or counting machines too."""
    suffix = "_raw" if raw else ""
    return engagements.c[f"open_rate{suffix}"], engagements.c[f"click_rate{suffix}"]


def _percent(value: object) -> float | None:
    return None if value is None else round(float(str(value)), 1)


@dataclass(frozen=True)
class Rates:
    emails: int
    open_rate: float | None  # percent, None when no email had that tracking on
    click_rate: float | None
    reply_rate: float | None


def average_rates(
    connection: Connection, *, raw: bool = False, campaign_id: int | None = None
) -> Rates:
    """Human-only by default; `raw` counts machine opens and clicks too."""
    opens, clicks = _rate_columns(raw)
    query = select(
        func.count(), func.avg(opens), func.avg(clicks), func.avg(engagements.c.reply_rate)
    )
    if campaign_id is not None:
        query = query.where(engagements.c.campaign_id == campaign_id)
    count, open_rate, click_rate, reply_rate = connection.execute(query).one()
    return Rates(count, _percent(open_rate), _percent(click_rate), _percent(reply_rate))


@dataclass(frozen=True)
class Recipient:
    email_id: int
    enduser_id: int
    email: str
    name: str
    company: str | None


@dataclass(frozen=True)
class Unengaged:
    endusers: list[Recipient]  # who has not, by email address
    untracked: int  # of the others, how many emails had that tracking off: nobody can tell


def not_engaged(
    connection: Connection, campaign_id: int, outcome: Outcome, *, include_machine: bool = False
) -> Unengaged:
    """Who to follow up on: the campaign's endusers who were sent an email that did not bounce,
    have not replied, and have not opened / clicked / replied. By default a machine's open or
    click does not count as one; with include_machine it does."""
    opens, clicks = _rate_columns(include_machine)
    column = {"opened": opens, "clicked": clicks, "replied": engagements.c.reply_rate}[outcome]
    considered = and_(
        engagements.c.campaign_id == campaign_id,
        _SENT,
        engagements.c.bounced_at.is_(None),
        ~_REPLIED,
        # A click means they read it, whatever the pixel says (or when it was off).
        clicks.is_distinct_from(100) if outcome == "opened" else true(),
    )
    query = (
        select(
            engagements.c.email_id,
            engagements.c.enduser_id,
            endusers.c.email,
            endusers.c.name,
            companies.c.name.label("company"),
        )
        .select_from(
            engagements.join(endusers, engagements.c.enduser_id == endusers.c.id).outerjoin(
                companies, endusers.c.company_id == companies.c.id
            )
        )
        .where(considered, column == 0)
        .order_by(endusers.c.email, engagements.c.email_id)
    )
    untracked = connection.scalar(
        select(func.count()).select_from(engagements).where(considered, column.is_(None))
    )
    return Unengaged(
        [Recipient(*row) for row in connection.execute(query)],
        untracked or 0,
    )


@dataclass(frozen=True)
class ReportRow:
    email_id: int
    email: str | None  # the enduser's address; None for an email attributed to nobody
    name: str | None
    company: str | None
    status: str
    sent_at: datetime | None
    first_opened_at: datetime | None
    first_clicked_at: datetime | None
    opens: int  # human
    clicks: int
    replied_at: datetime | None
    auto_replied_at: datetime | None
    bounced_at: datetime | None
    machine: dict[str, int]  # machine opens and clicks by reason


@dataclass(frozen=True)
class CampaignReport:
    planned: int
    sent: int
    failed: int
    bounced: int
    auto_replied: int
    replied: int
    human: Rates  # over the sent emails
    raw: Rates
    rows: list[ReportRow]  # by enduser address, at most the limit asked for
    total_rows: int


def campaign_report(
    connection: Connection, campaign_id: int, *, limit: int | None = None
) -> CampaignReport:
    """Three queries, whatever the campaign's size."""
    # Said of both tables (they agree), so that each is read through its campaign index.
    of_campaign = and_(
        emails.c.campaign_id == campaign_id, engagements.c.campaign_id == campaign_id
    )
    engaged = emails.join(engagements, engagements.c.email_id == emails.c.id)
    totals = connection.execute(
        select(
            func.count(),
            func.count().filter(emails.c.status == "sent"),
            func.count().filter(emails.c.status == "failed"),
            func.count(engagements.c.bounced_at),
            func.count(engagements.c.auto_replied_at),
            func.count().filter(_REPLIED),
            func.count().filter(_SENT),
            *(
                func.avg(column).filter(_SENT)
                for column in (*_rate_columns(False), *_rate_columns(True))
            ),
            func.avg(engagements.c.reply_rate).filter(_SENT),
        )
        .select_from(engaged)
        .where(of_campaign)
    ).one()
    planned, sent, failed, bounced, auto_replied, replied, rated = totals[:7]
    opens, clicks, opens_raw, clicks_raw, replies = map(_percent, totals[7:])

    page = connection.execute(
        select(
            emails.c.id.label("email_id"),
            endusers.c.email,
            endusers.c.name,
            companies.c.name.label("company"),
            emails.c.status,
            emails.c.sent_at,
            engagements.c.first_opened_at,
            engagements.c.first_clicked_at,
            engagements.c.opens,
            engagements.c.clicks,
            engagements.c.replied_at,
            engagements.c.auto_replied_at,
            engagements.c.bounced_at,
        )
        .select_from(
            engaged.outerjoin(endusers, emails.c.enduser_id == endusers.c.id).outerjoin(
                companies, endusers.c.company_id == companies.c.id
            )
        )
        .where(of_campaign)
        .order_by(endusers.c.email.asc().nulls_last(), emails.c.id)
        .limit(limit)
    ).all()
    shown = [row.email_id for row in page]
    # A page's ids as they are; a long page's by its campaign (a statement takes only so many
    # parameters).
    within = (
        events.c.email_id.in_(shown)
        if len(shown) <= _LISTED_IDS
        else events.c.email_id.in_(select(emails.c.id).where(emails.c.campaign_id == campaign_id))
    )
    reasons = (
        select(events.c.email_id, events.c.machine_reason, func.count())
        .where(within, events.c.kind.in_(("open", "click")), events.c.machine)
        .group_by(events.c.email_id, events.c.machine_reason)
    )
    machine: dict[int, dict[str, int]] = defaultdict(dict)
    for email_id, reason, count in connection.execute(reasons):
        machine[email_id][reason or "unknown"] = count
    rows = [ReportRow(**row._mapping, machine=machine.get(row.email_id, {})) for row in page]
    return CampaignReport(
        planned,
        sent,
        failed,
        bounced,
        auto_replied,
        replied,
        human=Rates(rated, opens, clicks, replies),
        raw=Rates(rated, opens_raw, clicks_raw, replies),
        rows=rows,
        total_rows=planned,
    )


@dataclass(frozen=True)
class StatsRow:
    key: int | str | None  # the template key, or the campaign's, company's, ... id
    label: str
    emails: int  # sent
    open_rate: float | None  # percent, None when no email had that tracking on
    click_rate: float | None
    reply_rate: float | None
    bounced: int


def stats(
    connection: Connection,
    *,
    by: Dimension | None,
    since: datetime | None,
    raw: bool = False,
    sender_user_id: int | None = None,
    limit: int = 50,
) -> list[StatsRow]:
    """Rates of the sent emails (sent at or after `since`; of one sender only when given) by
    `by`, the biggest groups first; by None: one row over them all."""
    opens, clicks = _rate_columns(raw)
    # Sums and counts rather than averages, so that groups can be merged (template versions).
    measures = [
        func.count().label("emails"),
        func.sum(opens).label("opened"),
        func.count(opens).label("open_tracked"),
        func.sum(clicks).label("clicked"),
        func.count(clicks).label("click_tracked"),
        func.sum(engagements.c.reply_rate).label("replied"),
        func.count(engagements.c.bounced_at).label("bounced"),
    ]
    kept: list[ColumnElement[bool]] = [_SENT]
    if since is not None:
        kept.append(engagements.c.sent_at >= since)
    if sender_user_id is not None:
        kept.append(engagements.c.sender_user_id == sender_user_id)
    if by is None:
        everything = connection.execute(select(*measures).where(*kept)).one()
        return [_stats_row(None, "all emails", *everything)]
    group, source = _group_of(by)
    # Grouped by an id first, which is cheap, then named.
    grouped = select(group.label("id"), *measures).select_from(source).where(*kept).group_by(group)
    inner = grouped.subquery()
    key, label, named = _label_of(by, inner)
    figures = [inner.c[m.name] for m in measures]
    query = select(key, label, *figures).select_from(named)
    if by == "template":
        # Versions of a template are one template to whoever reads the figures.
        figures = [func.sum(f).label(f.name) for f in figures]
        query = select(key, label, *figures).select_from(named).group_by(key)
    query = query.order_by(figures[0].desc(), label).limit(limit)
    return [_stats_row(*row) for row in connection.execute(query)]


def _stats_row(
    key: int | str | None,
    label: str,
    emails: Any,
    opened: Any,
    open_tracked: Any,
    clicked: Any,
    click_tracked: Any,
    replied: Any,
    bounced: Any,
) -> StatsRow:
    return StatsRow(
        key,
        label,
        int(emails),
        _ratio(opened, open_tracked),
        _ratio(clicked, click_tracked),
        _ratio(replied, emails),
        int(bounced),
    )


def _ratio(total: Any, count: Any) -> float | None:
    """The average of 0/100 values, from their sum and how many there were."""
    return round(int(total or 0) / int(count), 1) if count else None


def _group_of(by: Dimension) -> tuple[ColumnElement[Any], FromClause]:
    """The id that the engagement rows are grouped by, and where it is found."""
    if by == "company":
        to_enduser = engagements.c.enduser_id == endusers.c.id
        return endusers.c.company_id, engagements.outerjoin(endusers, to_enduser)
    column = {
        "template": engagements.c.template_id,
        "campaign": engagements.c.campaign_id,
        "enduser": engagements.c.enduser_id,
        "sender": engagements.c.sender_user_id,
    }[by]
    return column, engagements


def _label_of(
    by: Dimension, grouped: Subquery
) -> tuple[ColumnElement[Any], ColumnElement[str], FromClause]:
    """The key and label of each group, and the groups joined to what names them."""
    id_ = grouped.c.id
    if by == "template":
        joined = grouped.outerjoin(templates, templates.c.id == id_)
        label = func.coalesce(templates.c.key, "(no template)")
        return templates.c.key, label.label("label"), joined
    if by == "campaign":
        joined = grouped.outerjoin(campaigns, campaigns.c.id == id_)
        named = literal("#") + cast(campaigns.c.id, String) + " " + campaigns.c.name
        numbered = case((campaigns.c.id.is_(None), "(no campaign)"), else_=named)
        return id_, numbered.label("label"), joined
    table, name, nobody = {
        "company": (companies, companies.c.name, "(no company)"),
        "enduser": (endusers, endusers.c.email, "(no enduser)"),
        "sender": (users, users.c.email, "(no sender)"),
    }[by]
    joined = grouped.outerjoin(table, table.c.id == id_)
    return id_, func.coalesce(name, nobody).label("label"), joined
