"""`/beacon send`: a template to an audience, previewed, then sent by a job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.blocks import (
    MAX_TEXT,
    Block,
    escape,
    fields_section,
    header,
    quote,
    renders,
    section,
    text_sections,
)
from bot.blocks import context as note
from bot.context import CommandFailed, Context, Reply, find_campaign, find_template
from bot.grammar import CommandError, Token
from bot.permissions import check_send_size
from bot.registry import command
from bot.sendout import check_not_repeated, confirm_or_start, outline
from outreach.audience import resolve_audience
from outreach.filters import AudienceError
from tracking.cohorts import parse_cohort
from tracking.instrument import TrackingFlags

Mode = Literal["individual", "group"]
USAGE = (
    "/beacon send <template> to <audience> [as individual|group] "
    "[track opens,clicks|opens|clicks|none] [again]"
)


@dataclass(frozen=True)
class Send:
    template: str
    audience: str
    mode: Mode = "individual"
    track_opens: bool | None = None  # None: the template's default
    track_clicks: bool | None = None
    again: bool = False  # the same send-out once more, on purpose


def parse_send(text: str, args: list[Token]) -> Send:
    if len(args) < 3 or args[1].word != "to":
        raise CommandError("say which template and to whom")
    rest = args[2:]
    again = len(rest) >= 2 and rest[-1].word == "again"
    if again:
        rest = rest[:-1]
    mode: Mode = "individual"
    opens: bool | None = None
    clicks: bool | None = None
    # Options come at the end; peel them off so the audience is everything in between.
    while len(rest) >= 3 and rest[-2].word in ("as", "track"):
        keyword, value = rest[-2].word, rest[-1].word
        if keyword == "as":
            if value not in ("individual", "group"):
                raise CommandError(f"`as {rest[-1].text}`: send as `individual` or `group`")
            mode = "individual" if value == "individual" else "group"
        else:
            opens, clicks = _tracking(rest[-1].text)
        rest = rest[:-2]
    if rest[-1].word in ("as", "track"):
        raise CommandError(f"`{rest[-1].text}` needs a value after it")
    audience = text[rest[0].start : rest[-1].end]
    return Send(args[0].text, audience, mode, opens, clicks, again)


def _tracking(value: str) -> tuple[bool, bool]:
    parts = {part.strip().lower() for part in value.split(",")}
    if parts == {"none"}:
        return False, False
    if not parts or not parts <= {"opens", "clicks"}:
        raise CommandError(f"`track {value}`: track `opens,clicks`, `opens`, `clicks` or `none`")
    return "opens" in parts, "clicks" in parts


@command(
    "send",
    usage=USAGE,
    summary="Send a template to addresses, a filter or a cohort: a preview first, then a button",
    parse=parse_send,
    section="Sending",
)
def send(command: Send, context: Context) -> Reply:
    # One transaction: the audience (new endusers included), the planned campaign and its job
    # are committed together, or, for the preview and on any error, not at all.
    with context.engine.connect() as connection:
        transaction = connection.begin()  # it may write: new endusers, the campaign, its job
        stored = find_template(connection, command.template)
        try:
            audience = resolve_audience(connection, command.audience, now=context.clock())
        except AudienceError as exc:
            raise CommandFailed(f"in the audience:\n{exc.pretty(command.audience)}") from None
        cohort = parse_cohort(command.audience)
        if cohort is not None and cohort.campaign_id is not None:
            find_campaign(connection, str(cohort.campaign_id), context.user)
        if not audience.endusers:
            raise CommandFailed(f"nobody matches `{command.audience}`: {audience.summary()}")
        check_send_size(context.user, len(audience.endusers), context.admin_send_threshold)
        if not command.again:
            check_not_repeated(connection, context, stored.template.key, command.audience)
        template = stored.template
        flags = TrackingFlags(
            opens=template.track_opens if command.track_opens is None else command.track_opens,
            clicks=template.track_clicks if command.track_clicks is None else command.track_clicks,
        )
        send_out = outline(
            connection,
            context,
            stored,
            audience.endusers,
            mode=command.mode,
            flags=flags,
            audience=command.audience,
        )
        reply = confirm_or_start(connection, context, send_out, audience.summary())
        if reply.job is not None:
            transaction.commit()
    return reply


@renders("send")
def send_blocks(reply: Reply) -> list[Block]:
    return send_out_blocks(reply, "Send")


def send_out_blocks(reply: Reply, asking: str) -> list[Block]:
    """A send-out's preview (of `send` or `followup`), or once confirmed, its campaign on the
    way. At most 47 blocks: slack_app adds the Send and Cancel buttons after them."""
    d = reply.data
    n = d["emails"]
    emails = f"{n} {'email' if n == 1 else 'emails'}"
    if "campaign" in d:
        job = f" as job #{reply.job}" if reply.job is not None else ""
        return [
            header(f"Campaign #{d['campaign']} ({escape(d['template'])})"),
            section(f"{emails} ({escape(d['mode'])}) on the way{job}."),
            note(escape(d["audience"])),
        ]
    tracked = " and ".join(k for k in ("opens", "clicks") if d[f"track_{k}"]) or "nothing"
    blocks = [
        header(f"{asking} {escape(d['template'])} (v{d['version']})?"),
        *fields_section(
            ("Emails", n),
            ("As", d["mode"]),
            ("Tracking", f"{tracked} (replies always)"),
            ("First email to" if d["mode"] == "individual" else "First in To:", d["first"]),
        ),
        note(escape(d["audience"])),
        *_recipients(d["recipients"]),
    ]
    if "first_text" in d:  # the first email, rendered, when the preview's data carries it
        blocks.append(section(f"*Subject:* {escape(d['first_subject'])}"))
        blocks += text_sections(quote(d["first_text"]))[:10]
    return blocks


def _recipients(addresses: list[str]) -> list[Block]:
    """As many addresses as one section holds, then how many more there are."""
    listed: list[str] = []
    size = len("*To:* ")
    for address in addresses:
        size += len(escape(address)) + 2
        if size > MAX_TEXT:
            break
        listed.append(escape(address))
    blocks = [section("*To:* " + ", ".join(listed))]
    if len(listed) < len(addresses):
        blocks.append(note(f"… and {len(addresses) - len(listed)} more"))
    return blocks
