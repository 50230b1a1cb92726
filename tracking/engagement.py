"""The Email Engagement rules (DESIGN §3): an email's events -> its engagement row. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Tally:
    """How many events of one kind and class an email has, and when the first came."""

    kind: str
    machine: bool
    count: int
    first_at: datetime


def _rate(tracked: bool, happened: bool) -> int | None:
    if not tracked:
        return None
    return 100 if happened else 0


def _first(tallies: list[Tally]) -> datetime | None:
    return min((t.first_at for t in tallies), default=None)


def engagement_values(
    tallies: Iterable[Tally], *, open_tracking: bool, click_tracking: bool
) -> dict[str, Any]:
    """Column values of the engagement row. Rates are 0, 100 or None (that tracking was off);
    a human click implies a human open; `_raw` columns count machines too."""
    tallies = list(tallies)

    def of(kind: str, human_only: bool) -> list[Tally]:
        return [t for t in tallies if t.kind == kind and not (human_only and t.machine)]

    human_opens, all_opens = of("open", True), of("open", False)
    human_clicks, all_clicks = of("click", True), of("click", False)
    replies = of("reply", False)
    return {
        "open_rate": _rate(open_tracking, bool(human_opens or human_clicks)),
        "open_rate_raw": _rate(open_tracking, bool(all_opens or all_clicks)),
        "click_rate": _rate(click_tracking, bool(human_clicks)),
        "click_rate_raw": _rate(click_tracking, bool(all_clicks)),
        "reply_rate": 100 if replies else 0,
        "opens": sum(t.count for t in human_opens),
        "opens_raw": sum(t.count for t in all_opens),
        "clicks": sum(t.count for t in human_clicks),
        "clicks_raw": sum(t.count for t in all_clicks),
        "replies": sum(t.count for t in replies),
        "first_opened_at": _first(human_opens + human_clicks),
        "first_clicked_at": _first(human_clicks),
        "replied_at": _first(replies),
        "auto_replied_at": _first(of("auto_reply", False)),
        "bounced_at": _first(of("bounce", False)),
    }
