"""Reply sync through the Outlook mailbox: Inbox delta rounds across pages, a fresh round when
Graph forgot the deltaLink, and replies credited by conversation, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from outreach.campaigns import Outgoing
from outreach.mailbox import RESYNC_MESSAGES
from outreach.outlook import OutlookMailbox
from store.schema import endusers, events
from tests.fakes.graph import FakeGraph, FakeIdentity, GraphMessage
from tests.helpers import SENDER, SOFIA, engagement_of, graph_tokens, send_campaign, sofias_reply
from tracking.replies import sync_inbox


def _emailed_sofia(engine: Engine, graph: FakeGraph) -> tuple[OutlookMailbox, Any]:
    """An Outlook mailbox on the fake, and the email it has sent Sofia."""
    identity = graph.identity
    box = OutlookMailbox(
        SENDER,
        graph_tokens(identity, identity.grant()),
        transport=graph.transport(),
        sleep=lambda seconds: None,
    )
    with engine.begin() as connection:
        sofia = connection.execute(
            endusers.insert().values(email=SOFIA, attributes={}).returning(endusers.c.id)
        ).scalar_one()
    [email] = send_campaign(engine, box, [Outgoing([SOFIA], "Outage", "<p>1</p>", "1", sofia)])
    return box, email


def test_outlook_sync_follows_delta_recovers_from_an_expired_token_and_credits_conversations(
    engine: Engine,
) -> None:
    graph = FakeGraph(FakeIdentity(SENDER))
    box, email = _emailed_sofia(engine, graph)
    assert email.thread_id
    # Mail that was in the Inbox before: a delta round starts with it, and it is no reply.
    for n in range(3):
        other = f"From: x{n}@else.example\nTo: {SENDER}\nSubject: Hi\nMessage-ID: <o{n}@x>\n\nHi\n"
        graph.deliver(other.encode())

    first = sync_inbox(engine, box, internal_domains=["us.example"])
    assert (first.seen, first.recorded) == (3, {}) and first.cursor
    answer = graph.deliver(sofias_reply(email, 1))
    assert answer.conversation_id == email.thread_id  # Graph threads it by In-Reply-To
    second = sync_inbox(engine, box, internal_domains=[], cursor=first.cursor)
    assert (second.seen, second.recorded) == (1, {"reply": 1})
    # Graph forgot the deltaLink (410 syncStateNotFound): a fresh round reads the whole Inbox,
    # finds the new reply, and does not count the old one twice.
    graph.expire_delta()
    graph.deliver(sofias_reply(email, 2, headers=False), conversation_id=email.thread_id)
    third = sync_inbox(engine, box, internal_domains=[], cursor=second.cursor)
    assert [r.status_code for r in graph.responses].count(410) == 1
    assert (third.seen, third.recorded) == (5, {"reply": 1})  # credited by the conversation
    fourth = sync_inbox(engine, box, internal_domains=[], cursor=third.cursor)
    assert (fourth.seen, fourth.recorded) == (0, {})
    box.close()

    assert engagement_of(engine, email.id).replies == 2
    with engine.connect() as connection:
        reasons = connection.scalars(
            select(events.c.details).where(events.c.kind == "reply").order_by(events.c.id)
        ).all()
    assert [r["reason"] for r in reasons] == ["In-Reply-To", "in one of our threads"]


def test_a_fresh_round_reads_our_conversations_and_the_newest_of_the_rest(
    engine: Engine,
) -> None:
    graph = FakeGraph(FakeIdentity(SENDER), delta_page_size=200)
    box, email = _emailed_sofia(engine, graph)
    now = datetime.now(UTC)
    # A big Inbox: Sofia's reply is older than 500 other messages, and one is from before the
    # 90 days a resync looks back.
    reply = graph.deliver(sofias_reply(email, 1), received=now - timedelta(days=30))

    def other(n: int, received: datetime) -> GraphMessage:
        mime = f"From: x{n}@else.example\nTo: {SENDER}\nSubject: Hi\nMessage-ID: <o{n}@x>\n\nHi\n"
        return graph.deliver(mime.encode(), received=received)

    too_old = other(0, now - timedelta(days=120))
    others = [other(n, now - timedelta(minutes=n)) for n in range(1, RESYNC_MESSAGES + 2)]

    report = sync_inbox(engine, box, internal_domains=[])
    box.close()
    assert report.recorded == {"reply": 1}
    read = {r.url.path.split("/")[-2] for r in graph.requests if r.url.path.endswith("/$value")}
    assert reply.id in read
    assert read - {reply.id} == {m.id for m in others[:RESYNC_MESSAGES]}  # the newest 500
    assert too_old.id not in read and others[-1].id not in read
    fresh = next(r for r in graph.requests if r.url.path.endswith("/delta"))
    since = datetime.fromisoformat(fresh.url.params["$filter"].removeprefix("receivedDateTime ge "))
    assert abs(since - (now - timedelta(days=90))) < timedelta(minutes=1)
