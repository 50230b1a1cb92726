"""Slack shows what `mailbeacon cmd --json` gives: every registered command, run both ways on
the same store (both databases), answers the same data, and fails or succeeds alike."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from bot.blocks import escape, rate, when
from bot.registry import all_commands
from mailbeacon.cmd import run_cmd
from store.schema import companies, endusers
from tests.bot.conftest import BOSS, Slack
from tests.bot.playbook import DANA, INGRID, LEE, everyone_did_something

STRANGER = "<!channel> & <@U1|all>"

# One invocation per command, on the store that test_views' campaign #1 (outage) leaves; a
# `{rule}` is an alert rule made for that run.
EXAMPLES = {
    "send": f"send webinar to {INGRID}, {LEE}",
    "followup": "followup 1 with webinar",
    "preview": f"preview webinar to {INGRID}",
    "templates": "templates",
    "campaign": "campaign 1",
    "campaigns": "campaigns",
    "nonopeners": "nonopeners 1",
    "stats": "stats by company",
    "cohort": "cohort engaged outage",
    "alerts add": "alerts add on bounce template outage via email",
    "alerts link": "alerts link new",
    "alerts list": "alerts list",
    "alerts remove": "alerts remove {rule}",
    "alerts quiet": "alerts quiet 22:00-07:00",
    "digest": "digest on at 09:00",
    "connect": "connect gmail",
    "help": "help",
    "jobs": "jobs",
    "me": "me",
}
# What each run makes of its own (a rule, a sign-in link), so that two runs cannot agree on
# it; test_blocks shows these.
MINTED = {
    "alerts add": {"alert", "words"},  # the words start with the new rule's number
    "alerts remove": {"removed"},
    "alerts link": {"page"},
    "connect": {"link", "expires_at"},
}
# Data for code, not for people: each is named on the same row by something shown.
UNSHOWN = {
    "email_id",  # the row's email address is shown
    "enduser_id",
    "key",  # a stats row's id; its label is shown
    "html",  # Slack shows an email's text part
    "provider",  # gmail or outlook: `connect` names it (Google, Microsoft)
}
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


def leaves(data: Any, unshown: set[str]) -> Iterator[Any]:
    """Every scalar in the data, but under the `unshown` keys."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key not in unshown:
                yield from leaves(value, unshown)
    elif isinstance(data, list):
        for item in data:
            yield from leaves(item, unshown)
    else:
        yield data


def missing(data: dict[str, Any], blocks: list[dict[str, Any]], unshown: set[str]) -> list[str]:
    """What Slack does not show of the data, as the renderers write it: a string escaped (each
    line of it), a time to the minute, a rate in percent, a number as a whole word. Flags and
    nothing (None, 0) are said in words or left out, so they are not looked for."""
    texts = "\n".join(strings(blocks))
    lost = []
    for value in leaves(data, unshown):
        if isinstance(value, bool) or value is None or value == 0:
            continue
        if isinstance(value, float):
            wanted = [rate(value)]
        elif isinstance(value, int):
            if not re.search(rf"(?<![\d.]){value}(?!\d)", texts):
                lost.append(str(value))
            continue
        elif ISO_TIME.match(value):
            wanted = [when(value)]
        else:
            wanted = [escape(line) for line in value.splitlines() if line.strip()]
        lost += [part for part in wanted if part not in texts]
    return lost


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_slack_answers_every_command_with_the_data_cmd_gives(
    slack: Slack, capsys: pytest.CaptureFixture[str]
) -> None:
    team = slack.team
    registered = [spec.name for spec in all_commands()]
    assert sorted(registered) == sorted(EXAMPLES), "give each command an example in EXAMPLES"
    everyone_did_something(team)
    with team.engine.begin() as connection:  # strangers' words, in names of every kind
        connection.execute(update(endusers).where(endusers.c.email == INGRID).values(name=STRANGER))
        connection.execute(
            update(companies)
            .where(companies.c.domain == DANA.split("@")[1])
            .values(name=f"Acme {STRANGER}")
        )
    team.run("alerts add on reply via email")
    slack.answer(slack.command("me")[1])  # Slack links the asker first, so `me` agrees

    def example(name: str) -> str:
        if "{rule}" not in EXAMPLES[name]:
            return EXAMPLES[name]
        rule = team.run("alerts add on click via desktop").data["alert"]
        return EXAMPLES[name].replace("{rule}", str(rule))

    for name in registered:
        run_cmd(team.settings, team.engine, example(name), BOSS, as_json=True, wait=False)
        by_cmd = json.loads(capsys.readouterr().out)
        message = slack.answer(slack.command(example(name))[1])
        everything = json.dumps(message)
        assert "<!channel" not in everything and "<@U1" not in everything, name
        failed = str(message["blocks"][0].get("text", {}).get("text")).startswith(":warning:")
        assert failed is not by_cmd["ok"], f"{name}: {by_cmd} but Slack said {message['text']}"
        if failed:
            assert message["text"] == escape(by_cmd["error"]), name
        else:
            unshown = UNSHOWN | MINTED.get(name, set())
            assert missing(by_cmd["data"], message["blocks"], unshown) == [], (
                f"{name}: {everything}"
            )
