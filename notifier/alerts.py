"""What an alert says: one line to read at a glance, and one with the details. Pure."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Happening:
    """An event as an alert tells it."""

    kind: str
    at: datetime
    subject: str  # of our email
    enduser_email: str | None
    enduser_name: str | None
    company: str | None
    campaign_id: int | None
    campaign_name: str | None
    url: str | None = None  # the link clicked
    machine_reason: str | None = None


@dataclass(frozen=True)
class Alert:
    title: str
    details: str
    # The campaigns it is about, for channels that offer buttons (Slack: open, follow up).
    campaigns: tuple[int, ...] = ()

    def html(self) -> str:
        return (
            f"<p><strong>{html.escape(self.title)}</strong></p><p>{html.escape(self.details)}</p>"
        )


_DONE = {
    "open": "opened",
    "click": "clicked a link in",
    "reply": "replied to",
}


def describe(event: Happening) -> Alert:
    who = event.enduser_name or event.enduser_email or "Someone"
    if event.kind == "bounce":
        title = f"“{event.subject}” bounced: it did not reach {event.enduser_email or who}"
    else:
        title = f"{who} {_DONE.get(event.kind, event.kind)} “{event.subject}”"
    details = [part for part in (event.company, event.enduser_email) if part]
    if event.url:
        details.append(event.url)
    if event.campaign_id is not None:
        name = f" ({event.campaign_name})" if event.campaign_name else ""
        details.append(f"campaign #{event.campaign_id}{name}")
    details.append(f"{event.at:%Y-%m-%d %H:%M} UTC")
    if event.machine_reason:
        details.append(f"a machine ({event.machine_reason})")
    campaigns = () if event.campaign_id is None else (event.campaign_id,)
    return Alert(title, " · ".join(details), campaigns)
