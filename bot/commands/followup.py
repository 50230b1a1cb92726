"""`/beacon followup`: a template to exactly the people `nonopeners` lists, each in the thread
of the email they got."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.blocks import Block, renders
from bot.commands.nonopeners import Who, parse_who
from bot.commands.send import send_out_blocks
from bot.context import CommandFailed, Context, Reply, find_campaign, find_template
from bot.grammar import CommandError, Token, campaign_ref
from bot.permissions import check_send_size
from bot.registry import command
from bot.sendout import check_not_repeated, confirm_or_start, outline
from outreach.filter_sql import audience_select
from store.schema import endusers
from tracking.analytics import not_engaged
from tracking.instrument import TrackingFlags


@dataclass(frozen=True)
class FollowUp:
    campaign: str
    template: str
    who: Who = field(default_factory=Who)
    again: bool = False


def parse_followup(text: str, args: list[Token]) -> FollowUp:
    if len(args) < 3 or args[1].word != "with":
        raise CommandError("say which campaign and with which template")
    rest = args[3:]
    again = bool(rest) and rest[-1].word == "again"
    if again:
        rest = rest[:-1]
    if rest and rest[0].word not in ("to", "include"):
        raise CommandError(f"`{rest[0].text}`: say who, as `to not opened` (or clicked, replied)")
    return FollowUp(campaign_ref(args[0]), args[2].text, parse_who(rest, lead="to"), again)


@command(
    "followup",
    usage=(
        "/beacon followup <campaign> with <template> [to not opened|not clicked|not replied] "
        "[include machine] [again]"
    ),
    summary="Follow up, in each email's own thread, with exactly who `nonopeners` lists",
    parse=parse_followup,
    section="Sending",
)
def followup(command: FollowUp, context: Context) -> Reply:
    who = command.who
    with context.engine.connect() as connection:
        transaction = connection.begin()  # it may write: the campaign and its job
        campaign = find_campaign(connection, command.campaign, context.user)
        stored = find_template(connection, command.template)
        found = not_engaged(
            connection, campaign.id, who.outcome, include_machine=who.include_machine
        )
        if not found.endusers:
            raise CommandFailed(
                f"nobody to follow up: everyone who got campaign #{campaign.id} has "
                f"{who.outcome} it, replied, or cannot be told apart (`/beacon nonopeners "
                f"{campaign.id}` shows the list)"
            )
        order = {row.enduser_id: i for i, row in enumerate(found.endusers)}
        chosen = connection.execute(audience_select(endusers.c.id.in_(list(order)))).all()
        people = sorted(chosen, key=lambda row: order[row.id])
        check_send_size(context.user, len(people), context.admin_send_threshold)
        audience = f"follow-up of #{campaign.id}: not {who.outcome}" + (
            ", machines counted" if who.include_machine else ""
        )
        if not command.again:
            check_not_repeated(connection, context, stored.template.key, audience)
        template = stored.template
        send_out = outline(
            connection,
            context,
            stored,
            people,
            mode="individual",
            flags=TrackingFlags(template.track_opens, template.track_clicks),
            audience=audience,
            follow_up_of=campaign.id,
        )
        note = (
            f"{len(people)} of campaign #{campaign.id} ({campaign.name}) who have not "
            f"{who.outcome} it, each in their own thread"
        )
        reply = confirm_or_start(connection, context, send_out, note)
        if reply.job is not None:
            transaction.commit()
    return reply


@renders("followup")
def followup_blocks(reply: Reply) -> list[Block]:
    return send_out_blocks(reply, "Follow up with")
