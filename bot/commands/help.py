"""`/beacon help`: every command, or one, as the registry has them."""

from __future__ import annotations

from bot.blocks import Block, escape, header, renders, text_sections
from bot.context import CommandFailed, Context, Reply
from bot.grammar import Token
from bot.registry import all_commands, command


def parse_help(text: str, args: list[Token]) -> str | None:
    return " ".join(arg.word for arg in args) or None


@command(
    "help",
    usage="/beacon help [<command>]",
    summary="What each command does, or how to use one",
    parse=parse_help,
    section="You",
)
def help_command(topic: str | None, context: Context) -> Reply:
    specs = [s for s in all_commands() if topic is None or s.name.split()[0] == topic.split()[0]]
    if not specs:
        raise CommandFailed(f"there is no command `{topic}`: `/beacon help` lists them all")
    lines: list[str] = []
    section = ""
    for spec in specs:
        if topic is None and spec.section != section:
            section = spec.section
            lines.append(f"{'' if not lines else chr(10)}*{section}*")
        lines.append(f"{spec.usage}\n    {spec.summary}")
    data = [
        {"name": s.name, "usage": s.usage, "summary": s.summary, "section": s.section}
        for s in specs
    ]
    return Reply("\n".join(lines), {"commands": data})


@renders("help")
def help_blocks(reply: Reply) -> list[Block]:
    groups: dict[str, list[str]] = {}
    for spec in reply.data["commands"]:
        line = f"`{escape(spec['usage'])}`\n{escape(spec['summary'])}"
        groups.setdefault(spec["section"], []).append(line)
    blocks = [header("mailbeacon commands")]
    for name, lines in groups.items():
        blocks += text_sections(f"*{escape(name)}*\n" + "\n".join(lines))
    return blocks
