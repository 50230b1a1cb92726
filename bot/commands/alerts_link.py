"""`/beacon alerts link [new]`: the user's desktop alerts page, and a new link that revokes the
old one (when it was shared or leaked)."""

from __future__ import annotations

from bot.blocks import Block, escape, renders, section
from bot.blocks import context as note
from bot.context import Context, Reply
from bot.grammar import CommandError, Token
from bot.registry import command
from notifier.desktop import feed_link


def parse_link(text: str, args: list[Token]) -> bool:
    """True: make a new link."""
    if not args:
        return False
    if len(args) == 1 and args[0].word == "new":
        return True
    raise CommandError("say `alerts link` for your link, or `alerts link new` for a new one")


@command(
    "alerts link",
    usage="/beacon alerts link [new]",
    summary="Your desktop alerts page; `new` makes a new link, and the old one stops working",
    parse=parse_link,
    section="Alerts",
)
def alerts_link(new: bool, context: Context) -> Reply:
    with context.engine.begin() as connection:
        page = feed_link(
            connection, context.signer, context.tracking.base_url, context.user.id, new=new
        )
    text = f"Your alerts page: {page}\nOpen it and keep it open: alerts appear there."
    if new:
        text += "\nYour older links no longer work."
    return Reply(text, {"page": page, "new": new})


@renders("alerts link")
def alerts_link_blocks(reply: Reply) -> list[Block]:
    blocks = [
        section(
            f"<{escape(reply.data['page'])}|Open your alerts page> and keep it open: alerts "
            "appear there as desktop notifications."
        )
    ]
    if reply.data["new"]:
        blocks.append(note("Your older links no longer work."))
    return blocks
