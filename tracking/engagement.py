"""The Email Engagement rules (DESIGN §3): an email's events -> its engagement row. Pure."""

from __future__ import annotations

from collections import defaultdict
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
    first_at: datetime | None


def _rate(tracked: bool, happened: bool) -> int | None:
    if not tracked:
        return None
    return 100 if happened else 0


def engagement_values(
    tallies: Iterable[Tally], *, open_tracking: bool, click_tracking: bool
) -> dict[str, Any]:
    """Column values of the engagement row. Rates are 0, 100 or None (that tracking was off);
    a human click implies a human open; `_raw` columns count machines too."""
    count: dict[tuple[str, bool], int] = defaultdict(int)
    first: dict[tuple[str, bool], datetime] = {}
    for t in tallies:
        if not t.count:
            continue
        key = (t.kind, t.machine)
        count[key] += t.count
        if t.first_at is not None and (key not in first or t.first_at < first[key]):
            first[key] = t.first_at
    opens, clicks = count["open", False], count["click", False]
    opens_raw, clicks_raw = opens + count["open", True], clicks + count["click", True]
    replies = count["reply", False]
    return {
        "open_rate": _rate(open_tracking, bool(opens or clicks)),
        "open_rate_raw": _rate(open_tracking, bool(opens_raw or clicks_raw)),
        "click_rate": _rate(click_tracking, bool(clicks)),
        "click_rate_raw": _rate(click_tracking, bool(clicks_raw)),
        "reply_rate": 100 if replies else 0,
        "opens": opens,
        "opens_raw": opens_raw,
        "clicks": clicks,
        "clicks_raw": clicks_raw,
        "replies": replies,
        "first_opened_at": _earliest(first.get(("open", False)), first.get(("click", False))),
        "first_clicked_at": first.get(("click", False)),
        "replied_at": first.get(("reply", False)),
        "auto_replied_at": first.get(("auto_reply", False)),
        "bounced_at": first.get(("bounce", False)),
    }


def _earliest(*times: datetime | None) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


# What replies, auto-replies and bounces change (tracking/replies.py).
INBOUND_COLUMNS = ("reply_rate", "replies", "replied_at", "auto_replied_at", "bounced_at")
# What opens and clicks change (tracking/record.py).
HIT_COLUMNS = (
    "open_rate",
    "open_rate_raw",
    "click_rate",
    "click_rate_raw",
    "opens",
    "opens_raw",
    "clicks",
    "clicks_raw",
    "first_opened_at",
    "first_clicked_at",
)
