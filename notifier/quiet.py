"""Quiet hours: a user's alerts that come between, say, 22:00 and 07:00 their time wait until
the quiet ends. Pure."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from notifier.digests import zone

_RANGE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def is_quiet_range(text: str) -> bool:
    """Two times of day such as "22:00-07:00", the start first; equal times make no range."""
    match = _RANGE.fullmatch(text)
    return match is not None and match.group(1, 2) != match.group(3, 4)


def quiet_until(now: datetime, time_zone: str, quiet_hours: str | None) -> datetime | None:
    """When the quiet that `now` falls in ends, or None when it is not quiet now."""
    if not quiet_hours or not is_quiet_range(quiet_hours):
        return None
    local = now.astimezone(zone(time_zone))
    start_text, end_text = quiet_hours.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    at = local.time()
    if start < end:  # 13:00-14:00
        quiet = start <= at < end
        ends_on = local.date()
    else:  # 22:00-07:00, across midnight
        quiet = at >= start or at < end
        ends_on = local.date() + timedelta(days=1) if at >= start else local.date()
    if not quiet:
        return None
    return datetime.combine(ends_on, end, local.tzinfo).astimezone(now.tzinfo)
