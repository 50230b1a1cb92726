"""Quiet hours, in the user's time zone, across midnight or not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from notifier.quiet import is_quiet_range, quiet_until


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "time_zone", "quiet", "expected"),
    [
        (utc(26, 23, 0), "UTC", "22:00-07:00", utc(27, 7, 0)),
        (utc(26, 3, 0), "UTC", "22:00-07:00", utc(26, 7, 0)),
        (utc(26, 7, 0), "UTC", "22:00-07:00", None),  # the quiet has just ended
        (utc(26, 21, 59), "UTC", "22:00-07:00", None),
        (utc(26, 12, 30), "UTC", "12:00-13:00", utc(26, 13, 0)),
        (utc(26, 13, 30), "UTC", "12:00-13:00", None),
        # 22:30 UTC is 23:30 in Berlin: quiet until 07:00 there, 06:00 UTC.
        (utc(26, 22, 30), "Europe/Berlin", "22:00-07:00", utc(27, 6, 0)),
        (utc(26, 21, 30), "America/New_York", "22:00-07:00", None),  # 16:30 there
        (utc(26, 23, 0), "UTC", None, None),
        (utc(26, 23, 0), "UTC", "", None),
    ],
)
def test_quiet_until(
    now: datetime, time_zone: str, quiet: str | None, expected: datetime | None
) -> None:
    assert quiet_until(now, time_zone, quiet) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22:00-07:00", True),
        ("09:30-10:15", True),
        ("22:00-22:00", False),
        ("24:00-07:00", False),
        ("22-7", False),
        ("22:00 - 07:00", False),
    ],
)
def test_is_quiet_range(text: str, expected: bool) -> None:
    assert is_quiet_range(text) is expected
