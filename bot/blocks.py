"""Block Kit for Slack, made from a command's data (never by parsing its text): a renderer per
command (`@renders("campaign")`), and a plain one for any command without its own. Every value
strangers wrote (names, subjects, user agents) is escaped for mrkdwn. Pure."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bot.context import Reply

Block = dict[str, Any]
Renderer = Callable[[Reply], list[Block]]
MAX_ROWS = 40  # sections a list becomes at most; Slack takes 50 blocks a message
MAX_TEXT = 2900  # a section's text may hold 3,000 characters


def escape(text: object) -> str:
    """mrkdwn's three control characters; `<!channel>` from a stranger pings nobody."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": text[:150], "emoji": True}}


def section(mrkdwn: str, *, fields: list[str] | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn[:MAX_TEXT]}}
    if fields:
        block["fields"] = [{"type": "mrkdwn", "text": f[:2000]} for f in fields[:10]]
    return block


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


_RENDERERS: dict[str, Renderer] = {}


def renders(name: str) -> Callable[[Renderer], Renderer]:
    """Register the Block Kit renderer of the command `name`."""

    def register(renderer: Renderer) -> Renderer:
        _RENDERERS[name] = renderer
        return renderer

    return register


def blocks_for(name: str, reply: Reply) -> list[Block]:
    return _RENDERERS.get(name, plain)(reply)[:50]


def plain(reply: Reply) -> list[Block]:
    """Any command's data as blocks: its scalars as fields, each list as rows of sections."""
    scalars = [(k, v) for k, v in reply.data.items() if not isinstance(v, list | dict)]
    blocks: list[Block] = []
    if scalars:
        fields = [f"*{escape(_label(k))}*\n{escape(_value(v))}" for k, v in scalars]
        blocks.append(section(" ", fields=fields) if len(fields) > 1 else section(fields[0]))
    for key, value in reply.data.items():
        if isinstance(value, list):
            blocks.append(section(f"*{escape(_label(key))}* ({len(value)})"))
            blocks += [section(_row(item)) for item in value[:MAX_ROWS]]
            if len(value) > MAX_ROWS:
                blocks.append(context(f"… and {len(value) - MAX_ROWS} more"))
        elif isinstance(value, dict):
            pairs = [f"*{escape(_label(k))}*: {escape(_value(v))}" for k, v in value.items()]
            blocks.append(section(f"*{escape(_label(key))}*\n" + "\n".join(pairs)))
    return blocks or [section(escape(reply.text) or " ")]


def _label(key: str) -> str:
    return key.replace("_", " ").capitalize()


def _value(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _row(item: object) -> str:
    if isinstance(item, dict):
        return " · ".join(f"{escape(_label(k))}: {escape(_value(v))}" for k, v in item.items())
    return escape(json.dumps(item) if isinstance(item, list) else _value(item))
