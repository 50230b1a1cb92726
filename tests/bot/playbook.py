"""A campaign played out for the command tests: who opened (a person or Apple's proxy),
clicked, replied or bounced, recorded the way the tracking server and reply sync record it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from store.schema import emails, engagements, events
from tests.bot.conftest import Team
from tests.helpers import record_hits
from tracking.classify import Hit

DANA = "dana.reyes@acme-logistics.example"
SAM = "sam.okafor@acme-logistics.example"
LEE = "lee.chen@acme-logistics.example"
PRIYA = "priya.nair@bluebird-health.example"
INGRID = "ingrid.larsen@northwind.example"
RAJ = "raj.patel@initech.example"
OLIVIA = "olivia.hart@globex.example"

PERSON = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"
APPLE_MPP = "Mozilla/5.0"  # Apple Mail Privacy Protection fetches every image: a machine
LATER = timedelta(hours=1)  # well past the machine window after sending


def email_of(team: Team) -> dict[str, int]:
    """The newest email to each address (its first To recipient)."""
    with team.engine.connect() as connection:
        rows = connection.execute(select(emails.c.id, emails.c.to_addrs).order_by(emails.c.id))
        return {row.to_addrs[0]: row.id for row in rows}


def hits(team: Team, *played: tuple[str, str, str]) -> None:
    """(address, open|click, user agent) hits, an hour after sending, through the journal and
    loader the tracking server runs."""
    email_ids = email_of(team)
    at = team.clock() + LATER

    record_hits(
        team.engine,
        [
            (
                email_ids[address],
                Hit(
                    "open" if kind == "open" else "click",
                    at,
                    1 if kind == "click" else None,
                    user_agent=user_agent,
                ),
            )
            for address, kind, user_agent in played
        ],
    )


def inbound(team: Team, address: str, kind: str) -> None:
    """A reply, auto-reply or bounce to the email sent to `address`, stored as reply sync
    stores it: one event, and the engagement row updated with it."""
    email_id = email_of(team)[address]
    at = team.clock() + LATER
    changes: dict[str, dict[str, Any]] = {
        "reply": {"reply_rate": 100, "replies": 1, "replied_at": at},
        "auto_reply": {"auto_replied_at": at},
        "bounce": {"bounced_at": at},
    }
    with team.engine.begin() as connection:
        connection.execute(events.insert().values(email_id=email_id, kind=kind, at=at))
        connection.execute(
            update(engagements).where(engagements.c.email_id == email_id).values(**changes[kind])
        )


def everyone_did_something(team: Team) -> None:
    """The outage to Dana (opens), Sam (only Apple's proxy opens), Lee (clicks), Priya
    (replies), Ingrid (nothing), Raj (bounces)."""
    team.run(f"send outage to {DANA}, {SAM}, {LEE}, {PRIYA}, {INGRID}, {RAJ}", yes=True)
    hits(team, (DANA, "open", PERSON), (SAM, "open", APPLE_MPP), (LEE, "click", PERSON))
    inbound(team, PRIYA, "reply")
    inbound(team, RAJ, "bounce")
