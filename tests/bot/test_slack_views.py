"""App Home, the compose modal and the Follow up… modal, through signed requests and the fake
Slack's views methods, on both databases."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.bot.conftest import BOSS, LEE, UBOSS, UMEMBER, Slack
from tests.fakes.slack import action_body
from tests.fakes.slack_views import (
    FakeViews,
    event_body,
    view_action_body,
    view_submission_body,
)

WEST = 'company.region = "West Coast"'


@pytest.fixture
def views(slack: Slack) -> FakeViews:
    return FakeViews().install(slack.fake)


def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 15
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)
    return found


def post_json(slack: Slack, body: str, **headers: str) -> int:
    return slack.post(body, **{"Content-Type": "application/json", **headers}).status_code


def dm_texts(slack: Slack, user: str) -> list[str]:
    return [posted.text for posted in slack.fake.posted_to(user)]


def test_app_home_shows_my_campaigns_alerts_digest_and_mailbox(
    slack: Slack, views: FakeViews
) -> None:
    slack.team.run(f"send webinar to {LEE}", yes=True)
    slack.team.run("alerts add on reply via email")
    slack.team.run("digest on at 08:30")
    opened = event_body({"type": "app_home_opened", "user": UBOSS, "tab": "home"})
    assert post_json(slack, opened) == 200
    home = until(lambda: views.published.get(UBOSS), "App Home")[-1]
    shown = json.dumps(home)
    assert home["type"] == "home"
    assert "#1 webinar" in shown and "1 email " in shown and "1 emails" not in shown
    assert "when someone replies to one of your emails, by email" in shown
    assert "daily at 08:30" in shown and "the embedded Maildir" in shown
    # A retry of the same event publishes nothing more.
    assert post_json(slack, opened, **{"X-Slack-Retry-Num": "1"}) == 200
    time.sleep(0.3)
    assert len(views.published[UBOSS]) == 1
    [remove] = [b["accessory"] for b in home["blocks"] if b.get("accessory")]
    body = action_body("remove_alert", remove["value"], UBOSS, slack.fake.response_url("h"))
    assert slack.post(body).status_code == 200
    again = until(lambda: len(views.published[UBOSS]) == 2 and views.published[UBOSS], "a new home")
    assert "No alerts" in json.dumps(again[-1])
    assert slack.team.run("alerts list").data["alerts"] == []


def test_follow_up_button_opens_a_modal_that_sends_to_exactly_the_nonopeners(
    slack: Slack, views: FakeViews
) -> None:
    slack.team.run(f"send webinar to {WEST}", yes=True)  # nobody has opened anything
    nonopeners = slack.team.run("nonopeners 1").data["endusers"]
    value = json.dumps({"campaign": 1, "outcome": "opened", "include_machine": False})
    slack.post(action_body("follow_up", value, UBOSS, slack.fake.response_url("f")))
    modal = until(lambda: views.opened, "the modal")[-1]
    assert modal["callback_id"] == "follow_up"
    options = modal["blocks"][1]["element"]["options"]
    assert [o["value"] for o in options] == ["invoice-reminder", "outage", "webinar"]
    chosen = {"template": {"value": {"selected_option": {"value": "outage"}}}}
    submitted = slack.post(view_submission_body(modal, chosen, UBOSS))
    assert submitted.status_code == 200 and submitted.text == ""  # the modal closes
    started = until(lambda: dm_texts(slack, UBOSS), "the DM")
    assert "on the way as job #2" in started[0]
    assert slack.team.work() == 1
    followed = [m for m in slack.team.sent() if str(m["Subject"]).startswith("Re:")]
    assert sorted(str(m["To"]) for m in followed) == sorted(e["email"] for e in nonopeners)
    # Submitting the same again, right away, is the same send twice: refused on the field.
    again = slack.post(view_submission_body(modal, chosen, UBOSS)).json()
    assert again["response_action"] == "errors"
    assert "you already sent `outage` to this audience" in again["errors"]["template"]


def test_send_with_nothing_after_it_opens_the_compose_modal(slack: Slack, views: FakeViews) -> None:
    answer, _ = slack.command("send")
    assert answer.status_code == 200
    modal = until(lambda: views.opened, "the compose modal")[-1]
    assert modal["callback_id"] == "compose"
    typed = view_action_body(modal, "audience_typed", WEST, UBOSS)
    assert slack.post(typed).status_code == 200
    updated = until(lambda: views.updated, "the count")[-1]
    assert "Reaches 4 endusers" in json.dumps(updated)

    def values(audience: str) -> dict[str, Any]:
        return {
            "template": {"value": {"selected_option": {"value": "webinar"}}},
            "audience": {"audience_typed": {"value": audience}},
            "mode": {"value": {"selected_option": {"value": "individual"}}},
            "track": {"value": {"selected_options": [{"value": "clicks"}]}},
        }

    bad = slack.post(view_submission_body(modal, values("role = "), UBOSS)).json()
    assert bad["response_action"] == "errors"
    assert "expected a value after '='" in bad["errors"]["audience"]
    good = slack.post(view_submission_body(modal, values(WEST), UBOSS))
    assert good.status_code == 200 and good.text == ""
    assert "4 emails (individual) on the way" in until(lambda: dm_texts(slack, UBOSS), "DM")[0]
    slack.team.work()
    sent = slack.team.sent()
    assert len(sent) == 4 and all(b"/t/o/" not in m.as_bytes() for m in sent)  # no opens


def test_open_campaign_answers_whoever_pressed_it_with_the_campaign(slack: Slack) -> None:
    slack.team.run(f"send webinar to {LEE}", yes=True)
    pressed = action_body("open_campaign", "1", UBOSS, slack.fake.response_url("o"))
    assert slack.post(pressed).status_code == 200
    assert "lee.chen@acme-logistics.example" in json.dumps(slack.answer("o"))
    slack.team.user(BOSS)
    refused = action_body("open_campaign", "1", UMEMBER, slack.fake.response_url("m"))
    slack.post(refused)
    assert "only an admin may look into other people's campaigns" in slack.answer("m")["text"]


def test_a_rate_limited_answer_is_waited_out_once(slack: Slack, views: FakeViews) -> None:
    slack.fake.rate_limit("views.publish")  # answers 429, Retry-After: 3
    opened = event_body({"type": "app_home_opened", "user": UBOSS, "tab": "home"}, "Ev0429")
    assert post_json(slack, opened) == 200
    until(lambda: views.published.get(UBOSS), "App Home after the wait")
    assert [m for m, _ in slack.fake.calls].count("views.publish") == 2
