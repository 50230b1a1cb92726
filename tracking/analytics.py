"""Rates over many emails: averages of the engagement rows' 0/100/NULL columns, so an email
whose tracking was off does not count (Planhat's definition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, func, select

from store.schema import companies, endusers, engagements


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
    opens = engagements.c.open_rate_raw if raw else engagements.c.open_rate
    clicks = engagements.c.click_rate_raw if raw else engagements.c.click_rate
    query = select(
        func.count(), func.avg(opens), func.avg(clicks), func.avg(engagements.c.reply_rate)
    )
    if campaign_id is not None:
        query = query.where(engagements.c.campaign_id == campaign_id)
    count, open_rate, click_rate, reply_rate = connection.execute(query).one()
    return Rates(count, _percent(open_rate), _percent(click_rate), _percent(reply_rate))


def _percent(value: object) -> float | None:
    return None if value is None else round(float(str(value)), 1)


@dataclass(frozen=True)
class Unengaged:
    endusers: list[Any]  # email_id, email, name, company: who has not, by email address
    untracked: int  # emails of the campaign whose tracking for this outcome was off


def not_engaged(
    connection: Connection,
    campaign_id: int,
    outcome: Literal["opened", "clicked", "replied"],
    *,
    include_machine: bool = False,
) -> Unengaged:
    """Who has not opened / clicked / replied to a campaign's emails. By default a machine's
    open or click does not count as one; with include_machine it does."""
    raw = "_raw" if include_machine else ""
    column = {
        "opened": engagements.c[f"open_rate{raw}"],
        "clicked": engagements.c[f"click_rate{raw}"],
        "replied": engagements.c.reply_rate,
    }[outcome]
    query = (
        select(
            engagements.c.email_id,
            endusers.c.email,
            endusers.c.name,
            companies.c.name.label("company"),
        )
        .select_from(
            engagements.join(endusers, engagements.c.enduser_id == endusers.c.id).outerjoin(
                companies, endusers.c.company_id == companies.c.id
            )
        )
        .where(engagements.c.campaign_id == campaign_id, column == 0)
        .order_by(endusers.c.email)
    )
    untracked = connection.scalar(
        select(func.count())
        .select_from(engagements)
        .where(engagements.c.campaign_id == campaign_id, column.is_(None))
    )
    return Unengaged(list(connection.execute(query)), untracked or 0)
