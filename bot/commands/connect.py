"""`/beacon connect gmail|outlook [for <address>]`: a sign-in link that connects my own mailbox
(an admin: another address, such as a shared support@ mailbox)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.blocks import Block, context, escape, renders, section
from bot.context import CommandFailed, Context, Reply
from bot.grammar import CommandError, Token, unquoted, words
from bot.permissions import admin_when
from bot.registry import command
from outreach.oauth import (
    NAMES,
    PROVIDERS,
    SIGN_IN_TTL,
    OAuthError,
    check_configured,
    create_sign_in,
    sign_in_link,
)

ONCE = "It works once, in one browser (the first that opens it), for 10 minutes."


@dataclass(frozen=True)
class Connect:
    provider: str
    address: str | None = None  # a mailbox other than the asker's own address


def parse_connect(text: str, args: list[Token]) -> Connect:
    said = words(args)
    if len(said) == 1 and said[0] in PROVIDERS:
        return Connect(said[0])
    if len(said) == 3 and said[0] in PROVIDERS and said[1] == "for":
        address = unquoted(args[2].text).strip().lower()
        if "@" not in address:
            raise CommandError(f"`{args[2].text}` is not an email address")
        return Connect(said[0], address)
    raise CommandError("say `connect gmail` or `connect outlook` (an admin: `… for <address>`)")


@command(
    "connect",
    usage="/beacon connect gmail|outlook [for <address>]",
    summary="A sign-in link that connects your own mailbox to send from (an admin: another "
    "address)",
    parse=parse_connect,
    permission=admin_when(
        lambda connect: connect.address is not None,
        "only an admin may connect a mailbox whose address is not yours: try "
        "`/beacon connect gmail|outlook`",
    ),
    section="You",
)
def connect(command: Connect, context: Context) -> Reply:
    # The link is as good as a password for 10 minutes: only the asker may see it. In Slack,
    # every answer is ephemeral (bot.slack_app), and `mailbeacon cmd` prints to the asker.
    try:
        check_configured(context.oauth, command.provider)
    except OAuthError as exc:
        raise CommandFailed(str(exc)) from None
    address = command.address or context.user.email
    now = context.clock()
    with context.engine.begin() as connection:
        sign_in = create_sign_in(connection, context.user.id, command.provider, address, now)
    link = sign_in_link(context.tracking.base_url, sign_in)
    name = NAMES[command.provider]
    data = {
        "provider": command.provider,
        "address": address,
        "link": link,
        "expires_at": (now + SIGN_IN_TTL).isoformat(),
    }
    return Reply(f"Open this link and sign in to {name} as {address}. {ONCE}\n{link}", data)


@renders("connect")
def connect_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    name = NAMES[d["provider"]]
    return [
        section(f"<{escape(d['link'])}|Sign in to {name}> as *{escape(d['address'])}*."),
        context(f"{ONCE} Only you can see this message."),
    ]
