"""Every built-in command's grammar, through the registry's parser. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from bot.commands.alerts import AlertsAdd, Quiet
from bot.commands.campaigns import CampaignView
from bot.commands.digest import Digest
from bot.commands.followup import FollowUp
from bot.commands.nonopeners import NonOpeners, Who
from bot.commands.send import Send
from bot.commands.stats import Stats
from bot.commands.templates import Preview
from bot.grammar import CommandError
from bot.registry import find_command, parse, usage_lines


def value(text: str) -> Any:
    return parse(text).value


def usage(name: str) -> str:
    spec = find_command(name)
    assert spec is not None
    return spec.usage


REGION = 'company.region = "West Coast" and company.products has "A"'


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", None),
        ("help", None),
        ("  HELP ", None),
        ("help send", "send"),
        ("templates", None),
        ("preview outage to ann@acme.example", Preview("outage", "ann@acme.example")),
        ("send outage to ann@acme.example", Send("outage", "ann@acme.example")),
        (
            "send outage to ann@acme.example, bob@acme.example as group",
            Send("outage", "ann@acme.example, bob@acme.example", "group"),
        ),
        (f"send outage to {REGION}", Send("outage", REGION)),
        (
            f"send outage to {REGION} as individual track opens",
            Send("outage", REGION, "individual", True, False),
        ),
        (
            f"send outage to {REGION} track opens,clicks as group",
            Send("outage", REGION, "group", True, True),
        ),
        (
            "send outage to role = 'as group' track none",
            Send("outage", "role = 'as group'", "individual", False, False),
        ),
        # An audience that merely contains the words is not cut short.
        (
            'send outage to role = "track" or name = "as"',
            Send("outage", 'role = "track" or name = "as"'),
        ),
        ("send outage to ann@acme.example again", Send("outage", "ann@acme.example", again=True)),
        (
            "send outage to cohort unengaged webinar since 30d as group",
            Send("outage", "cohort unengaged webinar since 30d", "group"),
        ),
        ("campaigns", "mine"),
        ("campaigns all", "all"),
        ("campaign 12", CampaignView("12")),
        ("campaign '#12'", CampaignView("#12")),
        ("stats", Stats()),
        ("stats by company since 30d raw", Stats("company", 30, True)),
        ("stats raw by template", Stats("template", None, True)),
        ("cohort engaged outage since 7d", "cohort engaged outage since 7d"),
        ("me", None),
        ("jobs", None),
    ],
)
def test_commands_parse(text: str, command: Any) -> None:
    assert value(text) == command


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        ("sned outage to a@b.example", "`sned` is not a command. Did you mean `send`?", None),
        ("frobnicate", "`frobnicate` is not a command.", None),
        ("templates all", "this command takes nothing after it", "templates"),
        ("preview outage", "say which template and which email address", "preview"),
        ("preview outage for a@b.example", "say which template and which email address", "preview"),
        ("send outage", "say which template and to whom", "send"),
        ("send outage to a@b.example as team", "send as `individual` or `group`", "send"),
        ("send outage to a@b.example track everything", "track `opens,clicks`, `opens`", "send"),
        ("send outage to a@b.example track", "`track` needs a value after it", "send"),
        ('send outage to name = "Ann', 'a quote (") is not closed', None),
        ("campaigns yours", "list `mine` or `all` campaigns", "campaigns"),
        ("campaign", "say which campaign, by its number or name", "campaign"),
        ("stats by weather", "`by weather`: group by template, campaign", "stats"),
        ("stats since yesterday", "`since yesterday`: say how many days back", "stats"),
        ("stats by", "`by` needs a value after it", "stats"),
        ("cohort", "say `engaged` or `unengaged`", "cohort"),
        ("followup 12 outage", "say which campaign and with which template", "followup"),
        ("followup 12 with nudge to everyone", "`everyone`: ask for `not opened`", "followup"),
        ("followup 12 with nudge not opened", "`not`: say who, as `to not opened`", "followup"),
    ],
)
def test_mistakes_say_what_was_wrong_and_show_the_usage(
    text: str, message: str, usage: str | None
) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert message in raised.value.message
    if usage is None:  # not even a command: every usage line
        assert raised.value.usage == usage_lines()
    else:
        assert raised.value.usage == globals()["usage"](usage)
    assert str(raised.value).endswith(raised.value.usage)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("nonopeners 12", NonOpeners("12")),
        ("nonopeners #12 not clicked", NonOpeners("#12", Who("clicked"))),
        (
            "nonopeners outage not replied include machine",
            NonOpeners("outage", Who("replied", True)),
        ),
        ("nonopeners outage include machine", NonOpeners("outage", Who("opened", True))),
        ("followup 12 with nudge", FollowUp("12", "nudge")),
        (
            "followup outage with nudge to not clicked include machine",
            FollowUp("outage", "nudge", Who("clicked", True)),
        ),
        (
            "followup #3 with nudge to not replied again",
            FollowUp("#3", "nudge", Who("replied"), True),
        ),
    ],
)
def test_nonopeners_and_followup_parse(text: str, command: Any) -> None:
    assert value(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonopeners", "say which campaign"),
        ("nonopeners 12 not seen", "`not seen`: ask for `not opened`, `not clicked`"),
    ],
)
def test_nonopeners_mistakes(text: str, message: str) -> None:
    with pytest.raises(CommandError, match=message) as raised:
        parse(text)
    assert raised.value.usage == usage("nonopeners")


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("alerts add on open via email", AlertsAdd("open", "email")),
        ("ALERTS add on Reply via Slack", AlertsAdd("reply", "slack")),
        (
            'alerts add on click first only template outage campaign #4 company "Acme Logistics"'
            " from everyone include machine via desktop",
            AlertsAdd(
                "click",
                "desktop",
                template="outage",
                campaign="#4",
                company="Acme Logistics",
                first_only=True,
                everyone=True,
                include_machine=True,
            ),
        ),
        ("alerts list", None),
        ("alerts remove 3", 3),
        ("alerts remove #3", 3),
        ("alerts quiet 22:00-07:00", Quiet("22:00-07:00")),
        ("alerts quiet OFF", Quiet(None)),
    ],
)
def test_alerts_parse(text: str, command: Any) -> None:
    assert value(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "alerts",
            "say which: `alerts add`, `alerts link`, `alerts list`, `alerts quiet`, "
            "`alerts remove`",
        ),
        ("alerts mute", "say which: `alerts add`"),
        ("alerts quiet 10pm-7am", "`10pm-7am` is not a range of times: say `alerts quiet 22:00"),
        ("alerts remove three", "say which alert to remove, by its number"),
        ("alerts add on view via email", "say which event: `on open|click|reply|bounce`"),
        ("alerts add open via email", "say which event"),
        ("alerts add on open", "say where the alert goes, last: `via slack|email|desktop`"),
        ("alerts add on open via pigeon", "say where the alert goes"),
        ("alerts add on open template via email", "`template` needs a value after it"),
        ("alerts add on open loudly via email", "`loudly` is not an alert option"),
        ("alerts add on open first via email", "`first` is not an alert option"),
    ],
)
def test_alerts_mistakes(text: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert message in raised.value.message
    said = text.split()
    family = [s for s in ("add", "link", "list", "quiet", "remove") if said[1:2] == [s]]
    if family:  # the usage of that command
        assert raised.value.usage == usage(f"alerts {family[0]}")
    else:  # every alerts command's usage
        assert raised.value.usage.splitlines() == [
            usage(f"alerts {name}") for name in ("add", "link", "list", "quiet", "remove")
        ]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("digest on", Digest("on")),
        ("digest on at 9:05", Digest("on", "09:05")),
        ("digest on at 18:30", Digest("on", "18:30")),
        ("digest off", Digest("off")),
        ("digest on via slack", Digest("on", None, "slack")),
        ("digest on at 7:00 via email", Digest("on", "07:00", "email")),
        ("digest now", Digest("now")),
    ],
)
def test_digest_parses(text: str, command: Digest) -> None:
    assert value(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digest", "say `digest on`, `digest on at 09:00 via slack`, `digest off` or `digest now`"),
        ("digest on via pigeon", "`via pigeon`: say `digest on [at 09:00] [via email|slack]`"),
        ("digest on at noon", "`noon` is not a time of day: say `at 09:00`"),
        ("digest on at 24:00", "`24:00` is not a time of day"),
        ("digest off now", "say `digest on`"),
    ],
)
def test_digest_mistakes(text: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert message in raised.value.message
    assert raised.value.usage == usage("digest")
