"""The Outlook mailbox against a fake Graph and a fake identity platform: msal sign-in, sending
a draft made from our MIME, Graph's limits and errors, and the in-flight check."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from urllib.parse import parse_qs

import httpx
import pytest
from sqlalchemy import Engine, select, update

from outreach.campaigns import run_campaign
from outreach.mailbox import DailyLimitReached, MailboxError, PermanentFailure
from outreach.maildir import build_message
from outreach.outlook import GraphTokens, OutlookMailbox, graph_error
from outreach.pacing import Pacer
from store.schema import campaigns, emails
from tests.fakes.graph import (
    FakeGraph,
    FakeIdentity,
)
from tests.helpers import SENDER, campaign_status, graph_tokens, plan_numbered


@dataclass
class FakeTime:
    now: datetime = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


@dataclass
class Outlook:
    identity: FakeIdentity
    graph: FakeGraph
    tokens: GraphTokens
    mailbox: OutlookMailbox
    time: FakeTime


@pytest.fixture
def outlook() -> Iterator[Outlook]:
    identity = FakeIdentity(SENDER)
    graph = FakeGraph(identity)
    tokens = graph_tokens(identity, identity.grant())
    time = FakeTime()
    mailbox = OutlookMailbox(
        SENDER, tokens, transport=graph.transport(), clock=time, sleep=time.sleep
    )
    yield Outlook(identity, graph, tokens, mailbox, time)
    mailbox.close()


def _message(to: str = "ann@c.example", in_reply_to: str | None = None) -> EmailMessage:
    return build_message(
        sender=SENDER,
        to=[to],
        subject="Your renewal",
        html='<p>Hi Ann, <a href="https://a.example/r">renew</a></p>',
        text="Hi Ann, renew: https://a.example/r",
        in_reply_to=in_reply_to,
    )


def _calls(requests: list[httpx.Request]) -> list[str]:
    return [f"{request.method} {request.url.path.removeprefix('/v1.0')}" for request in requests]


# Sign-in


def test_msal_redeems_the_refresh_token_and_keeps_the_access_token(outlook: Outlook) -> None:
    granted = next(iter(outlook.identity.refresh_tokens))
    token = outlook.tokens.access_token()
    assert token in outlook.identity.access_tokens
    discovery, redeem = outlook.identity.requests
    assert discovery.url.path == "/common/v2.0/.well-known/openid-configuration"
    form = parse_qs(redeem.content.decode())
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [granted]
    assert {
        "https://graph.microsoft.com/Mail.Send",
        "https://graph.microsoft.com/Mail.ReadWrite",
    } <= set(form["scope"][0].split())
    assert outlook.tokens.access_token() == token
    assert len(outlook.identity.requests) == 2  # cached: no request
    # Refreshing uses the refresh token Microsoft rotated in, not the one first given.
    fresh = outlook.tokens.access_token(refresh=True)
    assert fresh != token and fresh in outlook.identity.access_tokens
    assert parse_qs(outlook.identity.requests[-1].content.decode())["refresh_token"] != [granted]


def test_a_refused_refresh_token_says_how_to_sign_in_again() -> None:
    identity = FakeIdentity(SENDER)
    with pytest.raises(MailboxError) as refused:
        graph_tokens(identity, "rt-revoked").access_token()
    assert str(refused.value).startswith(f"Outlook sign-in expired for {SENDER} (invalid_grant")
    assert str(refused.value).endswith(f"run `mailbeacon connect outlook --as {SENDER}` again")
    with pytest.raises(MailboxError, match="check the Outlook client id and client secret"):
        graph_tokens(identity, identity.grant(), secret="expired").access_token()


# Sending


def test_a_message_is_sent_as_a_draft_made_from_our_mime(outlook: Outlook) -> None:
    message = _message()
    delivered = outlook.mailbox.send(message)
    (item,) = outlook.graph.in_folder("sentitems")
    assert delivered.message_id == message["Message-ID"] == item.internet_message_id
    assert (delivered.provider_message_id, delivered.thread_id) == (item.id, item.conversation_id)
    create, send = outlook.graph.requests
    assert _calls([create, send]) == ["POST /me/messages", f"POST /me/messages/{item.id}/send"]
    assert create.headers["Content-Type"] == "text/plain"
    assert base64.b64decode(create.content).replace(b"\r\n", b"\n") == message.as_bytes()
    (sent,) = outlook.graph.sent()
    assert sent.items() == message.items()
    assert [(part.get_content_type(), part.get_content()) for part in sent.iter_parts()] == [
        (part.get_content_type(), part.get_content()) for part in message.iter_parts()
    ]
    assert outlook.graph.in_folder("drafts") == []


def test_a_reply_joins_the_conversation_of_the_message_it_answers(outlook: Outlook) -> None:
    first = outlook.mailbox.send(_message())
    reply = outlook.mailbox.send(_message(in_reply_to=first.message_id))
    other = outlook.mailbox.send(_message("bob@c.example"))
    assert reply.thread_id == first.thread_id != other.thread_id


def test_find_sent_looks_the_message_id_up_in_sent_items(outlook: Outlook) -> None:
    message = _message()
    # An apostrophe is legal in a Message-ID and must be quoted in the OData filter.
    message.replace_header("Message-ID", "<o'brien.1@us.example>")
    delivered = outlook.mailbox.send(message)
    assert outlook.mailbox.find_sent("<o'brien.1@us.example>") == delivered
    assert outlook.mailbox.find_sent("<never@us.example>") is None
    # Still in the Outbox while Exchange submits it: accepted, so not to be sent again.
    submitting = outlook.graph.put(_message("bob@c.example").as_bytes(), "outbox")
    found = outlook.mailbox.find_sent(submitting.internet_message_id)
    assert found is not None and found.provider_message_id == submitting.id
    assert "DELETE" not in {request.method for request in outlook.graph.requests}


def test_an_expired_access_token_is_refreshed_once(outlook: Outlook) -> None:
    outlook.mailbox.send(_message())
    outlook.identity.expire_access_tokens()
    outlook.mailbox.send(_message("bob@c.example"))
    assert [response.status_code for response in outlook.graph.responses] == [
        201,
        202,
        401,
        201,
        202,
    ]
    outlook.graph.fail_next(401, "InvalidAuthenticationToken", times=2)
    with pytest.raises(MailboxError, match=f"connect outlook --as {SENDER}` again"):
        outlook.mailbox.send(_message("cy@c.example"))


def test_a_send_refused_after_its_draft_was_made_sends_that_draft_on_retry(
    outlook: Outlook,
) -> None:
    outlook.graph.fail_next(503, "ServiceUnavailable", retry_after=2, on="/send")
    message = _message()
    with pytest.raises(MailboxError) as busy:
        outlook.mailbox.send(message)
    assert busy.value.retry_after == 2 and type(busy.value) is MailboxError
    assert len(outlook.graph.in_folder("drafts")) == 1
    outlook.mailbox.send(message)
    assert _calls(outlook.graph.requests).count("POST /me/messages") == 1
    assert outlook.graph.in_folder("drafts") == [] and len(outlook.graph.sent()) == 1


def test_a_draft_deleted_in_outlook_before_the_retry_is_made_again(outlook: Outlook) -> None:
    outlook.graph.fail_next(503, "ServiceUnavailable", on="/send")
    message = _message()
    with pytest.raises(MailboxError):
        outlook.mailbox.send(message)
    (draft,) = outlook.graph.in_folder("drafts")
    del outlook.graph.messages[draft.id]
    with pytest.raises(MailboxError, match="was deleted before it was sent"):
        outlook.mailbox.send(message)
    outlook.mailbox.send(message)
    assert _sent_to(outlook.graph) == Counter({"ann@c.example": 1})


def _graph_response(
    status: int, code: str, message: str = "", retry_after: str | None = None
) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(
        status, json={"error": {"code": code, "message": message}}, headers=headers
    )


@pytest.mark.parametrize(
    ("response", "kind", "retry_after", "says"),
    [
        (
            _graph_response(429, "ApplicationThrottled", retry_after="12"),
            MailboxError,
            12.0,
            "busy",
        ),
        (_graph_response(503, "ServiceUnavailable", retry_after="3"), MailboxError, 3.0, "busy"),
        (_graph_response(504, "GatewayTimeout"), MailboxError, None, "busy"),
        (
            _graph_response(403, "ErrorSubmissionQuotaExceeded", "Submission quota exceeded."),
            DailyLimitReached,
            None,
            "Submission quota exceeded. (ErrorSubmissionQuotaExceeded)",
        ),
        (
            _graph_response(403, "ErrorQuotaExceeded", "Mailbox has exceeded maximum size."),
            DailyLimitReached,
            None,
            "maximum size",
        ),
        (
            _graph_response(
                500, "ErrorInternalServerError", "STOREDRV.SubmissionQuotaExceededException"
            ),
            DailyLimitReached,
            None,
            "SubmissionQuotaExceededException",
        ),
        (
            _graph_response(403, "ErrorAccessDenied", "Access is denied."),
            PermanentFailure,
            None,
            "refused the request (403 ErrorAccessDenied): Access is denied.",
        ),
        (httpx.Response(400, text="<html>bad</html>"), PermanentFailure, None, "<html>bad</html>"),
    ],
)
def test_graph_errors_mean_retry_pause_or_fail(
    response: httpx.Response, kind: type[MailboxError], retry_after: float | None, says: str
) -> None:
    error = graph_error(response, SENDER)
    assert type(error) is kind
    assert error.retry_after == retry_after
    assert says in str(error)


# Limits


def test_sends_are_paced_to_thirty_a_minute(outlook: Outlook) -> None:
    for i in range(30):
        outlook.mailbox.send(_message(f"u{i}@c.example"))
    assert outlook.time.sleeps == []
    outlook.mailbox.send(_message("u30@c.example"))
    assert outlook.time.sleeps == [60.0]  # the clock stood still: wait for the first to age out
    assert len(outlook.graph.sent()) == 31


def test_the_pacer_waits_only_as_long_as_the_oldest_needs() -> None:
    time = FakeTime()
    pacer = Pacer(3, timedelta(minutes=1), time, time.sleep)
    for _ in range(3):
        pacer.wait()
        time.now += timedelta(seconds=10)
    pacer.wait()  # at 30 s: waits until the first (at 0 s) has aged out, and goes at 60 s
    time.now += timedelta(seconds=45)
    pacer.wait()  # at 105 s: only the one at 60 s is still in the window
    assert time.sleeps == [30.0]


def test_a_campaign_waits_out_throttling_as_graph_asks(engine: Engine, outlook: Outlook) -> None:
    campaign_id = plan_numbered(engine, 3)
    outlook.graph.fail_next(429, "ApplicationThrottled", retry_after=7, times=2)
    waits: list[float] = []
    report = run_campaign(engine, campaign_id, outlook.mailbox, owner="test", sleep=waits.append)
    assert waits == [7.0, 7.0]
    assert (report.sent, report.paused) == (3, None)
    assert _sent_to(outlook.graph) == Counter({f"u{i}@c.example": 1 for i in range(3)})
    assert campaign_status(engine, campaign_id) == ("sent", 3, None)
    with engine.connect() as connection:
        rows = connection.execute(select(emails).order_by(emails.c.id)).all()
    sent = outlook.graph.in_folder("sentitems")
    assert [(row.provider_message_id, row.thread_id) for row in rows] == [
        (item.id, item.conversation_id) for item in sent
    ]


def test_a_daily_limit_pauses_the_campaign_and_a_later_run_completes(
    engine: Engine, outlook: Outlook
) -> None:
    campaign_id = plan_numbered(engine, 5)
    outlook.graph.daily_limit = 3
    report = run_campaign(engine, campaign_id, outlook.mailbox, owner="test", sleep=_no_sleep)
    assert (report.sent, report.found_already_sent) == (3, 0)
    status, sent_count, reason = campaign_status(engine, campaign_id)
    assert (status, sent_count) == ("paused", 3)
    assert reason is not None
    assert reason.startswith(f"{SENDER} reached its daily sending limit: ")
    assert "ErrorSubmissionQuotaExceeded" in reason
    outlook.graph.daily_limit = None  # the next day
    report = run_campaign(engine, campaign_id, outlook.mailbox, owner="test", sleep=_no_sleep)
    assert (report.sent, report.found_already_sent, report.paused) == (2, 0, None)
    assert campaign_status(engine, campaign_id)[:2] == ("sent", 5)
    assert _sent_to(outlook.graph) == Counter({f"u{i}@c.example": 1 for i in range(5)})
    assert outlook.graph.in_folder("drafts") == []


# The email in flight when a sender stopped


def _stop_while_sending_the_first(engine: Engine) -> bytes:
    with engine.begin() as connection:
        first = connection.execute(select(emails).order_by(emails.c.id)).first()
        assert first is not None
        connection.execute(update(emails).where(emails.c.id == first.id).values(status="sending"))
        connection.execute(update(campaigns).values(lease_owner="dead", lease_expires_at=None))
    mime: bytes = first.mime
    return mime


def test_a_draft_the_sender_never_sent_is_deleted_and_sent_once(
    engine: Engine, outlook: Outlook
) -> None:
    campaign_id = plan_numbered(engine, 3)
    stale = outlook.graph.put(_stop_while_sending_the_first(engine), "drafts")
    report = run_campaign(engine, campaign_id, outlook.mailbox, owner="test", sleep=_no_sleep)
    assert (report.sent, report.found_already_sent) == (3, 0)
    assert f"DELETE /me/messages/{stale.id}" in _calls(outlook.graph.requests)
    assert outlook.graph.in_folder("drafts") == []
    assert _sent_to(outlook.graph) == Counter({f"u{i}@c.example": 1 for i in range(3)})


def test_an_email_already_in_sent_items_is_not_sent_again(engine: Engine, outlook: Outlook) -> None:
    campaign_id = plan_numbered(engine, 3)
    already = outlook.graph.put(_stop_while_sending_the_first(engine), "sentitems")
    report = run_campaign(engine, campaign_id, outlook.mailbox, owner="test", sleep=_no_sleep)
    assert (report.sent, report.found_already_sent) == (2, 1)
    assert _sent_to(outlook.graph) == Counter({f"u{i}@c.example": 1 for i in range(3)})
    with engine.connect() as connection:
        first = connection.execute(select(emails).order_by(emails.c.id)).first()
    assert first is not None
    assert (first.provider_message_id, first.thread_id) == (already.id, already.conversation_id)


def _sent_to(graph: FakeGraph) -> Counter[str]:
    return Counter(str(message["To"]) for message in graph.sent())


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"nothing here should wait ({seconds} s)")
