from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracking.engagement import Tally, engagement_values

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def t(kind: str, machine: bool = False, count: int = 1, minutes: int = 0) -> Tally:
    return Tally(kind, machine, count, T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(
    ("tallies", "opens", "clicks", "expected"),
    [
        ([], True, True, {"open_rate": 0, "click_rate": 0, "reply_rate": 0}),
        ([], False, False, {"open_rate": None, "click_rate": None, "reply_rate": 0}),
        ([t("open")], True, True, {"open_rate": 100, "click_rate": 0}),
        # A human click implies an open, also when the pixel never loaded.
        ([t("click")], True, True, {"open_rate": 100, "click_rate": 100}),
        # ... but not when open tracking was off: that rate stays null.
        ([t("click")], False, True, {"open_rate": None, "click_rate": 100}),
        # Machine opens count only in the raw rate.
        ([t("open", machine=True)], True, True, {"open_rate": 0, "open_rate_raw": 100}),
        ([t("click", machine=True)], True, True, {"click_rate": 0, "click_rate_raw": 100}),
        ([t("click", machine=True)], True, True, {"open_rate": 0, "open_rate_raw": 100}),
        # Replies are tracked always, whatever the open/click flags.
        ([t("reply")], False, False, {"reply_rate": 100, "open_rate": None}),
        # Auto-replies and bounces are not replies.
        ([t("auto_reply"), t("bounce")], True, True, {"reply_rate": 0}),
        (
            [t("open", count=3), t("open", True, 2), t("click", count=1)],
            True,
            True,
            {"opens": 3, "opens_raw": 5, "clicks": 1, "clicks_raw": 1},
        ),
    ],
)
def test_rates_follow_the_engagement_rules(
    tallies: list[Tally], opens: bool, clicks: bool, expected: dict[str, object]
) -> None:
    values = engagement_values(tallies, open_tracking=opens, click_tracking=clicks)
    assert {key: values[key] for key in expected} == expected


def test_first_open_is_the_earliest_human_open_or_click() -> None:
    values = engagement_values(
        [t("open", machine=True, minutes=1), t("click", minutes=5), t("open", minutes=9)],
        open_tracking=True,
        click_tracking=True,
    )
    assert values["first_opened_at"] == T0 + timedelta(minutes=5)
    assert values["first_clicked_at"] == T0 + timedelta(minutes=5)
