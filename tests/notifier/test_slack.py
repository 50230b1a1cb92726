"""Alerts as Slack DMs: the real slack_sdk WebClient against a local fake Slack Web API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from slack_sdk import WebClient

from notifier.alerts import Alert
from notifier.channels import ChannelError, Recipient
from notifier.slack import SlackChannel
from tests.fakes.slack import BOT_TOKEN, FakeSlack

ALERT = Alert("Dana <Reyes> opened “Outage”", "Acme & Co · dana@acme.example")
LINKED = Recipient(1, "maria@us.example", "Maria", slack_user_id="U0MARIA")
UNLINKED = Recipient(2, "jonas@us.example", "Jonas")


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(members={"jonas@us.example": "U0JONAS"}) as fake:
        yield fake


def _channel(slack: FakeSlack, token: str = BOT_TOKEN) -> SlackChannel:
    return SlackChannel(WebClient(token=token, base_url=slack.url))


def test_an_alert_is_a_dm_with_the_title_in_bold_and_the_details_below(slack: FakeSlack) -> None:
    _channel(slack).send(LINKED, ALERT, key="7")
    [message] = slack.posted_to("U0MARIA")
    # Strangers' text is escaped in the plain text too: `<!channel>` there would ping everyone.
    assert message.text == "Dana &lt;Reyes&gt; opened “Outage”\nAcme &amp; Co · dana@acme.example"
    section, context = message.blocks
    assert section["text"]["text"] == "*Dana &lt;Reyes&gt; opened “Outage”*"
    assert context["elements"][0]["text"] == "Acme &amp; Co · dana@acme.example"
    assert message.metadata == {"event_type": "mailbeacon_alert", "event_payload": {"key": "7"}}


def test_a_user_without_a_linked_slack_id_is_found_by_email_once(slack: FakeSlack) -> None:
    channel = _channel(slack)
    channel.send(UNLINKED, ALERT, key="1")
    channel.send(UNLINKED, ALERT, key="2")
    assert len(slack.posted_to("U0JONAS")) == 2
    assert [method for method, _ in slack.calls].count("users.lookupByEmail") == 1


def test_an_alert_posted_before_a_crash_is_not_posted_again(slack: FakeSlack) -> None:
    _channel(slack).send(LINKED, ALERT, key="7")
    _channel(slack).send(LINKED, ALERT, key="7")  # the retry, from a new process
    assert len(slack.posted_to("U0MARIA")) == 1
    _channel(slack).send(LINKED, ALERT, key="8")
    assert len(slack.posted_to("U0MARIA")) == 2


@pytest.mark.parametrize(
    ("rate_limited", "recipient", "token", "message"),
    [
        (
            True,
            LINKED,
            BOT_TOKEN,
            "Slack asks to wait 3 seconds (rate limited)",
        ),
        (
            False,
            Recipient(3, "nobody@us.example", "Nobody"),
            BOT_TOKEN,
            "no Slack member has the email nobody@us.example: set `slack_user_id`",
        ),
        (
            False,
            LINKED,
            "xoxb-wrong",
            "Slack refused the bot token (invalid_auth): check slack.bot_token",
        ),
    ],
)
def test_what_slack_refuses_is_a_failed_attempt_that_says_why(
    slack: FakeSlack, rate_limited: bool, recipient: Recipient, token: str, message: str
) -> None:
    if rate_limited:
        slack.rate_limit("chat.postMessage")
    with pytest.raises(ChannelError) as raised:
        _channel(slack, token).send(recipient, ALERT, key="9")
    assert str(raised.value).startswith(message)
    assert slack.posted == []


def test_slack_out_of_reach_is_a_failed_attempt() -> None:
    with FakeSlack() as slack:
        url = slack.url
    channel = SlackChannel(WebClient(token=BOT_TOKEN, base_url=url, timeout=2))
    with pytest.raises(ChannelError, match="cannot reach Slack"):
        channel.send(LINKED, ALERT, key="1")


def test_an_alert_about_a_campaign_has_buttons_to_open_it_and_follow_up(slack: FakeSlack) -> None:
    _channel(slack).send(LINKED, replace(ALERT, campaigns=(12,)), key="9")
    [message] = slack.posted_to("U0MARIA")
    [buttons] = [block for block in message.blocks if block["type"] == "actions"]
    assert [(b["action_id"], b["value"]) for b in buttons["elements"]] == [
        ("open_campaign", "12"),
        ("nonopeners", "12"),
        ("follow_up", '{"campaign": 12, "outcome": "opened", "include_machine": false}'),
    ]
