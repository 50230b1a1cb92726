"""The command registry: every `/beacon` command is declared once, with its name, usage line,
summary, parser, handler and who may run it (`@command`, the way `tracking/classify.py`
registers signals). Parsing, help, "did you mean", usage lines in errors, the README's table
and every renderer read it. The built-in commands are the modules of `bot/commands/`."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from bot.context import CommandFailed, Context, Reply
from bot.grammar import CommandError, Token, tokens
from bot.users import User

Parser = Callable[[str, list[Token]], Any]  # (all that was typed, the words after the name)
Handler = Callable[[Any, Context], Reply]
# Who may run it: None when the user may, else why not and what they may do instead.
Permission = Callable[[Any, User], str | None]
SECTIONS = ("Sending", "Engagement", "Alerts", "You")


@dataclass(frozen=True)
class CommandSpec:
    name: str  # one word, or two for a family ("alerts add")
    usage: str
    summary: str
    parse: Parser
    handle: Handler
    permission: Permission | None = None
    section: str = "Other"


@dataclass(frozen=True)
class Parsed:
    spec: CommandSpec
    value: Any  # what the spec's parser made of the words


_COMMANDS: dict[str, CommandSpec] = {}
_loaded = False
H = TypeVar("H", bound=Handler)


def no_arguments(text: str, args: list[Token]) -> None:
    if args:
        raise CommandError("this command takes nothing after it")


def command(
    name: str,
    *,
    usage: str,
    summary: str,
    parse: Parser = no_arguments,
    permission: Permission | None = None,
    section: str = "Other",
) -> Callable[[H], H]:
    """Register the decorated handler as `/beacon <name>`."""

    def register(handler: H) -> H:
        if name in _COMMANDS:
            raise ValueError(f"the command {name!r} is registered twice")
        _COMMANDS[name] = CommandSpec(name, usage, summary, parse, handler, permission, section)
        return handler

    return register


def unregister(name: str) -> None:
    del _COMMANDS[name]


def all_commands() -> list[CommandSpec]:
    """Every command, by section (in SECTIONS order, others last), then name."""
    _load_builtins()
    rank = {section: i for i, section in enumerate(SECTIONS)}
    return sorted(_COMMANDS.values(), key=lambda s: (rank.get(s.section, len(rank)), s.name))


def find_command(name: str) -> CommandSpec | None:
    _load_builtins()
    return _COMMANDS.get(name)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    import bot.commands as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")


def usage_lines(specs: list[CommandSpec] | None = None) -> str:
    return "\n".join(spec.usage for spec in specs or all_commands())


def parse(text: str) -> Parsed:
    """The command a line of text asks for; CommandError says what was wrong, with usage."""
    try:
        words = tokens(text)
    except CommandError as exc:
        raise CommandError(exc.message, usage_lines()) from None
    if not words:
        words = [Token("help", 0, 0)]
    spec, rest = _lookup(words)
    try:
        return Parsed(spec, spec.parse(text, rest))
    except CommandError as exc:
        raise CommandError(exc.message, exc.usage or spec.usage) from None


def _lookup(words: list[Token]) -> tuple[CommandSpec, list[Token]]:
    _load_builtins()
    first = words[0].word
    if len(words) >= 2 and (spec := _COMMANDS.get(f"{first} {words[1].word}")):
        return spec, words[2:]
    if spec := _COMMANDS.get(first):
        return spec, words[1:]
    family = [s for s in all_commands() if s.name.startswith(f"{first} ")]
    if family:
        choices = ", ".join(f"`{s.name}`" for s in family)
        raise CommandError(f"say which: {choices}", usage_lines(family))
    heads = sorted({name.split()[0] for name in _COMMANDS})
    close = difflib.get_close_matches(first, heads, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    raise CommandError(f"`{words[0].text}` is not a command.{hint}", usage_lines())


def execute(parsed: Parsed, context: Context, *, confirmed: bool = False) -> Reply:
    """Run a parsed command as context.user: the permission first, then the handler, which
    answers at once (slow work goes into a job)."""
    spec = parsed.spec
    if spec.permission is not None and (refusal := spec.permission(parsed.value, context.user)):
        raise CommandFailed(refusal)
    return spec.handle(parsed.value, replace(context, confirmed=confirmed))


def run_text(text: str, context: Context, *, confirmed: bool = False) -> Reply:
    """Parse and run; a mistake in the words is a CommandFailed too."""
    try:
        parsed = parse(text)
    except CommandError as exc:
        raise CommandFailed(str(exc)) from None
    return execute(parsed, context, confirmed=confirmed)
