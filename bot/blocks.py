"""Block Kit for Slack, made from a command's data (never by parsing its text): a renderer per
command (`@renders("campaign")`, next to its handler), and a plain one for any command without
its own. Every value strangers wrote (names, subjects, user agents) is escaped for mrkdwn. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bot.context import Reply

Block = dict[str, Any]
Renderer = Callable[[Reply], list[Block]]
T = TypeVar("T")
MAX_BLOCKS = 50  # what Slack takes in one message
MAX_ROWS = 40  # sections a table becomes at most, leaving room for what goes around it
MAX_TEXT = 2900  # a section's text may hold 3,000 characters
FOLLOW_UP = "follow_up"  # the action of the "Follow up…" button


def escape(text: object) -> str:
    """mrkdwn's three control characters; `<!channel>` from a stranger pings nobody."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shown(value: object) -> str:
    """A figure as people read it: n/a for what nobody knows, yes or no for a flag."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def rate(value: float | None) -> str:
    """A rate in percent; n/a when no email had that tracking on."""
    return "n/a" if value is None else f"{value:g}%"


def when(iso: str) -> str:
    """A stored time (ISO 8601, UTC), to the minute."""
    return f"{iso[:16].replace('T', ' ')} UTC"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def section(mrkdwn: str, *, fields: list[str] | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn[:MAX_TEXT]}}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": f[:2000]} for f in fields[:10]]
    return block


def fields_section(*pairs: tuple[str, object]) -> list[Block]:
    """Figures side by side, each `label` over its value (escaped), ten to a section."""
    texts = [
        {"type": "mrkdwn", "text": f"*{label}*\n{escape(shown(v))}"[:2000]} for label, v in pairs
    ]
    return [{"type": "section", "fields": texts[i : i + 10]} for i in range(0, len(texts), 10)]


def text_sections(mrkdwn: str) -> list[Block]:
    """Text longer than one section holds, as sections split between its lines."""
    chunks: list[list[str]] = [[]]
    size = 0
    for line in mrkdwn.split("\n"):
        for start in range(0, max(len(line), 1), MAX_TEXT):
            piece = line[start : start + MAX_TEXT]
            if chunks[-1] and size + 1 + len(piece) > MAX_TEXT:
                chunks.append([])
            size = len(piece) if not chunks[-1] else size + 1 + len(piece)
            chunks[-1].append(piece)
    return [section("\n".join(chunk).strip("\n") or " ") for chunk in chunks]


def rows(items: Sequence[T], row: Callable[[T], str], *, total: int | None = None) -> list[Block]:
    """A table as Slack shows one: a section per row, up to MAX_ROWS, then how many more there
    are (of `total`, when the data holds only the first of them)."""
    blocks = [section(row(item)) for item in items[:MAX_ROWS]]
    more = (len(items) if total is None else total) - len(blocks)
    if more > 0:
        blocks.append(context(f"… and {more} more"))
    return blocks


def quote(text: str) -> str:
    """An email's text (escaped) as a mrkdwn quote, line by line."""
    return "\n".join(f">{line}" for line in escape(text).split("\n"))


def person(row: dict[str, Any]) -> str:
    """An enduser of a command's data on one line: name, address, company; all of them
    strangers' words."""
    name, email, company = row["name"], row["email"], row["company"]
    line = f"*{escape(name)}* {escape(email)}" if name else escape(email)
    return f"{line} · {escape(company)}" if company else line


def context(*lines: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": line} for line in lines]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> Block:
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def actions(*elements: Block) -> Block:
    return {"type": "actions", "elements": list(elements)}


def follow_up_button(campaign: int, outcome: str, include_machine: bool) -> Block:
    """Opens the follow-up modal for a campaign's endusers who have not had `outcome`."""
    value = {"campaign": campaign, "outcome": outcome, "include_machine": include_machine}
    return actions(button("Follow up…", FOLLOW_UP, json.dumps(value)))


_RENDERERS: dict[str, Renderer] = {}


def renders(name: str) -> Callable[[Renderer], Renderer]:
    """Register the Block Kit renderer of the command `name`."""

    def register(renderer: Renderer) -> Renderer:
        _RENDERERS[name] = renderer
        return renderer

    return register


def renderer_for(name: str) -> Renderer | None:
    return _RENDERERS.get(name)


def blocks_for(name: str, reply: Reply) -> list[Block]:
    return _RENDERERS.get(name, plain)(reply)[:MAX_BLOCKS]


def plain(reply: Reply) -> list[Block]:
    """Any command's data as blocks: its scalars as fields, each list as rows of sections."""
    scalars = [(_label(k), v) for k, v in reply.data.items() if not isinstance(v, list | dict)]
    blocks = fields_section(*scalars)
    for key, value in reply.data.items():
        if isinstance(value, list):
            blocks.append(section(f"*{escape(_label(key))}* ({len(value)})"))
            blocks += rows(value, _row)
        elif isinstance(value, dict):
            pairs = [f"*{escape(_label(k))}*: {escape(shown(v))}" for k, v in value.items()]
            blocks.append(section(f"*{escape(_label(key))}*\n" + "\n".join(pairs)))
    return blocks or [section(escape(reply.text) or " ")]


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _row(item: object) -> str:
    if isinstance(item, dict):
        return " · ".join(f"{escape(_label(k))}: {escape(shown(v))}" for k, v in item.items())
    return escape(json.dumps(item) if isinstance(item, list) else shown(item))
