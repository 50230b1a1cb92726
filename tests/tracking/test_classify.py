from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tracking.classify import (
    SIGNALS,
    EmailFacts,
    Hit,
    Rules,
    classify_window,
    parse_networks,
)

SENT = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=2)
DESKTOP = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko)"
EMAIL = EmailFacts(sent_at=SENT, sender_user_id=7, link_count=3)
RULES = Rules(
    machine_after_send=timedelta(seconds=30), internal_networks=parse_networks(["10.0.0.0/8"])
)


def at(seconds: float) -> datetime:
    return LATER + timedelta(seconds=seconds)


def open_(seconds: float = 0, **kw: object) -> Hit:
    return Hit("open", at(seconds), None, **{"user_agent": DESKTOP, "ip": "198.51.100.1", **kw})  # type: ignore[arg-type]


def click(idx: int, seconds: float = 0, **kw: object) -> Hit:
    return Hit("click", at(seconds), idx, **{"user_agent": DESKTOP, "ip": "198.51.100.1", **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("hit", "reason"),
    [
        (open_(), None),
        (click(1), None),
        (open_(user_agent="Mozilla/5.0"), "apple_mpp"),
        (click(2, method="HEAD"), "head_request"),
        (click(0), "honeypot"),
        (open_(user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)"), "bot_user_agent"),
        (click(1, user_agent="Barracuda Sentinel (EE)"), "bot_user_agent"),
        (click(1, user_agent="python-requests/2.32"), "bot_user_agent"),
        (open_(user_agent=""), "bot_user_agent"),
        # Gmail's image proxy fetches when a person opens the message: human.
        (
            open_(
                user_agent="Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
                "(via ggpht.com GoogleImageProxy)"
            ),
            None,
        ),
        (open_(viewer_user_id=7), "sender"),
        (open_(viewer_user_id=8), None),
        (open_(ip="10.1.2.3"), "internal_network"),
        (Hit("open", SENT + timedelta(seconds=3), user_agent=DESKTOP), "soon_after_send"),
        (Hit("open", SENT + timedelta(seconds=31), user_agent=DESKTOP), None),
    ],
)
def test_single_hit_signals(hit: Hit, reason: str | None) -> None:
    assert classify_window([hit], EMAIL, RULES) == [reason]


def test_a_honeypot_hit_marks_same_address_hits_within_ten_seconds_both_ways() -> None:
    hits = [
        open_(-9),  # before the honeypot, same address: machine
        click(1, -3),
        click(0, 0),
        click(2, 8),  # after, same address: machine
        click(1, 12),  # too late: human
        open_(1, ip="203.0.113.9"),  # another address: human
    ]
    assert classify_window(hits, EMAIL, RULES) == [
        "honeypot",
        "honeypot",
        "honeypot",
        "honeypot",
        None,
        None,
    ]


def test_all_links_within_five_seconds_is_a_scanner() -> None:
    hits = [click(1, 0), click(2, 1.5), click(3, 4.9)]
    assert classify_window(hits, EMAIL, RULES) == ["link_burst"] * 3


def test_all_links_but_spread_out_is_a_person() -> None:
    hits = [click(1, 0), click(2, 3), click(3, 9)]
    assert classify_window(hits, EMAIL, RULES) == [None, None, None]


def test_some_links_quickly_is_a_person() -> None:
    hits = [click(1, 0), click(2, 0.5), click(1, 1)]
    assert classify_window(hits, EMAIL, RULES) == [None, None, None]


def test_an_email_with_one_link_is_never_a_burst() -> None:
    one_link = EmailFacts(sent_at=SENT, sender_user_id=None, link_count=1)
    assert classify_window([click(1)], one_link, RULES) == [None]


def test_an_already_classified_hit_keeps_its_reason() -> None:
    assert classify_window([open_(reason="apple_mpp")], EMAIL, RULES) == ["apple_mpp"]


def test_every_signal_is_registered_under_its_reason() -> None:
    assert list(SIGNALS) == [
        "head_request",
        "honeypot",
        "apple_mpp",
        "bot_user_agent",
        "sender",
        "internal_network",
        "link_burst",
        "soon_after_send",
    ]
