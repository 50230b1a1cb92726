"""`/beacon connect gmail|outlook [for <address>]`: its grammar, the sign-in it makes for the
asker (another address only for an admin), and its answer in Slack, seen by the asker alone."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.blocks import blocks_for
from bot.commands.connect import Connect
from bot.context import CommandFailed
from bot.grammar import CommandError
from bot.registry import parse
from store.schema import sign_ins
from tests.bot.conftest import BOSS, MEMBER, UMEMBER, Slack, Team

NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
LINK = re.compile(r"https://t\.example/connect/([A-Za-z0-9_-]{43,})")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect gmail", Connect("gmail")),
        ("connect Outlook", Connect("outlook")),
        ("connect gmail for Support@US.example", Connect("gmail", "support@us.example")),
        ("connect outlook for 'support@us.example'", Connect("outlook", "support@us.example")),
    ],
)
def test_the_grammar(text: str, expected: Connect) -> None:
    assert parse(text).value == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("connect", "say `connect gmail` or `connect outlook`"),
        ("connect yahoo", "say `connect gmail` or `connect outlook`"),
        ("connect gmail for", "say `connect gmail` or `connect outlook`"),
        ("connect gmail to support@us.example", "say `connect gmail` or `connect outlook`"),
        ("connect gmail for support", "`support` is not an email address"),
    ],
)
def test_a_mistake_says_what_to_type(text: str, said: str) -> None:
    with pytest.raises(CommandError) as wrong:
        parse(text)
    assert wrong.value.message.startswith(said)
    assert wrong.value.usage == "/beacon connect gmail|outlook [for <address>]"


def _sign_ins(team: Team) -> list[tuple[str, int, str, str, bool, datetime]]:
    with team.engine.connect() as connection:
        rows = connection.execute(select(sign_ins).order_by(sign_ins.c.created_at))
        return [
            (r.id, r.user_id, r.provider, r.address, r.code_verifier is not None, r.created_at)
            for r in rows
        ]


def test_a_member_gets_a_link_for_their_own_mailbox(team: Team) -> None:
    team.clock = lambda: NOW
    reply = team.run("connect gmail", MEMBER)
    link = LINK.search(reply.text)
    assert link is not None
    assert reply.text.startswith(f"Open this link and sign in to Google as {MEMBER}.")
    assert "It works once, in one browser (the first that opens it), for 10 minutes." in reply.text
    assert reply.data == {
        "provider": "gmail",
        "address": MEMBER,
        "link": link[0],
        "expires_at": "2025-03-03T09:10:00+00:00",
    }
    member = team.user(MEMBER).id
    assert _sign_ins(team) == [(link[1], member, "gmail", MEMBER, True, NOW)]
    second = team.run("connect gmail", MEMBER).data["link"]
    assert second != link[0]  # each asking makes a sign-in of its own


def test_only_an_admin_may_name_another_address(team: Team) -> None:
    with pytest.raises(CommandFailed, match=r"^only an admin may connect a mailbox whose address"):
        team.run("connect gmail for support@us.example", MEMBER)
    assert _sign_ins(team) == []
    reply = team.run("connect outlook for support@us.example", BOSS)
    assert reply.text.startswith("Open this link and sign in to Microsoft as support@us.example")
    [(_, user_id, provider, address, verifier, _)] = _sign_ins(team)
    assert (user_id, provider, address, verifier) == (
        team.user(BOSS).id,
        "outlook",
        "support@us.example",
        False,  # PKCE is Google's flow
    )


def test_the_blocks_link_the_sign_in(team: Team) -> None:
    reply = team.run("connect gmail", MEMBER)
    [link, note] = blocks_for("connect", reply)
    assert link["text"]["text"] == (f"<{reply.data['link']}|Sign in to Google> as *{MEMBER}*.")
    assert note["elements"][0]["text"].endswith("Only you can see this message.")


def test_in_slack_only_the_asker_sees_the_link(slack: Slack) -> None:
    answer, url = slack.command("connect gmail", UMEMBER)
    assert answer.status_code == 200
    message = slack.answer(url)
    assert message["response_type"] == "ephemeral"
    [(sign_in, _, _, address, _, _)] = _sign_ins(slack.team)
    assert address == MEMBER
    assert f"https://t.example/connect/{sign_in}|Sign in to Google" in str(message["blocks"])
