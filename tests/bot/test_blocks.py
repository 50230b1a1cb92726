"""Every command's Block Kit, from replies made by hand: blocks Slack takes, the key figures
shown, and a stranger's words escaped wherever they appear."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.blocks import (
    MAX_TEXT,
    Block,
    blocks_for,
    escape,
    plain,
    renderer_for,
    text_sections,
)
from bot.context import Reply
from bot.registry import all_commands

STRANGER = "<!channel> & <@U1>"  # a name an enduser gave themselves
ESCAPED = "&lt;!channel&gt; &amp; &lt;@U1&gt;"
LIMITS = {"header": 150, "section": 3000, "context": 3000}


def assert_block_kit(blocks: list[Block], most: int = 50) -> None:
    """What Slack checks before it takes a message's blocks."""
    assert 1 <= len(blocks) <= most
    for block in blocks:
        kind = block["type"]
        assert kind in ("header", "section", "context", "actions"), block
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= LIMITS["header"]
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] == "mrkdwn"
                assert 1 <= len(block["text"]["text"]) <= LIMITS["section"]
            assert len(block.get("fields", [])) <= 10
            assert all(1 <= len(field["text"]) <= 2000 for field in block.get("fields", []))
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            assert all(1 <= len(e["text"]) <= LIMITS["context"] for e in block["elements"])
        else:
            assert 1 <= len(block["elements"]) <= 25
            for button in block["elements"]:
                assert button["type"] == "button" and button["action_id"]
                assert len(button["text"]["text"]) <= 75 and len(button["value"]) <= 2000


def shown(blocks: list[Block]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def person(email: str, **more: Any) -> dict[str, Any]:
    return {"email": email, "name": STRANGER, "company": STRANGER, **more}


def engagement(**done: Any) -> dict[str, Any]:
    row = {
        "email_id": 7,
        "status": "sent",
        "first_opened_at": None,
        "first_clicked_at": None,
        "clicks": 0,
        "replied_at": None,
        "bounced_at": None,
        "auto_replied_at": None,
        "machine": {},
    }
    return row | done


SEND_OUT = {
    "template": "webinar",
    "version": 3,
    "recipients": ["ann@a.example", "bo@b.example"],
    "first": "ann@a.example",
    "emails": 2,
    "mode": "individual",
    "track_opens": True,
    "track_clicks": False,
    "audience": "2 endusers (1 new: added to the endusers)",
}
RATES = {"emails": 4, "open_rate": 50.0, "click_rate": None, "reply_rate": 25.0}

# One reply per command, as its handler makes them, each with what its blocks must show.
SAMPLES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "help": (
        {
            "commands": [
                {
                    "name": "send",
                    "usage": "/beacon send <template> to <audience>",
                    "summary": "Send a template",
                    "section": "Sending",
                },
                {"name": "me", "usage": "/beacon me", "summary": "Who I am", "section": "You"},
            ]
        },
        ["*Sending*", "`/beacon send &lt;template&gt; to &lt;audience&gt;`", "*You*", "Who I am"],
    ),
    "templates": (
        {
            "templates": [
                {
                    "key": "outage",
                    "version": 2,
                    "description": STRANGER,
                    "track_opens": True,
                    "track_clicks": False,
                }
            ]
        },
        ["*outage* (v2) · tracks opens", ESCAPED],
    ),
    "preview": (
        {"subject": f"Hi {STRANGER}", "html": "<p>Hi</p>", "text": f"Dear {STRANGER},\n\nSorry."},
        [f"*Subject:* Hi {ESCAPED}", f">Dear {ESCAPED},", ">Sorry."],
    ),
    "send": (SEND_OUT, ["Send webinar (v3)?", "ann@a.example, bo@b.example", "opens (replies"]),
    "followup": (
        {**SEND_OUT, "audience": f"2 of campaign #1 ({STRANGER}) who have not opened it"},
        ["Follow up with webinar (v3)?", f"2 of campaign #1 ({ESCAPED})"],
    ),
    "campaigns": (
        {
            "campaigns": [
                {
                    "id": 12,
                    "template": "outage",
                    "status": "paused",
                    "sent": 3,
                    "planned": 5,
                    "reason": STRANGER,
                }
            ]
        },
        ["*#12 outage*: paused, 3/5 sent", f"({ESCAPED})"],
    ),
    "campaign": (
        {
            "campaign": 12,
            "name": "outage",
            "status": "sent",
            "planned": 5,
            "sent": 3,
            "failed": 1,
            "bounced": 1,
            "auto_replied": 0,
            "human": RATES,
            "raw": {**RATES, "open_rate": 75.0},
            "endusers": [
                person("a@x.example", **engagement(first_opened_at="2024-05-01T10:03:59+00:00")),
                person("b@x.example", **engagement(bounced_at="2024-05-01T11:00:00+00:00")),
                person("c@x.example", **engagement(clicks=2, machine={"apple_mpp": 3})),
                person("d@x.example", **engagement(status="failed")),
                person("e@x.example", **engagement()),
            ],
            "total": 5,
        },
        [
            "Campaign #12 (outage)",
            "3 of 5",
            "open 50% · click n/a · reply 25%",
            "open 75%",
            f"*{ESCAPED}* a@x.example · {ESCAPED}",
            "opened 2024-05-01 10:03 UTC",
            "bounced 2024-05-01 11:00 UTC",
            "2 clicks · machines: apple_mpp x3",
            "failed",
            "nothing yet",
            '"action_id": "follow_up"',
        ],
    ),
    "nonopeners": (
        {
            "campaign": 12,
            "outcome": "clicked",
            "endusers": [person("a@x.example", email_id=1, enduser_id=2)],
            "untracked": 2,
            "include_machine": False,
        },
        [
            "Campaign #12: not clicked",
            "*1* enduser has not clicked it.",
            f"*{ESCAPED}* a@x.example · {ESCAPED}",
            "Machine opens and clicks do not count",
            "2 emails were sent without that tracking",
        ],
    ),
    "stats": (
        {
            "rows": [
                {"key": 3, **RATES, "label": STRANGER, "emails": 1},
                {"key": 4, **RATES, "label": "Globex", "emails": 9, "open_rate": 12.5},
            ],
            "by": "company",
            "raw": False,
        },
        ["Rates by company", f"*{ESCAPED}*: 1 email", "*Globex*: 9 emails", "open 12.5%"],
    ),
    "cohort": (
        {
            "engaged": False,
            "template": None,
            "campaign": 12,
            "since_days": 30,
            "endusers": [person("a@x.example")],
        },
        [
            "Did not engage with campaign #12",
            "*1* enduser in the last 30 days",
            f"*{ESCAPED}* a@x.example",
            "to cohort unengaged #12 since 30d`",
        ],
    ),
    "alerts add": (
        {
            "alert": 4,
            "words": "#4: when someone opens one of your emails, by desktop",
            "page": "https://t.example/alerts?token=abc",
        },
        ["Alert #4: when someone opens", "https://t.example/alerts?token=abc"],
    ),
    "alerts link": (
        {"page": "https://t.example/alerts?token=t", "new": True},
        ["Open your alerts page", "older links no longer work"],
    ),
    "alerts list": (
        {"alerts": [{"id": 4, "words": "#4: when someone replies"}, {"id": 6, "words": "#6: x"}]},
        ["#4: when someone replies", "#6: x"],
    ),
    "alerts remove": ({"removed": 4}, ["Alert #4 removed."]),
    "alerts quiet": ({"quiet_hours": "22:00-07:00"}, ["*22:00-07:00*", "until 07:00"]),
    "digest": ({"enabled": True, "at": "09:00", "via": "slack"}, ["as a Slack message at *09:00*"]),
    "connect": (
        {
            "provider": "outlook",
            "address": "support@us.example",
            "link": "https://t.example/connect/abc&def",
            "expires_at": "2024-05-01T10:13:00+00:00",
        },
        ["<https://t.example/connect/abc&amp;def|Sign in to Microsoft>", "support@us.example"],
    ),
    "me": (
        {
            "email": "boss@us.example",
            "name": STRANGER,
            "role": "admin",
            "timezone": "Europe/Oslo",
            "quiet_hours": None,
            "slack_user_id": "UBOSS",
            "mailbox": f"{STRANGER}@gmail.example (gmail), your own",
            "alerts": 2,
            "digest": "off",
            "mark_my_browser": "https://t.example/t/me/abc?x=1&y=2",
            "unused": None,
        },
        [
            "*Time zone*\\nEurope/Oslo",
            "*Quiet hours*\\nnone",
            "*Slack*\\nUBOSS",
            f"*Sends from:* {ESCAPED}@gmail.example",
            "<https://t.example/t/me/abc?x=1&amp;y=2|Mark this browser as yours>",
        ],
    ),
    "jobs": (
        {
            "jobs": [
                {
                    "id": 3,
                    "kind": "send",
                    "what": "send-out of campaign #12",
                    "status": "running",
                    "done": 40,
                    "total": 100,
                    "note": "paused: daily limit",
                    "error": None,
                    "created_at": "2024-05-01T10:03:00+00:00",
                },
                {
                    "id": 2,
                    "kind": "digest",
                    "what": "digest sent now",
                    "status": "failed",
                    "done": 0,
                    "total": None,
                    "note": None,
                    "error": f"550 {STRANGER}: no such user",
                    "created_at": "2024-04-30T08:00:00+00:00",
                },
            ]
        },
        [
            "*#3* send-out of campaign #12: running, 40/100 (paused: daily limit)",
            f"*#2* digest sent now: failed: 550 {ESCAPED}: no such user",
            "started 2024-05-01 10:03 UTC",
        ],
    ),
}


def test_every_command_has_a_renderer_and_a_sample_here() -> None:
    names = {spec.name for spec in all_commands()}
    assert {name for name in names if renderer_for(name) is None} == set()
    assert names == set(SAMPLES), "give each command a sample reply in SAMPLES"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_reply_becomes_block_kit_with_its_data_and_strangers_escaped(name: str) -> None:
    data, expected = SAMPLES[name]
    blocks = blocks_for(name, Reply("the text is never read", data))
    assert_block_kit(blocks)
    text = shown(blocks)
    assert "the text is never read" not in text
    for part in expected:
        assert part in text, f"{name}: {part!r} not in {text}"
    assert "<!" not in text and "<@" not in text


def test_empty_lists_say_what_to_do_instead() -> None:
    for name, key, hint in [
        ("templates", "templates", "mailbeacon templates sync"),
        ("campaigns", "campaigns", "`/beacon send &lt;template&gt; to &lt;audience&gt;`"),
        ("alerts list", "alerts", "`/beacon alerts add on open via email`"),
        ("jobs", "jobs", "`digest now`"),
    ]:
        blocks = blocks_for(name, Reply("", {key: []}))
        assert_block_kit(blocks)
        assert hint in shown(blocks)
    nothing = blocks_for("stats", Reply("", {"rows": [], "by": None, "raw": True}))
    assert "Nothing sent yet." in shown(nothing) and "Machines included" in shown(nothing)


def test_a_long_table_stops_in_time_and_says_how_many_more() -> None:
    data, _ = SAMPLES["campaign"]
    people = [person(f"p{i}@x.example", **engagement()) for i in range(1000)]
    blocks = blocks_for("campaign", Reply("", {**data, "endusers": people, "total": 1500}))
    assert_block_kit(blocks)
    assert "… and 1460 more" in shown(blocks)
    assert blocks[-1]["type"] == "actions"  # the button is not cut off


def test_the_follow_up_button_carries_who_to_follow_up() -> None:
    data, _ = SAMPLES["nonopeners"]
    [button] = blocks_for("nonopeners", Reply("", {**data, "include_machine": True}))[-1][
        "elements"
    ]
    assert button["action_id"] == "follow_up"
    assert json.loads(button["value"]) == {
        "campaign": 12,
        "outcome": "clicked",
        "include_machine": True,
    }
    nobody = blocks_for("nonopeners", Reply("", {**data, "endusers": []}))
    assert all(block["type"] != "actions" for block in nobody)


def test_a_send_preview_leaves_room_for_its_buttons() -> None:
    many = [f"enduser{i:05}@somewhere-far.example" for i in range(5000)]
    first_text = "\n".join(f"line {i} " + "x" * 200 for i in range(400))
    data = {**SEND_OUT, "recipients": many, "first_subject": "Hi", "first_text": first_text}
    blocks = blocks_for("send", Reply("", data))
    assert_block_kit(blocks, most=47)
    text = shown(blocks)
    assert "enduser00000@somewhere-far.example" in text and " more" in text
    assert ">line 0 " in text


def test_a_started_send_says_its_campaign_and_job() -> None:
    blocks = blocks_for("send", Reply("", {**SEND_OUT, "campaign": 9}, job=4))
    assert_block_kit(blocks)
    assert "Campaign #9 (webinar)" in shown(blocks)
    assert "2 emails (individual) on the way as job #4." in shown(blocks)


def test_stats_over_all_emails_are_figures_side_by_side() -> None:
    data = {"rows": [{"key": None, **RATES, "label": "all emails", "emails": 7}], "by": None}
    [title, figures, counted] = blocks_for("stats", Reply("", {**data, "raw": False}))
    assert title["text"]["text"] == "Rates"
    assert [f["text"] for f in figures["fields"]] == [
        "*Emails*\n7",
        "*Opened*\n50%",
        "*Clicked*\nn/a",
        "*Replied*\n25%",
    ]
    assert "People only" in counted["elements"][0]["text"]


def test_long_text_is_split_between_lines_and_nothing_is_lost() -> None:
    lines = [f"{i:04} " + "y" * 95 for i in range(100)] + ["z" * (MAX_TEXT * 2 + 5)]
    sections = text_sections("\n".join(lines))
    assert_block_kit(sections)
    assert len(sections) == 7
    assert "".join(s["text"]["text"].replace("\n", "") for s in sections) == "".join(lines)


def test_a_command_without_a_renderer_still_shows_its_data_escaped() -> None:
    blocks = plain(Reply("", {"who": STRANGER, "count": 3, "rows": [{"name": STRANGER}] * 45}))
    assert_block_kit(blocks)
    text = shown(blocks)
    assert "*Who*\\n" + ESCAPED in text and "*Count*\\n3" in text and "… and 5 more" in text
    assert "<!" not in text
    assert escape(STRANGER) == ESCAPED
