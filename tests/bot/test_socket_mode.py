"""/beacon over Socket Mode: the server opens a WebSocket to (a fake of) Slack, with an app
token and no signing secret, on both databases."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from mailbeacon.settings import Settings, SlackSettings
from mailbeacon.slackbot import slack_state
from tests.bot.conftest import BOSS, UBOSS, Slack, Team
from tests.bot.conftest import serving as slack_serving
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, FakeSlack, command_body, signed
from tests.fakes.slack_socket import FakeSocketMode


def serving(
    team: Team, fake: FakeSlack, app_token: str = APP_TOKEN
) -> contextlib.AbstractContextManager[Slack]:
    """The team's server in Socket Mode: an app token, and no signing secret."""
    return slack_serving(team, fake, app_token=app_token, signing_secret="")


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(members={BOSS: UBOSS}) as fake:
        yield fake


@pytest.fixture
def socket(fake: FakeSlack) -> Iterator[FakeSocketMode]:
    with FakeSocketMode(fake) as socket:
        yield socket


def test_a_command_over_the_socket_is_acked_and_answered_through_the_response_url(
    team: Team, fake: FakeSlack, socket: FakeSocketMode
) -> None:
    with serving(team, fake) as slack:
        socket.wait_connected()
        envelope = socket.command("help", UBOSS, fake.response_url("1"))
        assert socket.ack(envelope) == {"envelope_id": envelope}  # the ack: at once, empty
        message = slack.answer("1")
    assert message["response_type"] == "ephemeral"
    assert "/beacon send &lt;template&gt; to &lt;audience&gt;" in message["text"]
    assert fake.calls[0][0] == "apps.connections.open"  # with the app token: else invalid_auth


def test_without_a_signing_secret_there_is_no_slack_events_url(
    team: Team, fake: FakeSlack, socket: FakeSocketMode
) -> None:
    with serving(team, fake) as slack:
        socket.wait_connected()
        body = command_body("help", UBOSS, fake.response_url("1"))
        answer = httpx.post(f"{slack.base}/slack/events", content=body, headers=signed(body))
        assert answer.status_code == 404
    assert fake.said("1") == []


def test_the_server_stops_at_once_with_the_socket_open(
    team: Team, fake: FakeSlack, socket: FakeSocketMode
) -> None:
    with serving(team, fake):
        socket.wait_connected()
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3
    socket.wait_closed()  # the client closed the socket; it did not just drop it


def test_the_server_stops_soon_when_slack_does_not_answer_the_close(
    team: Team, fake: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mailbeacon.slackbot.SOCKET_CLOSE_SECONDS", 0.3)
    with FakeSocketMode(fake, answer_close=False) as silent:
        with serving(team, fake):
            silent.wait_connected()
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 2  # not aiohttp's 10 s wait for the answer
        assert silent.closed == 1


def test_a_wrong_app_token_is_said_once_and_not_retried(
    team: Team, fake: FakeSlack, socket: FakeSocketMode, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), serving(team, fake, "xapp-wrong"):
        deadline = time.monotonic() + 10
        while not caplog.records:
            assert time.monotonic() < deadline, "nothing said about the wrong app token"
            time.sleep(0.01)
        time.sleep(0.2)  # and nothing more
    assert [record.getMessage() for record in caplog.records] == [
        "slack: Socket Mode is off: apps.connections.open answered invalid_auth; set "
        "slack.app_token to the app-level token (xapp-…, scope connections:write)"
    ]
    assert [method for method, _ in fake.calls] == ["apps.connections.open"]
    assert socket.connections == 0


@pytest.mark.parametrize(
    ("slack", "state"),
    [
        (SlackSettings(), "Slack is off: no Slack tokens are configured (slack.bot_token)"),
        (
            SlackSettings(bot_token=BOT_TOKEN),
            "Slack is on for alerts by direct message; set slack.app_token (Socket Mode) or "
            "slack.signing_secret (/slack/events) for /beacon to work",
        ),
        (
            SlackSettings(bot_token=BOT_TOKEN, app_token=APP_TOKEN),
            "Slack is on: /beacon over Socket Mode, and alerts by direct message",
        ),
        (
            SlackSettings(bot_token=BOT_TOKEN, signing_secret="s"),
            "Slack is on: /beacon at /slack/events, and alerts by direct message",
        ),
        (
            SlackSettings(bot_token=BOT_TOKEN, app_token=APP_TOKEN, signing_secret="s"),
            "Slack is on: /beacon over Socket Mode and at /slack/events, and alerts by direct "
            "message",
        ),
    ],
)
def test_what_serve_says_about_slack(slack: SlackSettings, state: str) -> None:
    assert slack_state(Settings(slack=slack)) == state
