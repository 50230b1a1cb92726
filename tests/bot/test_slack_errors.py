"""Each command's main mistake, typed in Slack: one warning that says what was wrong and the
command's usage, only to the asker, and nothing done (both databases)."""

from __future__ import annotations

import json

from bot.blocks import escape
from bot.registry import all_commands, find_command
from store.schema import campaigns, subscriptions
from tests.bot.conftest import MEMBER, UMEMBER, Slack

# One mistake per command: what is typed, and the words the answer must have.
MISTAKES = {
    "send": ("send webinar to role = ", "expected a value after '='"),
    "followup": ("followup 99 with webinar", "there is no campaign `99`"),
    "preview": ("preview nope to a@b.example", "there is no template `nope`"),
    "templates": ("templates all", "this command takes nothing after it"),
    "campaign": ("campaign", "say which campaign, by its number or name"),
    "campaigns": ("campaigns all", "only an admin may list everyone's campaigns"),
    "nonopeners": ("nonopeners 1 not seen", "`not seen`: ask for `not opened`"),
    "stats": ("stats by weather", "`by weather`: group by template"),
    "cohort": ("cohort maybe outage", "expected engaged or unengaged after 'cohort'"),
    "alerts add": ("alerts add on open from everyone via email", "only an admin may hear"),
    "alerts link": ("alerts link old", "`alerts link new` for a new one"),
    "alerts list": ("alerts list please", "this command takes nothing after it"),
    "alerts remove": ("alerts remove 42", "you have no alert #42"),
    "alerts quiet": ("alerts quiet 10pm-7am", "`10pm-7am` is not a range of times"),
    "digest": ("digest on at noon", "`noon` is not a time of day"),
    "connect": ("connect gmail for x@y.example", "only an admin may connect"),
    "help": ("help nope", "there is no command `nope`"),
    "jobs": ("jobs all", "this command takes nothing after it"),
    "me": ("me too", "this command takes nothing after it"),
}


def test_each_commands_main_mistake_is_one_warning_with_its_usage(slack: Slack) -> None:
    assert sorted(MISTAKES) == sorted(spec.name for spec in all_commands()), (
        "give each command its main mistake in MISTAKES"
    )
    for name, (text, said) in MISTAKES.items():
        _, url = slack.command(text, UMEMBER)
        message = slack.answer(url)
        shown = json.dumps(message["blocks"])
        assert message["response_type"] == "ephemeral", name
        assert message["blocks"][0]["text"]["text"].startswith(":warning:"), name
        assert escape(said) in message["text"], (name, message["text"])
        spec = find_command(name)
        assert spec is not None and escape(spec.usage) in shown, name
    with slack.team.engine.connect() as connection:  # nothing was done
        assert connection.execute(campaigns.select()).first() is None
        assert connection.execute(subscriptions.select()).first() is None
    assert slack.team.sent() == []
    assert slack.team.user(MEMBER).quiet_hours is None
