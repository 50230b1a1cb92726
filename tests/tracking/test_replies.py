"""Reply sync through the Maildir mailbox: each reply, auto-reply and bounce once, credited to
the email it answers, on SQLite and PostgreSQL."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import Engine, select

from outreach.campaigns import Outgoing
from outreach.maildir import MaildirMailbox
from store.schema import endusers, events, users
from tests.helpers import ANN, JONAS, SENDER, SOFIA, engagement_of, send_campaign, sofias_reply
from tracking.replies import SyncReport, sync_inbox


def _deliver(folder: Path, text: str) -> None:
    mailbox.Maildir(folder).add(text.replace("\n", "\r\n").encode())


def test_replies_auto_replies_and_bounces_are_credited_to_the_right_email(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "Maildir"
    box = MaildirMailbox(folder, SENDER)
    with engine.begin() as connection:
        ids = {
            address: connection.execute(
                endusers.insert().values(email=address, attributes={}).returning(endusers.c.id)
            ).scalar_one()
            for address in (SOFIA, JONAS, ANN)
        }
        connection.execute(users.insert().values(email="colleague@us.example"))
    # Email 1 to Sofia and Jonas together (Sofia first), Email 2 a follow-up in the same thread,
    # and one to Ann that will bounce.
    [first] = send_campaign(
        engine, box, [Outgoing([SOFIA, JONAS], "Outage", "<p>1</p>", "1", ids[SOFIA])]
    )
    [second] = send_campaign(
        engine,
        box,
        [Outgoing([SOFIA], "x", "<p>2</p>", "2", ids[SOFIA])],
        follow_up_of=first.campaign_id,
    )
    [to_ann] = send_campaign(engine, box, [Outgoing([ANN], "Hello", "<p>3</p>", "3", ids[ANN])])

    _deliver(
        folder,
        f"""From: Jonas <{JONAS}>
To: {SENDER}
Subject: Re: Outage
Message-ID: <reply-1@customer.example>
In-Reply-To: {second.message_id}
References: {first.message_id} {second.message_id}

Thanks, all good now.

On Mon, Nov 23, 2026 at 10:00 AM <{SENDER}> wrote:
> 2
""",
    )
    _deliver(
        folder,
        f"""From: Sofia <{SOFIA}>
To: {SENDER}
Subject: Automatic reply: Outage
Message-ID: <oof-1@customer.example>
Auto-Submitted: auto-replied
In-Reply-To: {first.message_id}

I am out of the office until Monday.
""",
    )
    _deliver(
        folder,
        f"""From: Mail Delivery System <MAILER-DAEMON@mx.other.example>
To: {SENDER}
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.other.example>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.other.example

Final-Recipient: rfc822; {ANN}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{ANN}>: Recipient address rejected

--B
Content-Type: text/rfc822-headers

From: {SENDER}
To: {ANN}
Subject: Hello
Message-ID: {to_ann.message_id}

--B--
""",
    )
    _deliver(
        folder,
        f"""From: A colleague <colleague@us.example>
To: {SENDER}
Subject: Re: Outage
Message-ID: <internal-1@us.example>
In-Reply-To: {first.message_id}

Nice one.
""",
    )
    _deliver(
        folder,
        """From: Someone <someone@else.example>
To: me@us.example
Subject: Lunch?
Message-ID: <lunch@else.example>

Lunch?
""",
    )

    report = sync_inbox(engine, box, internal_domains=["us.example"])
    assert report.seen == 5
    assert report.recorded == {"reply": 1, "auto_reply": 1, "bounce": 1}

    # The seed's case: the reply answers Email 2; Email 1 stays without one.
    assert engagement_of(engine, second.id).reply_rate == 100
    assert engagement_of(engine, first.id).reply_rate == 0
    # Jonas replied to an email whose first recipient is Sofia: Sofia's (the email's) outcome.
    assert second.enduser_id == ids[SOFIA]
    # An out-of-office is not a reply; a bounce is not either.
    oof = engagement_of(engine, first.id)
    assert oof.auto_replied_at is not None and oof.replies == 0
    bounced = engagement_of(engine, to_ann.id)
    assert bounced.bounced_at is not None and bounced.reply_rate == 0
    with engine.connect() as connection:
        ann = connection.execute(select(endusers).where(endusers.c.email == ANN)).one()
        stored = connection.execute(select(events).where(events.c.kind == "reply")).one()
    assert ann.bounced_at is not None  # left out of later audiences unless forced
    assert stored.details["from"] == JONAS and stored.details["snippet"] == "Thanks, all good now."

    # Syncing again records nothing new.
    assert sync_inbox(engine, box, internal_domains=["us.example"]).recorded == {}


def test_gmail_sync_follows_history_recovers_from_a_stale_cursor_and_credits_threads(
    engine: Engine, tmp_path: Path
) -> None:
    from google.oauth2.credentials import Credentials

    from outreach.gmail import GmailMailbox
    from tests.fakes.gmail import FakeGmail

    with FakeGmail(address=SENDER, token="t") as gmail:
        credentials = Credentials(token="t")  # type: ignore[no-untyped-call]
        with GmailMailbox(
            SENDER, credentials, api_endpoint=gmail.url, sleep=lambda seconds: None
        ) as box:
            with engine.begin() as connection:
                sofia = connection.execute(
                    endusers.insert().values(email=SOFIA, attributes={}).returning(endusers.c.id)
                ).scalar_one()
            [email] = send_campaign(
                engine, box, [Outgoing([SOFIA], "Outage", "<p>1</p>", "1", sofia)]
            )
            assert email.thread_id

            first = sync_inbox(engine, box, internal_domains=["us.example"])
            assert first.recorded == {} and first.cursor
            gmail.deliver(sofias_reply(email, 1))
            second = sync_inbox(engine, box, internal_domains=[], cursor=first.cursor)
            assert (second.seen, second.recorded) == (1, {"reply": 1})
            # Gmail forgot the cursor's history: a full re-read finds the new reply, and the
            # old one is not counted twice.
            gmail.deliver(b"From: x@else.example\nSubject: hi\nMessage-ID: <x@else>\n\nhi\n")
            gmail.expire_history()  # the cursor is now older than what Gmail keeps: 404
            # Archived by a filter (not in the inbox): only our thread leads to it.
            gmail.deliver(
                sofias_reply(email, 2, headers=False), thread_id=email.thread_id, label_ids=()
            )
            third = sync_inbox(engine, box, internal_domains=[], cursor=second.cursor)
            assert third.seen == 3  # a resync: our thread (both replies) and the inbox
            assert third.recorded == {"reply": 1}  # credited by the thread alone
            assert sync_inbox(engine, box, internal_domains=[], cursor=third.cursor).recorded == {}
    assert engagement_of(engine, email.id).replies == 2


def test_a_reply_from_a_colleague_the_email_was_forwarded_to_counts(
    engine: Engine, tmp_path: Path
) -> None:
    folder = tmp_path / "Maildir"
    box = MaildirMailbox(folder, SENDER)
    with engine.begin() as connection:
        sofia = connection.execute(
            endusers.insert().values(email=SOFIA, attributes={}).returning(endusers.c.id)
        ).scalar_one()
    [email] = send_campaign(engine, box, [Outgoing([SOFIA], "Pricing", "<p>p</p>", "p", sofia)])
    _deliver(
        folder,
        f"""From: Her boss <boss@customer.example>
To: {SENDER}
Cc: {SOFIA}
Subject: Re: Fwd: Pricing
Message-ID: <fwd-reply@customer.example>
References: {email.message_id} <fwd@customer.example>
In-Reply-To: <fwd@customer.example>

Sofia forwarded this to me: let's talk.
""",
    )
    assert sync_inbox(engine, box, internal_domains=["us.example"]).recorded == {"reply": 1}
    assert engagement_of(engine, email.id).reply_rate == 100  # Sofia's email got the reply


def test_a_sync_summary_lists_kinds_in_one_order_whatever_came_first() -> None:
    report = SyncReport(seen=4, recorded={"bounce": 1, "auto_reply": 1, "reply": 2})
    assert report.summary() == "4 messages read; recorded: 2 reply, 1 auto-reply, 1 bounce"
    assert SyncReport(seen=2).summary() == "2 messages read; recorded: nothing new"
