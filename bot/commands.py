"""The `/beacon` command grammar (DESIGN §7): text in, a command dataclass out. Pure.

Transport-neutral: Slack, `mailbeacon cmd` and tests all parse through `parse()`. A mistake
raises CommandError with what was wrong and the usage line of the command.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from notifier.quiet import is_quiet_range

Mode = Literal["individual", "group"]


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Templates:
    pass


@dataclass(frozen=True)
class Preview:
    template: str
    to: str


@dataclass(frozen=True)
class Send:
    template: str
    audience: str
    mode: Mode = "individual"
    track_opens: bool | None = None  # None: the template's default
    track_clicks: bool | None = None


@dataclass(frozen=True)
class Campaigns:
    scope: Literal["mine", "all"] = "mine"


@dataclass(frozen=True)
class NonOpeners:
    campaign: str  # an id (12 or #12) or a campaign's name
    outcome: Literal["opened", "clicked", "replied"] = "opened"
    include_machine: bool = False


ALERT_EVENTS = ("open", "click", "reply", "bounce")
ALERT_CHANNELS = ("slack", "email", "desktop")


@dataclass(frozen=True)
class AlertsAdd:
    event: str  # one of ALERT_EVENTS
    channel: str  # one of ALERT_CHANNELS
    template: str | None = None
    campaign: str | None = None  # an id (12 or #12) or a campaign's name
    company: str | None = None
    first_only: bool = False  # only the first such event of each email
    everyone: bool = False  # everyone's emails, not only the user's own
    include_machine: bool = False


@dataclass(frozen=True)
class AlertsList:
    pass


@dataclass(frozen=True)
class AlertsRemove:
    id: int


@dataclass(frozen=True)
class AlertsQuiet:
    hours: str | None  # "22:00-07:00" in the user's time zone; None: never quiet


@dataclass(frozen=True)
class Digest:
    action: Literal["on", "off", "now"]
    at: str | None = None  # "HH:MM", the user's local time


Command = (
    Help
    | Templates
    | Preview
    | Send
    | Campaigns
    | NonOpeners
    | AlertsAdd
    | AlertsList
    | AlertsRemove
    | AlertsQuiet
    | Digest
)

USAGE = {
    "help": "/beacon help",
    "templates": "/beacon templates",
    "preview": "/beacon preview <template> to <email>",
    "send": (
        "/beacon send <template> to <audience> [as individual|group] "
        "[track opens,clicks|opens|clicks|none]"
    ),
    "campaigns": "/beacon campaigns [mine|all]",
    "nonopeners": (
        "/beacon nonopeners <campaign> [not opened|not clicked|not replied] [include machine]"
    ),
    "alerts": (
        "/beacon alerts add on open|click|reply|bounce [first only] [template <k>] "
        "[campaign <id>] [company <name>] [from everyone] [include machine] "
        "via slack|email|desktop | alerts list | alerts remove <id> "
        "| alerts quiet <22:00-07:00>|off"
    ),
    "digest": "/beacon digest on [at 09:00] | digest off | digest now",
}


class CommandError(Exception):
    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nusage: {self.usage}"


@dataclass(frozen=True)
class _Token:
    text: str  # as typed, quotes included
    start: int
    end: int

    @property
    def word(self) -> str:
        return self.text.lower()


def _tokens(text: str) -> list[_Token]:
    """Whitespace-separated words; a quoted stretch ("..." or '...') stays inside one word."""
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        start, quote = i, ""
        while i < len(text) and (quote or not text[i].isspace()):
            if quote and text[i] == "\\":
                i += 1
            elif text[i] == quote:
                quote = ""
            elif not quote and text[i] in "\"'":
                quote = text[i]
            i += 1
        if quote:
            raise CommandError(f"a quote ({quote}) is not closed", "")
        tokens.append(_Token(text[start:i], start, i))
    return tokens


def parse(text: str) -> Command:
    try:
        tokens = _tokens(text)
    except CommandError as exc:
        raise CommandError(exc.message, _usage_list()) from None
    if not tokens:
        return Help()
    name = tokens[0].word
    parser = _PARSERS.get(name)
    if parser is None:
        close = difflib.get_close_matches(name, list(_PARSERS), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise CommandError(f"`{tokens[0].text}` is not a command.{hint}", _usage_list())
    return parser(text, tokens[1:])


def _usage_list() -> str:
    return "\n".join(USAGE.values())


def _no_arguments(command: Command, name: str) -> Callable[[str, list[_Token]], Command]:
    def parse_it(text: str, args: list[_Token]) -> Command:
        if args:
            raise CommandError(f"`{name}` takes nothing after it", USAGE[name])
        return command

    return parse_it


def _preview(text: str, args: list[_Token]) -> Command:
    if len(args) != 3 or args[1].word != "to":
        raise CommandError("say which template and which email address", USAGE["preview"])
    return Preview(template=args[0].text, to=args[2].text)


def _send(text: str, args: list[_Token]) -> Command:
    if len(args) < 3 or args[1].word != "to":
        raise CommandError("say which template and to whom", USAGE["send"])
    rest = args[2:]
    mode: Mode = "individual"
    opens: bool | None = None
    clicks: bool | None = None
    # Options come at the end; peel them off so the audience is everything in between.
    while len(rest) >= 3 and rest[-2].word in ("as", "track"):
        keyword, value = rest[-2].word, rest[-1].word
        if keyword == "as":
            if value not in ("individual", "group"):
                raise CommandError(
                    f"`as {rest[-1].text}`: send as `individual` or `group`", USAGE["send"]
                )
            mode = "individual" if value == "individual" else "group"
        else:
            opens, clicks = _tracking(rest[-1].text)
        rest = rest[:-2]
    if rest[-1].word in ("as", "track"):
        raise CommandError(f"`{rest[-1].text}` needs a value after it", USAGE["send"])
    audience = text[rest[0].start : rest[-1].end]
    return Send(args[0].text, audience, mode, opens, clicks)


def _tracking(value: str) -> tuple[bool, bool]:
    parts = {part.strip().lower() for part in value.split(",")}
    if parts == {"none"}:
        return False, False
    if not parts or not parts <= {"opens", "clicks"}:
        raise CommandError(
            f"`track {value}`: track `opens,clicks`, `opens`, `clicks` or `none`", USAGE["send"]
        )
    return "opens" in parts, "clicks" in parts


def _campaigns(text: str, args: list[_Token]) -> Command:
    if not args:
        return Campaigns()
    if len(args) == 1 and args[0].word in ("mine", "all"):
        return Campaigns("mine" if args[0].word == "mine" else "all")
    raise CommandError("list `mine` or `all` campaigns", USAGE["campaigns"])


_OUTCOMES: dict[str, Literal["opened", "clicked", "replied"]] = {
    "opened": "opened",
    "clicked": "clicked",
    "replied": "replied",
}


def _nonopeners(text: str, args: list[_Token]) -> Command:
    if not args:
        raise CommandError("say which campaign (its number or name)", USAGE["nonopeners"])
    words = [a.word for a in args[1:]]
    include_machine = words[-2:] == ["include", "machine"]
    if include_machine:
        words = words[:-2]
    if not words:
        return NonOpeners(args[0].text, "opened", include_machine)
    if len(words) == 2 and words[0] == "not" and words[1] in _OUTCOMES:
        return NonOpeners(args[0].text, _OUTCOMES[words[1]], include_machine)
    raise CommandError(
        f"`{' '.join(words)}`: ask for `not opened`, `not clicked` or `not replied`",
        USAGE["nonopeners"],
    )


def _alerts(text: str, args: list[_Token]) -> Command:
    action = args[0].word if args else ""
    if action == "list" and len(args) == 1:
        return AlertsList()
    if action == "remove" and len(args) == 2 and args[1].text.lstrip("#").isdigit():
        return AlertsRemove(int(args[1].text.lstrip("#")))
    if action == "quiet" and len(args) == 2:
        if args[1].word == "off":
            return AlertsQuiet(None)
        if is_quiet_range(args[1].text):
            return AlertsQuiet(args[1].text)
        raise CommandError(
            f"`{args[1].text}` is not a range of times: say `alerts quiet 22:00-07:00` (your "
            "own time zone) or `alerts quiet off`",
            USAGE["alerts"],
        )
    if action != "add":
        raise CommandError(
            "say `alerts add …`, `alerts list`, `alerts remove <id>` or `alerts quiet …`",
            USAGE["alerts"],
        )
    words = args[1:]
    if len(words) < 2 or words[0].word != "on" or words[1].word not in ALERT_EVENTS:
        raise CommandError(f"say which event: `on {'|'.join(ALERT_EVENTS)}`", USAGE["alerts"])
    if len(words) < 4 or words[-2].word != "via" or words[-1].word not in ALERT_CHANNELS:
        raise CommandError(
            f"say where the alert goes, last: `via {'|'.join(ALERT_CHANNELS)}`", USAGE["alerts"]
        )
    flags = {("first", "only"): "first_only", ("from", "everyone"): "everyone"}
    flags["include", "machine"] = "include_machine"
    chosen: set[str] = set()
    narrowed: dict[str, str] = {}
    rest = words[2:-2]
    while rest:
        head, value = rest[0], rest[1] if len(rest) >= 2 else None
        if value is not None and (head.word, value.word) in flags:
            chosen.add(flags[head.word, value.word])
        elif head.word in ("template", "campaign", "company"):
            if value is None:
                raise CommandError(f"`{head.text}` needs a value after it", USAGE["alerts"])
            narrowed[head.word] = _unquoted(value.text)
        else:
            raise CommandError(f"`{head.text}` is not an alert option", USAGE["alerts"])
        rest = rest[2:]
    return AlertsAdd(
        words[1].word,
        words[-1].word,
        template=narrowed.get("template"),
        campaign=narrowed.get("campaign"),
        company=narrowed.get("company"),
        first_only="first_only" in chosen,
        everyone="everyone" in chosen,
        include_machine="include_machine" in chosen,
    )


def _digest(text: str, args: list[_Token]) -> Command:
    words = [arg.word for arg in args]
    if words in (["off"], ["now"]):
        return Digest("off" if words == ["off"] else "now")
    if words == ["on"]:
        return Digest("on")
    if len(words) == 3 and words[:2] == ["on", "at"]:
        hours, _, minutes = words[2].partition(":")
        if hours.isdigit() and minutes.isdigit() and int(hours) < 24 and int(minutes) < 60:
            return Digest("on", f"{int(hours):02d}:{int(minutes):02d}")
        raise CommandError(
            f"`{args[2].text}` is not a time of day: say `at 09:00`, in your own time zone",
            USAGE["digest"],
        )
    raise CommandError(
        "say `digest on`, `digest on at 09:00`, `digest off` or `digest now`", USAGE["digest"]
    )


def _unquoted(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


_PARSERS: dict[str, Callable[[str, list[_Token]], Command]] = {
    "help": _no_arguments(Help(), "help"),
    "templates": _no_arguments(Templates(), "templates"),
    "preview": _preview,
    "send": _send,
    "campaigns": _campaigns,
    "nonopeners": _nonopeners,
    "alerts": _alerts,
    "digest": _digest,
}
assert set(_PARSERS) == set(USAGE)
