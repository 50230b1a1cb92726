"""Reply sync through the Outlook mailbox: Inbox delta rounds across pages, a fresh round when
Graph forgot the deltaLink, and replies credited by conversation, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine, select

from outreach.campaigns import Outgoing
from outreach.outlook import OutlookMailbox
from store.schema import endusers, events
from tests.fakes.graph import FakeGraph, FakeIdentity
from tests.outreach.test_campaigns import SENDER
from tests.outreach.test_outlook import _tokens
from tests.tracking.test_replies import SOFIA, _engagement, _send, sofias_reply
from tracking.replies import sync_inbox


def test_outlook_sync_follows_delta_recovers_from_an_expired_token_and_credits_conversations(
    engine: Engine,
) -> None:
    identity = FakeIdentity(SENDER)
    graph = FakeGraph(identity)
    box = OutlookMailbox(
        SENDER,
        _tokens(identity, identity.grant()),
        transport=graph.transport(),
        sleep=lambda seconds: None,
    )
    with engine.begin() as connection:
        sofia = connection.execute(
            endusers.insert().values(email=SOFIA, attributes={}).returning(endusers.c.id)
        ).scalar_one()
    [email] = _send(engine, box, [Outgoing([SOFIA], "Outage", "<p>1</p>", "1", sofia)])
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

    assert _engagement(engine, email.id).replies == 2
    with engine.connect() as connection:
        reasons = connection.scalars(
            select(events.c.details).where(events.c.kind == "reply").order_by(events.c.id)
        ).all()
    assert [r["reason"] for r in reasons] == ["In-Reply-To", "in one of our threads"]
