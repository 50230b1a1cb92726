"""What an alert says, for each kind of event."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from notifier.alerts import Alert, Happening, describe

OPEN = Happening(
    kind="open",
    at=datetime(2026, 11, 26, 9, 14, tzinfo=UTC),
    subject="Outage update",
    enduser_email="dana@acme.example",
    enduser_name="Dana Reyes",
    company="Acme",
    campaign_id=3,
    campaign_name="outage",
)


@pytest.mark.parametrize(
    ("event", "alert"),
    [
        (
            OPEN,
            Alert(
                "Dana Reyes opened “Outage update”",
                "Acme · dana@acme.example · campaign #3 (outage) · 2026-11-26 09:14 UTC",
                (3,),
            ),
        ),
        (
            replace(OPEN, kind="click", url="https://status.example/", company=None),
            Alert(
                "Dana Reyes clicked a link in “Outage update”",
                "dana@acme.example · https://status.example/ · campaign #3 (outage) · "
                "2026-11-26 09:14 UTC",
                (3,),
            ),
        ),
        (
            replace(OPEN, kind="reply", enduser_name=None, campaign_id=None),
            Alert(
                "dana@acme.example replied to “Outage update”",
                "Acme · dana@acme.example · 2026-11-26 09:14 UTC",
            ),
        ),
        (
            replace(OPEN, kind="bounce"),
            Alert(
                "“Outage update” bounced: it did not reach dana@acme.example",
                "Acme · dana@acme.example · campaign #3 (outage) · 2026-11-26 09:14 UTC",
                (3,),
            ),
        ),
        (
            replace(OPEN, machine_reason="apple_mpp", campaign_name=None),
            Alert(
                "Dana Reyes opened “Outage update”",
                "Acme · dana@acme.example · campaign #3 · 2026-11-26 09:14 UTC · "
                "a machine (apple_mpp)",
                (3,),
            ),
        ),
    ],
)
def test_describe(event: Happening, alert: Alert) -> None:
    assert describe(event) == alert


def test_the_html_of_an_alert_escapes_what_came_from_outside() -> None:
    alert = describe(replace(OPEN, enduser_name="<script>x</script>"))
    assert "<script>" not in alert.html() and "&lt;script&gt;" in alert.html()
