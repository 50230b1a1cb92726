"""The Gmail mailbox: the real google-api-python-client against a stateful fake Gmail."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from sqlalchemy import Engine, select, update

from mailbeacon.serve import free_port
from outreach.campaigns import Outgoing, plan_campaign, run_campaign
from outreach.gmail import GmailMailbox, gmail_error
from outreach.mailbox import DailyLimitReached, MailboxError, PermanentFailure
from outreach.maildir import build_message
from store.schema import campaigns, emails, endusers
from tests.fakes.gmail import FakeGmail, parse
from tests.helpers import PLAN, SENDER, SIGNER, TRACKING, campaign_status, plan_numbered

TOKEN = "fake-token"


def _credentials(token: str) -> Credentials:
    # No refresh token and no expiry: google-auth sends the token as it is, never refreshing.
    return Credentials(token=token)  # type: ignore[no-untyped-call]


@pytest.fixture
def gmail() -> Iterator[FakeGmail]:
    with FakeGmail(address=SENDER, token=TOKEN) as fake:
        yield fake


@pytest.fixture
def box(gmail: FakeGmail) -> Iterator[GmailMailbox]:
    # Pacing is tested on its own below; here it must not slow the tests down.
    with GmailMailbox(
        SENDER, _credentials(TOKEN), api_endpoint=gmail.url, sleep=lambda seconds: None
    ) as box:
        yield box


def _message(
    subject: str = "Our outage",
    *,
    to: list[str] | None = None,
    cc: list[str] | None = None,
    in_reply_to: str | None = None,
) -> EmailMessage:
    return build_message(
        sender=SENDER,
        to=to or ["sofia@customer.example"],
        cc=cc,
        subject=subject,
        html="<p>We are <b>sorry</b>.</p>",
        text="We are sorry.",
        in_reply_to=in_reply_to,
    )


def _sent_to(fake: FakeGmail) -> Counter[str]:
    return Counter(str(message["To"]) for message in fake.sent())


def test_send_returns_the_message_id_and_thread_gmail_reports(
    gmail: FakeGmail, box: GmailMailbox
) -> None:
    message = _message()
    delivered = box.send(message)
    [stored] = gmail.messages
    assert delivered.message_id == message["Message-ID"] == stored.message_id
    assert (delivered.provider_message_id, delivered.thread_id) == (stored.id, stored.thread_id)
    assert stored.raw == message.as_bytes() and stored.label_ids == ["SENT"]
    [sent] = gmail.sent()
    assert sent["Subject"] == "Our outage" and sent["To"] == "sofia@customer.example"
    assert [part.get_content() for part in sent.iter_parts()] == [
        "We are sorry.\n",
        "<p>We are <b>sorry</b>.</p>\n",
    ]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in gmail.requests)
    assert [(r.method, r.path) for r in gmail.requests] == [
        ("POST", "/gmail/v1/users/me/messages/send"),
        ("GET", f"/gmail/v1/users/me/messages/{stored.id}"),
    ]


def test_send_takes_the_message_id_gmail_set_over_ours(gmail: FakeGmail, box: GmailMailbox) -> None:
    gmail.replace_message_ids = True
    message = _message()
    delivered = box.send(message)
    assert delivered.message_id == gmail.messages[0].message_id != message["Message-ID"]
    assert delivered.message_id.endswith("@mail.gmail.com>")


def test_a_reply_sent_with_thread_id_stays_in_the_thread(
    gmail: FakeGmail, box: GmailMailbox
) -> None:
    first = box.send(_message())
    reply = box.send(
        _message("Re: Our outage", in_reply_to=first.message_id), thread_id=first.thread_id
    )
    assert reply.thread_id == first.thread_id and reply.message_id != first.message_id
    # Gmail threads a message only if its Subject matches and it refers to the thread.
    other = box.send(_message("Something else", in_reply_to=first.message_id), first.thread_id)
    assert other.thread_id not in (None, first.thread_id)


def test_find_sent_finds_what_was_sent_and_nothing_else(box: GmailMailbox) -> None:
    message = _message()
    delivered = box.send(message)
    assert box.find_sent(message["Message-ID"]) == delivered
    assert box.find_sent("<never-sent@us.example>") is None


def test_a_failed_read_back_does_not_fail_a_send_gmail_accepted(
    gmail: FakeGmail, box: GmailMailbox
) -> None:
    gmail.fail_next(503, "backendError", only="GET /gmail/v1/users/me/messages/")
    message = _message()
    delivered = box.send(message)  # raising would make the runner send it again
    assert delivered.message_id == message["Message-ID"]
    assert len(gmail.sent()) == 1


@pytest.mark.parametrize(
    ("status", "reason", "retry_after", "waits"),
    [
        (429, "rateLimitExceeded", 7, [7.0, 7.0]),
        (403, "userRateLimitExceeded", None, [2.0, 4.0]),  # the runner's own backoff
        (503, "backendError", 1, [1.0, 1.0]),
    ],
)
def test_rate_limits_are_retried_after_what_gmail_asks(
    engine: Engine,
    gmail: FakeGmail,
    box: GmailMailbox,
    status: int,
    reason: str,
    retry_after: int | None,
    waits: list[float],
) -> None:
    gmail.fail_next(status, reason, retry_after)
    with pytest.raises(MailboxError, match=reason) as raised:
        box.send(_message())
    assert raised.value.retry_after == (None if retry_after is None else float(retry_after))
    assert not isinstance(raised.value, DailyLimitReached) and gmail.sent() == []

    campaign_id = plan_numbered(engine, 3)
    gmail.fail_next(status, reason, retry_after, times=2)
    slept: list[float] = []
    report = run_campaign(engine, campaign_id, box, owner="test", sleep=slept.append)
    assert slept == waits
    assert (report.sent, report.paused) == (3, None)
    assert _sent_to(gmail) == Counter({f"u{i}@c.example": 1 for i in range(3)})


def test_a_daily_limit_pauses_the_campaign_until_it_is_raised(
    engine: Engine, gmail: FakeGmail, box: GmailMailbox
) -> None:
    campaign_id = plan_numbered(engine, 5)
    gmail.daily_limit = 3
    slept: list[float] = []
    report = run_campaign(engine, campaign_id, box, owner="test", sleep=slept.append)
    reason = (
        f"{SENDER} reached its daily sending limit: "
        "Gmail answered 403 dailyLimitExceeded: Daily user sending limit exceeded."
    )
    assert (report.sent, report.paused, slept) == (3, reason, [])
    assert campaign_status(engine, campaign_id) == ("paused", 3, reason)
    gmail.daily_limit = 10  # the next day
    assert run_campaign(engine, campaign_id, box, owner="test").sent == 2
    assert campaign_status(engine, campaign_id)[:2] == ("sent", 5)
    assert _sent_to(gmail) == Counter({f"u{i}@c.example": 1 for i in range(5)})


def test_the_mail_sending_429_is_a_daily_limit(gmail: FakeGmail, box: GmailMailbox) -> None:
    # What Gmail actually answers once a user is over the day's sending limit, for hours.
    message = "User-rate limit exceeded.  Retry after 2030-01-01T18:00:00.000Z (Mail sending)"
    gmail.fail_next(429, "rateLimitExceeded", message=message)
    with pytest.raises(DailyLimitReached, match=r"\(Mail sending\)"):
        box.send(_message())


def test_more_than_100_recipients_are_refused_before_calling_gmail(
    gmail: FakeGmail, box: GmailMailbox
) -> None:
    to = [f"u{i}@c.example" for i in range(60)]
    cc = [f"v{i}@c.example" for i in range(41)]
    with pytest.raises(MailboxError, match=r"101 people: .* more than 100 recipients"):
        box.send(_message(to=to, cc=cc))
    assert gmail.requests == []
    box.send(_message(to=to, cc=cc[:40]))
    assert len(gmail.sent()) == 1


def test_the_email_in_flight_at_a_crash_is_found_and_not_sent_twice(
    engine: Engine, gmail: FakeGmail, box: GmailMailbox
) -> None:
    campaign_id = plan_numbered(engine, 3)
    with engine.begin() as connection:
        first = connection.execute(select(emails).order_by(emails.c.id)).first()
        assert first is not None
        # Gmail accepted it, then the sender died before recording that.
        connection.execute(update(emails).where(emails.c.id == first.id).values(status="sending"))
        connection.execute(update(campaigns).values(lease_owner="dead", lease_expires_at=None))
    box.send(parse(first.mime))
    report = run_campaign(engine, campaign_id, box, owner="test")
    assert (report.sent, report.found_already_sent) == (2, 1)
    assert _sent_to(gmail) == Counter({f"u{i}@c.example": 1 for i in range(3)})
    with engine.connect() as connection:
        row = connection.execute(select(emails).where(emails.c.id == first.id)).one()
    assert (row.status, row.provider_message_id) == ("sent", gmail.messages[0].id)


def test_a_refused_token_asks_to_connect_the_mailbox_again(gmail: FakeGmail) -> None:
    with (
        GmailMailbox(SENDER, _credentials("stolen"), api_endpoint=gmail.url) as box,
        pytest.raises(MailboxError, match="connect the mailbox again"),
    ):
        box.send(_message())
    assert gmail.requests[0].headers["authorization"] == "Bearer stolen"
    assert gmail.sent() == []


def test_an_unreachable_gmail_is_a_mailbox_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with (
        GmailMailbox(SENDER, _credentials(TOKEN), api_endpoint=endpoint) as box,
        pytest.raises(MailboxError, match=r"could not reach Gmail for me@us\.example"),
    ):
        box.find_sent("<a@us.example>")


NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "kind", "seconds"),
    [
        (429, {"errors": [{"reason": "rateLimitExceeded"}]}, "30", MailboxError, 30.0),
        (429, {"message": "Too many"}, "Tue, 01 Jan 2030 12:01:00 GMT", MailboxError, 60.0),
        (403, {"errors": [{"reason": "userRateLimitExceeded"}]}, None, MailboxError, None),
        (403, {"errors": [{"reason": "quotaExceeded"}]}, None, DailyLimitReached, None),
        (403, {"message": "Daily Limit Exceeded"}, None, DailyLimitReached, None),
        (500, {"message": "Backend Error"}, None, MailboxError, None),
        (400, {"errors": [{"reason": "invalidArgument"}]}, "5", PermanentFailure, None),
        (403, {"errors": [{"reason": "forbidden"}]}, None, PermanentFailure, None),
    ],
)
def test_what_gmail_errors_mean(
    status: int,
    body: dict[str, object],
    retry_after: str | None,
    kind: type[MailboxError],
    seconds: float | None,
) -> None:
    error = gmail_error(status, json.dumps({"error": body}).encode(), retry_after, NOW)
    assert type(error) is kind and error.retry_after == seconds
    assert str(error).startswith(f"Gmail answered {status}")


def test_gmail_error_without_a_json_body() -> None:
    error = gmail_error(502, b"<html>Bad Gateway</html>", None, NOW)
    assert str(error) == "Gmail answered 502: Bad Gateway" and error.retry_after is None


def test_the_fake_keeps_history_for_reply_sync(gmail: FakeGmail, box: GmailMailbox) -> None:
    service = build(
        "gmail",
        "v1",
        credentials=_credentials(TOKEN),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": gmail.url},
    )
    try:
        users = service.users()
        start = users.getProfile(userId="me").execute()["historyId"]
        sent = box.send(_message())
        reply = _message("Re: Our outage", in_reply_to=sent.message_id)
        reply.replace_header("From", "sofia@customer.example")
        reply.replace_header("To", SENDER)
        delivered = gmail.deliver(reply.as_bytes())
        assert delivered.thread_id == sent.thread_id
        history = users.history().list(userId="me", startHistoryId=start).execute()
        added = [r["messagesAdded"][0]["message"] for r in history["history"]]
        assert [(m["id"], m["labelIds"]) for m in added] == [
            (sent.provider_message_id, ["SENT"]),
            (delivered.id, ["INBOX"]),
        ]
        assert history["historyId"] == str(gmail.history_id)
        inbox = users.history().list(userId="me", startHistoryId=start, labelId="INBOX")
        assert len(inbox.execute()["history"]) == 1
        full = users.messages().get(userId="me", id=delivered.id).execute()
        plain = base64.urlsafe_b64decode(full["payload"]["parts"][0]["body"]["data"])
        assert plain == b"We are sorry.\n" and full["threadId"] == sent.thread_id
        gmail.expire_history()
        with pytest.raises(HttpError) as stale:
            users.history().list(userId="me", startHistoryId=start).execute()
        assert stale.value.status_code == 404
    finally:
        service.close()


def test_a_follow_up_campaign_goes_into_each_enduser_s_thread(
    engine: Engine, gmail: FakeGmail, box: GmailMailbox
) -> None:
    first = plan_numbered(engine, 2)
    run_campaign(engine, first, box, owner="test")
    with engine.begin() as connection:
        people = connection.execute(select(endusers.c.id, endusers.c.email)).all()
        follow_up = plan_campaign(
            connection,
            replace(PLAN, name="nudge", follow_up_of=first),
            [
                Outgoing([p.email], "Did you see this?", "<p>Nudge</p>", "Nudge", p.id)
                for p in people
            ],
            SIGNER,
            TRACKING,
        )
    assert run_campaign(engine, follow_up, box, owner="test").sent == 2
    with engine.connect() as connection:
        rows = connection.execute(select(emails).order_by(emails.c.id)).all()
    originals, nudges = rows[:2], rows[2:]
    for original, nudge in zip(originals, nudges, strict=True):
        assert nudge.enduser_id == original.enduser_id  # its own record, same enduser
        assert nudge.thread_id == original.thread_id is not None
        assert nudge.in_reply_to == original.message_id
        assert nudge.subject == f"Re: {original.subject}"
    sent = {str(m["Message-ID"]): m for m in gmail.sent()}
    nudge_message = sent[nudges[0].message_id]
    assert nudge_message["In-Reply-To"] == originals[0].message_id
    assert originals[0].message_id in str(nudge_message["References"])


def test_sends_are_paced_to_gmails_per_second_quota(gmail: FakeGmail) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    waits: list[float] = []
    with GmailMailbox(
        SENDER, _credentials(TOKEN), api_endpoint=gmail.url, clock=lambda: now, sleep=waits.append
    ) as paced:
        for _ in range(3):
            paced.send(_message())
    assert waits == [1.0]  # the third send within one second waits for the first to age out
