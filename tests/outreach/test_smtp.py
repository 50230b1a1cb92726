"""The SMTP mailbox against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import Engine, select

from mailbeacon.serve import free_port
from outreach.campaigns import CampaignPlan, Outgoing, plan_campaign, run_campaign
from outreach.mailbox import DailyLimitReached, MailboxError, PermanentFailure
from outreach.maildir import build_message
from outreach.smtp import SmtpMailbox, SmtpSettings
from store.schema import campaigns, emails
from tracking.instrument import TrackingFlags
from tracking.settings import TrackingSettings
from tracking.tokens import TokenSigner

SENDER = "me@us.example"


class Server:
    """Accepts mail into `received`; answers the codes queued in `answers` first."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.answers: list[str] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answers:
            return self.answers.pop(0)
        self.received.append(email.message_from_bytes(envelope.original_content))
        return "250 Message accepted"


def _authenticate(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"me", b"secret")
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Server, SmtpSettings]]:
    handler = Server()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield (
            handler,
            SmtpSettings("127.0.0.1", port, security="none", username="me", password="secret"),
        )
    finally:
        controller.stop()


def _message(to: list[str]) -> Any:
    return build_message(sender=SENDER, to=to, subject="Hi", html="<p>hi</p>", text="hi")


def test_a_message_goes_out_whole(smtp: tuple[Server, SmtpSettings]) -> None:
    server, settings = smtp
    message = _message(["a@c.example", "b@c.example"])
    delivered = SmtpMailbox(SENDER, settings).send(message)
    assert delivered.message_id == message["Message-ID"]
    [received] = server.received
    assert received["Message-ID"] == message["Message-ID"]
    assert received["To"] == "a@c.example, b@c.example"
    assert [p.get_content_type() for p in received.walk()] == [
        "multipart/alternative",
        "text/plain",
        "text/html",
    ]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("451 4.3.0 Try again later", MailboxError),
        ("550 5.4.5 Daily user sending quota exceeded", DailyLimitReached),
        ("554 5.6.0 Message rejected: content", PermanentFailure),
    ],
)
def test_server_answers_become_the_right_errors(
    smtp: tuple[Server, SmtpSettings], answer: str, error: type[MailboxError]
) -> None:
    server, settings = smtp
    server.answers.append(answer)
    with pytest.raises(error, match=answer.split(" ", 1)[0]) as raised:
        SmtpMailbox(SENDER, settings).send(_message(["a@c.example"]))
    assert type(raised.value) is error


def test_an_unreachable_server_is_clear() -> None:
    closed = SmtpSettings("127.0.0.1", free_port(), security="none")
    with pytest.raises(MailboxError, match=r"cannot reach 127\.0\.0\.1"):
        SmtpMailbox(SENDER, closed).send(_message(["a@c.example"]))


def test_a_campaign_through_smtp_marks_refused_addresses_failed_and_goes_on(
    engine: Engine, smtp: tuple[Server, SmtpSettings], tmp_path: Path
) -> None:
    server, settings = smtp
    server.refuse.add("nobody@c.example")
    server.answers.append("451 4.7.1 Greylisted, try again")
    outgoing = [
        Outgoing([address], "Hi", "<p>hi</p>", "hi", None)
        for address in ("a@c.example", "nobody@c.example", "b@c.example")
    ]
    with engine.begin() as connection:
        campaign_id = plan_campaign(
            connection,
            CampaignPlan("smtp", SENDER, TrackingFlags(opens=False, clicks=False)),
            outgoing,
            TokenSigner(["k" * 32]),
            TrackingSettings(base_url="https://t.example"),
        )
    waits: list[float] = []
    report = run_campaign(
        engine, campaign_id, SmtpMailbox(SENDER, settings), owner="t", sleep=waits.append
    )
    assert (report.sent, report.failed, waits) == (2, 1, [2.0])
    assert sorted(m["To"] for m in server.received) == ["a@c.example", "b@c.example"]
    with engine.connect() as connection:
        failed = connection.execute(select(emails).where(emails.c.status == "failed")).one()
        campaign = connection.execute(select(campaigns)).one()
    assert "nobody@c.example (550 5.1.1 No such user)" in failed.error
    assert (campaign.status, campaign.sent_count, campaign.failed_count) == ("sent", 2, 1)
