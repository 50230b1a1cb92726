"""Rates over many emails: averages of the engagement rows' 0/100/NULL columns, so an email
whose tracking was off does not count (Planhat's definition)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from store.schema import engagements


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
