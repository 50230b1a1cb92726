"""What several test files share: a campaign's sender and settings, planning and sending one
(to numbered endusers, or to Sofia), reading back what it left (rows, and the mail a Maildir
mailbox sent), an Outlook token source, and hits recorded as the tracking server records them."""

from __future__ import annotations

import asyncio
import mailbox
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from outreach.campaigns import CampaignPlan, Outgoing, plan_campaign, run_campaign
from outreach.emails import Draft, create_email, mark_sent
from outreach.mailbox import Mailbox
from outreach.outlook import GraphTokens
from store.clock import utcnow
from store.schema import campaigns, emails, endusers, engagements
from tests.fakes.graph import AUTHORITY_HOST, CLIENT_ID, CLIENT_SECRET, FakeIdentity
from tracking.classify import Hit, Rules
from tracking.instrument import TrackingFlags
from tracking.journal import ROLL_BYTES, Journal
from tracking.loader import HitLoader, LoadReport, load_all
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

SENDER = "me@us.example"
PLAN = CampaignPlan(name="outage", sender_address=SENDER, flags=TrackingFlags(True, True))
SIGNER = TokenSigner(["k" * 32])
TRACKING = TrackingSettings(base_url="https://t.example")
SOFIA, JONAS, ANN = "sofia@customer.example", "jonas@customer.example", "ann@other.example"


def plan_numbered(engine: Engine, count: int) -> int:
    """A campaign to `count` new endusers, u0@c.example and on, one link each: its id."""
    with engine.begin() as connection:
        ids = (
            connection.execute(
                endusers.insert().returning(endusers.c.id),
                [{"email": f"u{i}@c.example", "attributes": {}} for i in range(count)],
            )
            .scalars()
            .all()
        )
        outgoing = [
            Outgoing(
                [f"u{i}@c.example"],
                f"Hi {i}",
                f'<p><a href="https://a.example/{i}">x</a></p>',
                f"Hi {i}",
                enduser,
            )
            for i, enduser in enumerate(ids)
        ]
        return plan_campaign(connection, PLAN, outgoing, SIGNER, TRACKING)


def campaign_status(engine: Engine, campaign_id: int) -> tuple[str, int, str | None]:
    """(status, emails sent, why it paused or stopped)."""
    with engine.connect() as connection:
        row = connection.execute(select(campaigns).where(campaigns.c.id == campaign_id)).one()
    return row.status, row.sent_count, row.status_reason


def send_campaign(engine: Engine, box: Mailbox, outgoing: list[Outgoing], **plan: Any) -> list[Any]:
    """Plan the emails (PLAN, changed by `plan`) and send them all: their rows, in order."""
    with engine.begin() as connection:
        campaign = plan_campaign(connection, replace(PLAN, **plan), outgoing, SIGNER, TRACKING)
    run_campaign(engine, campaign, box, owner="test")
    with engine.connect() as connection:
        query = select(emails).where(emails.c.campaign_id == campaign).order_by(emails.c.id)
        return list(connection.execute(query))


def sofias_reply(email: Any, n: int, *, headers: bool = True) -> bytes:
    """Sofia's answer number n to `email`; without headers it names none of our emails."""
    linked = f"In-Reply-To: {email.message_id}\n" if headers else ""
    return (
        f"From: {SOFIA}\nTo: {SENDER}\nSubject: Re: Outage\n"
        f"Message-ID: <r{n}@customer.example>\n{linked}\nAnswer {n}\n"
    ).encode()


def engagement_of(engine: Engine, email_id: int) -> Any:
    with engine.connect() as connection:
        return connection.execute(
            select(engagements).where(engagements.c.email_id == email_id)
        ).one()


def graph_tokens(
    identity: FakeIdentity, refresh_token: str, secret: str = CLIENT_SECRET
) -> GraphTokens:
    return GraphTokens(
        CLIENT_ID,
        secret,
        refresh_token=refresh_token,
        address=SENDER,
        authority_host=AUTHORITY_HOST,
        http_client=identity.http_client(),
    )


def sent_mail(folder: Path) -> list[mailbox.MaildirMessage]:
    """What a Maildir mailbox at `folder` has sent (its .Sent folder), in no particular order."""
    if not (folder / ".Sent").exists():
        return []
    return list(mailbox.Maildir(folder).get_folder("Sent"))


def subject(message: mailbox.MaildirMessage) -> str:
    """The Subject as a reader sees it (encoded words decoded)."""
    return str(make_header(decode_header(str(message["Subject"]))))


def sent_email(engine: Engine, key: str, flags: TrackingFlags = PLAN.flags) -> int:
    """One email with two links, sent an hour ago (past the machine window): its id."""
    html = '<p><a href="https://a.example/1">1</a> <a href="https://a.example/2">2</a></p>'
    with engine.begin() as connection:
        email_id, _ = create_email(
            connection, Draft(key, [f"{key}@c.example"], "Hi", html, "", flags), SIGNER, TRACKING
        )
        mark_sent(
            connection, email_id, message_id=f"<{key}@t>", sent_at=utcnow() - timedelta(hours=1)
        )
    return email_id


def journal_hits(
    folder: Path, hits: Sequence[tuple[int, Hit]], roll_bytes: int = ROLL_BYTES
) -> None:
    """(email id, hit) pairs into a journal in `folder`, all at once as concurrent requests
    would, by a writer that then stops (its files are finished)."""

    async def write() -> None:
        journal = Journal(folder, roll_bytes)
        journal.start()
        await asyncio.gather(*(journal.append(email_id, hit) for email_id, hit in hits))
        await journal.stop()

    asyncio.run(write())


def record_hits(
    engine: Engine, hits: Sequence[tuple[int, Hit]], *, rules: Rules | None = None
) -> LoadReport:
    """(email id, hit) pairs as the tracking server records them: into a journal, then loaded
    into the database by the loader."""
    with tempfile.TemporaryDirectory(prefix="mailbeacon-journal-") as folder:
        journal_hits(Path(folder), hits)
        return load_all(HitLoader(engine, Path(folder), rules or Rules()))
