"""/beacon in Slack, as bolt's own tests do it: signed requests into our server, the real
slack_sdk clients pointed at the fake Slack Web API, on both databases."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from slack_sdk import WebClient
from sqlalchemy import update

from bot.context import Context, Reply
from bot.registry import command, unregister
from bot.slack_reports import SlackReports
from outreach.importer import import_file
from store.schema import endusers
from tests.bot.conftest import BOSS, LEE, UBOSS, UMEMBER, UNEW, USTRANGER, Slack
from tests.fakes.slack import BOT_TOKEN, command_body, signed


def text_of(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


def test_a_command_is_answered_in_block_kit_through_the_response_url(slack: Slack) -> None:
    answer, url = slack.command("templates")
    assert (answer.status_code, answer.text) == (200, "")  # the ack: at once, empty
    message = slack.answer(url)
    assert message["response_type"] == "ephemeral"
    assert "outage" in text_of(message) and "webinar" in text_of(message)
    assert all(block["type"] in ("section", "context", "header") for block in message["blocks"])


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"X-Slack-Signature": "v0=" + "0" * 64}, "a forged signature"),
        (signed("x", timestamp=int(time.time()) - 301), "a timestamp 5 minutes old"),
        (signed("x", secret="another-secret"), "another app's secret"),
    ],
)
def test_a_request_not_signed_by_slack_gets_401_and_does_nothing(
    slack: Slack, headers: dict[str, str], why: str
) -> None:
    body = command_body("help", UBOSS, slack.fake.response_url("x"))
    answer = httpx.post(
        f"{slack.base}/slack/events", content=body, headers={**signed(body), **headers}
    )
    assert answer.status_code == 401, why
    time.sleep(0.2)
    assert slack.fake.said("x") == []


def test_who_is_asking(slack: Slack) -> None:
    _, url = slack.command("me", USTRANGER)
    assert slack.answer(url)["text"].startswith("mailbeacon does not know you yet")
    assert slack.team.user(BOSS).slack_user_id is None
    _, url = slack.command("me", UBOSS)  # a configured user, by the email Slack reports
    assert "boss@us.example" in text_of(slack.answer(url))
    assert slack.team.user(BOSS).slack_user_id == UBOSS
    _, url = slack.command("me", UNEW)  # of an internal domain: becomes a member
    assert "newcomer@us.example" in text_of(slack.answer(url))
    newcomer = slack.team.user("newcomer@us.example")
    assert (newcomer.role, newcomer.slack_user_id) == ("member", UNEW)


def test_a_mistake_says_what_was_wrong_with_the_usage(slack: Slack) -> None:
    _, url = slack.command("sned outage to x@y.example")
    message = slack.answer(url)
    assert message["text"] == "`sned` is not a command. Did you mean `send`?"
    _, url = slack.command("campaign #99")
    message = slack.answer(url)
    assert ":warning: there is no campaign `#99`" in text_of(message)
    assert "usage: `/beacon campaign &lt;id|name&gt;`" in text_of(message)


def test_send_previews_with_buttons_that_work_once_and_only_for_the_asker(slack: Slack) -> None:
    _, url = slack.command(f"send webinar to {LEE}")
    preview = slack.answer(url)
    assert "First email, to lee.chen@acme-logistics.example" in preview["text"]
    assert slack.team.sent() == []
    refused = slack.press(preview, "confirm", UMEMBER)
    assert slack.answer(refused)["text"] == "Only the person who asked can press this."
    sent = slack.press(preview, "confirm")
    started = slack.answer(sent)
    assert started["replace_original"] is True
    assert "on the way as job #1" in started["text"]
    again = slack.press(preview, "confirm")
    assert slack.answer(again)["text"] == "This was already answered: nothing more happens."
    cancel = slack.press(preview, "cancel")
    assert slack.answer(cancel)["text"] == "This was already answered: nothing more happens."
    # The worker runs the job and says how it ended, through the same response URL.
    reports = SlackReports(WebClient(token=BOT_TOKEN, base_url=slack.fake.url))
    assert slack.team.work(watcher=reports) == 1
    assert slack.answer(sent, 2)["text"] == "Campaign #1 (webinar): sent 1 of 1 email."
    assert len(slack.team.sent()) == 1


def test_cancel_sends_nothing(slack: Slack) -> None:
    _, url = slack.command(f"send webinar to {LEE}")
    cancelled = slack.press(slack.answer(url), "cancel")
    assert slack.answer(cancelled)["text"] == "Cancelled: nothing was sent."
    assert slack.team.work() == 0 and slack.team.sent() == []


def test_a_request_slack_retries_has_one_effect(slack: Slack) -> None:
    body = command_body("help", UBOSS, slack.fake.response_url("r"))
    assert slack.post(body).status_code == 200
    assert slack.post(body, **{"X-Slack-Retry-Num": "1"}).status_code == 200
    slack.answer("r")
    time.sleep(0.3)
    assert len(slack.fake.said("r")) == 1


@pytest.fixture
def slow() -> Iterator[threading.Event]:
    go = threading.Event()

    @command("slow", usage="/beacon slow", summary="Takes its time")
    def slow_handler(_: None, context: Context) -> Reply:
        go.wait(10)
        return Reply("done at last", {"done": True})

    yield go
    go.set()
    unregister("slow")


def test_the_ack_comes_before_the_work(slack: Slack, slow: threading.Event) -> None:
    started = time.monotonic()
    answer, url = slack.command("slow")
    assert answer.status_code == 200 and time.monotonic() - started < 3
    assert slack.fake.said(url) == []  # the work is still going on
    slow.set()
    assert slack.answer(url)["text"] == "done at last"


def test_strangers_text_is_escaped_everywhere(slack: Slack) -> None:
    _, url = slack.command("preview webinar to pinger@acme-logistics.example")
    slack.answer(url)
    with slack.team.engine.begin() as connection:
        connection.execute(
            update(endusers)
            .where(endusers.c.email == LEE)
            .values(name="<!channel> & <@U123|everyone>")
        )
    _, url = slack.command(f"send webinar to {LEE}")
    preview = slack.answer(url)
    everything = json.dumps(preview)
    assert "<!channel>" not in everything and "<@U123" not in everything
    assert "&lt;!channel&gt; &amp; &lt;@U123|everyone&gt;" in everything


def test_a_long_send_out_keeps_one_dm_up_to_date_with_its_progress(slack: Slack) -> None:
    people = slack.team.folder / "people.csv"
    people.write_text(
        "email,name,role\n" + "".join(f"p{i}@example.org,P {i},tester\n" for i in range(120))
    )
    import_file(slack.team.engine, people)
    _, url = slack.command("send webinar to role = 'tester'")
    slack.answer(slack.press(slack.answer(url), "confirm"))
    ticks = iter(range(0, 10_000, 10))  # ten seconds pass between two reports
    reports = SlackReports(WebClient(token=BOT_TOKEN, base_url=slack.fake.url), lambda: next(ticks))
    assert slack.team.work(watcher=reports) == 1
    [dm] = slack.fake.posted_to(UBOSS)
    assert dm.text == "Campaign #1 (webinar): sent 120 of 120 emails."
    updates = [arguments for method, arguments in slack.fake.calls if method == "chat.update"]
    assert len(updates) == 3  # 100 of 120, then 120 of 120, then the end
    assert updates[0]["text"] == "Job #1 (send-out of campaign #1): 100 of 120 done (83%)."
