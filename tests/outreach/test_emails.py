from __future__ import annotations

import email
import mailbox
from email.message import Message
from pathlib import Path

from sqlalchemy import Engine, select

from outreach.emails import Draft, create_email, mark_sent
from outreach.maildir import MaildirMailbox, build_message
from store.clock import utcnow
from store.schema import emails, endusers, engagements, links
from tracking.instrument import TrackingFlags
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

SIGNER = TokenSigner(["k" * 32])
SETTINGS = TrackingSettings(base_url="https://t.example")
HTML = '<html><body><p><a href="https://example.com/a">a</a></p></body></html>'


def _draft(key: str, enduser_id: int | None, flags: TrackingFlags) -> Draft:
    return Draft(
        key,
        ["sofia@c.example", "jonas@c.example"],
        "Hi",
        HTML,
        "a: https://example.com/a",
        flags,
        enduser_id=enduser_id,
    )


def test_an_email_gets_its_row_engagement_row_and_links(engine: Engine) -> None:
    with engine.begin() as connection:
        sofia = connection.execute(
            endusers.insert()
            .values(email="sofia@c.example", attributes={})
            .returning(endusers.c.id)
        ).scalar_one()
        email_id, body = create_email(
            connection, _draft("k1", sofia, TrackingFlags(True, True)), SIGNER, SETTINGS
        )
        mark_sent(connection, email_id, message_id="<1@c>", sent_at=utcnow())
        row = connection.execute(select(emails).where(emails.c.id == email_id)).one()
        engagement = connection.execute(
            select(engagements).where(engagements.c.email_id == email_id)
        ).one()
        stored_links = connection.execute(
            select(links.c.idx, links.c.url, links.c.honeypot)
            .where(links.c.email_id == email_id)
            .order_by(links.c.idx)
        ).all()
    assert (row.status, row.enduser_id, row.to_addrs) == (
        "sent",
        sofia,
        ["sofia@c.example", "jonas@c.example"],
    )
    assert (
        engagement.enduser_id,
        engagement.open_rate,
        engagement.click_rate,
        engagement.reply_rate,
    ) == (sofia, 0, 0, 0)
    assert engagement.sent_at == row.sent_at
    assert [tuple(link) for link in stored_links] == [
        (0, "", True),
        (1, "https://example.com/a", False),
    ]
    assert "https://t.example/t/o/" in body.html and "https://t.example/t/c/" in body.text


def test_without_tracking_the_rates_are_null_but_replies_are_tracked(engine: Engine) -> None:
    with engine.begin() as connection:
        email_id, body = create_email(
            connection, _draft("k2", None, TrackingFlags(False, False)), SIGNER, SETTINGS
        )
        engagement = connection.execute(
            select(engagements).where(engagements.c.email_id == email_id)
        ).one()
    assert (engagement.open_rate, engagement.click_rate, engagement.reply_rate) == (None, None, 0)
    assert body.html == HTML and body.links == []


def test_the_maildir_mailbox_keeps_sent_mail_readable_and_findable(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "Maildir", "me@us.example")
    message = build_message(
        sender="me@us.example",
        to=["a@c.example", "b@c.example"],
        subject="Hi ✓",
        html="<p>hé</p>",
        text="hé",
        in_reply_to="<first@us.example>",
    )
    delivered = box.send(message)
    assert delivered.message_id == message["Message-ID"]
    assert delivered.message_id.endswith("@us.example>")
    stored = mailbox.Maildir(tmp_path / "Maildir").get_folder("Sent")[delivered.provider_message_id]
    parsed: Message = email.message_from_bytes(bytes(stored))
    assert parsed["To"] == "a@c.example, b@c.example"
    assert (parsed["In-Reply-To"], parsed["References"]) == ("<first@us.example>",) * 2
    kinds = [part.get_content_type() for part in parsed.walk()]
    assert kinds == ["multipart/alternative", "text/plain", "text/html"]
    assert box.find_sent(delivered.message_id) == delivered
    assert box.find_sent("<never-sent@us.example>") is None
