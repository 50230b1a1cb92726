from __future__ import annotations

import pytest

from bot.commands import (
    USAGE,
    AlertsAdd,
    AlertsList,
    AlertsQuiet,
    AlertsRemove,
    Campaigns,
    Command,
    CommandError,
    Digest,
    Help,
    NonOpeners,
    Preview,
    Send,
    Templates,
    parse,
)

REGION = 'company.region = "West Coast" and company.products has "A"'


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("", Help()),
        ("help", Help()),
        ("  HELP ", Help()),
        ("templates", Templates()),
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
        ("campaigns", Campaigns("mine")),
        ("campaigns all", Campaigns("all")),
    ],
)
def test_commands_parse(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        ("sned outage to a@b.example", "`sned` is not a command. Did you mean `send`?", None),
        ("frobnicate", "`frobnicate` is not a command.", None),
        ("help me", "`help` takes nothing after it", "help"),
        ("preview outage", "say which template and which email address", "preview"),
        ("preview outage for a@b.example", "say which template and which email address", "preview"),
        ("send outage", "say which template and to whom", "send"),
        ("send outage to a@b.example as team", "send as `individual` or `group`", "send"),
        ("send outage to a@b.example track everything", "track `opens,clicks`, `opens`", "send"),
        ("send outage to a@b.example track", "`track` needs a value after it", "send"),
        ('send outage to name = "Ann', 'a quote (") is not closed', None),
        ("campaigns yours", "list `mine` or `all` campaigns", "campaigns"),
    ],
)
def test_mistakes_say_what_was_wrong_and_show_the_usage(
    text: str, message: str, usage: str | None
) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert message in raised.value.message
    if usage is None:  # not even a command: every usage line
        assert all(line in raised.value.usage for line in USAGE.values())
    else:
        assert raised.value.usage == USAGE[usage]
    assert str(raised.value).endswith(raised.value.usage)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("nonopeners 12", NonOpeners("12")),
        ("nonopeners #12 not clicked", NonOpeners("#12", "clicked")),
        ("nonopeners outage not replied include machine", NonOpeners("outage", "replied", True)),
        ("nonopeners outage include machine", NonOpeners("outage", "opened", True)),
    ],
)
def test_nonopeners_parses(text: str, command: Command) -> None:
    assert parse(text) == command


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
    assert raised.value.usage == USAGE["nonopeners"]


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
        ("alerts list", AlertsList()),
        ("alerts remove 3", AlertsRemove(3)),
        ("alerts remove #3", AlertsRemove(3)),
        ("alerts quiet 22:00-07:00", AlertsQuiet("22:00-07:00")),
        ("alerts quiet OFF", AlertsQuiet(None)),
    ],
)
def test_alerts_parse(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alerts", "say `alerts add …`, `alerts list`, `alerts remove <id>` or `alerts quiet …`"),
        ("alerts quiet 10pm-7am", "`10pm-7am` is not a range of times: say `alerts quiet 22:00"),
        ("alerts remove three", "say `alerts add …`"),
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
    assert raised.value.usage == USAGE["alerts"]


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("digest on", Digest("on")),
        ("digest on at 9:05", Digest("on", "09:05")),
        ("digest on at 18:30", Digest("on", "18:30")),
        ("digest off", Digest("off")),
        ("digest now", Digest("now")),
    ],
)
def test_digest_parses(text: str, command: Command) -> None:
    assert parse(text) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("digest", "say `digest on`, `digest on at 09:00`, `digest off` or `digest now`"),
        ("digest on at noon", "`noon` is not a time of day: say `at 09:00`"),
        ("digest on at 24:00", "`24:00` is not a time of day"),
        ("digest off now", "say `digest on`"),
    ],
)
def test_digest_mistakes(text: str, message: str) -> None:
    with pytest.raises(CommandError) as raised:
        parse(text)
    assert message in raised.value.message
    assert raised.value.usage == USAGE["digest"]
