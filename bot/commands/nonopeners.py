"""`/beacon nonopeners`: who has not opened, clicked or replied to a campaign; the list that
`followup` sends to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.blocks import Block, follow_up_button, header, person, renders, rows, section
from bot.blocks import context as note
from bot.context import Context, Reply, find_campaign
from bot.grammar import CommandError, Token, campaign_ref, strip_flag, words
from bot.registry import command
from tracking.analytics import not_engaged

Outcome = Literal["opened", "clicked", "replied"]
OUTCOMES: dict[str, Outcome] = {"opened": "opened", "clicked": "clicked", "replied": "replied"}
CHOICE = "`not opened`, `not clicked` or `not replied`"


@dataclass(frozen=True)
class Who:
    """Which of a campaign's endusers: those who have not had `outcome`."""

    outcome: Outcome = "opened"
    include_machine: bool = False


def parse_who(args: list[Token], lead: str = "") -> Who:
    """`[lead] not opened|not clicked|not replied [include machine]`, all optional."""
    args, include_machine = strip_flag(args, "include", "machine")
    said = words(args)
    if lead and said[:1] == [lead]:
        said = said[1:]
    if not said:
        return Who("opened", include_machine)
    if len(said) == 2 and said[0] == "not" and said[1] in OUTCOMES:
        return Who(OUTCOMES[said[1]], include_machine)
    raise CommandError(f"`{' '.join(said)}`: ask for {CHOICE}")


@dataclass(frozen=True)
class NonOpeners:
    campaign: str  # an id (12 or #12) or a campaign's name
    who: Who = Who()


def parse_nonopeners(text: str, args: list[Token]) -> NonOpeners:
    if not args:
        raise CommandError("say which campaign (its number or name)")
    return NonOpeners(campaign_ref(args[0]), parse_who(args[1:]))


def counting(who: Who) -> str:
    if who.outcome == "replied":
        return ""
    if who.include_machine:
        return ": machine opens and clicks count too"
    return ": machine opens and clicks do not count; add `include machine` to count them"


@command(
    "nonopeners",
    usage="/beacon nonopeners <campaign> [not opened|not clicked|not replied] [include machine]",
    summary="Who has not opened (or clicked, or replied to) a campaign's emails",
    parse=parse_nonopeners,
    section="Engagement",
)
def nonopeners(command: NonOpeners, context: Context) -> Reply:
    who = command.who
    with context.engine.connect() as connection:
        campaign = find_campaign(connection, command.campaign, context.user)
        found = not_engaged(
            connection, campaign.id, who.outcome, include_machine=who.include_machine
        )
    people = [
        {
            "email_id": r.email_id,
            "enduser_id": r.enduser_id,
            "email": r.email,
            "name": r.name,
            "company": r.company,
        }
        for r in found.endusers
    ]
    n = len(people)
    title = (
        f"{n} {'enduser has' if n == 1 else 'endusers have'} not {who.outcome} campaign "
        f"#{campaign.id} ({campaign.name}){counting(who)}."
    )
    lines = [title]
    for r in found.endusers:
        about = ", ".join(x for x in (r.name, r.company) if x)
        lines.append(f"- {r.email}" + (f" ({about})" if about else ""))
    if found.untracked:
        u = found.untracked
        lines.append(
            f"{u} {'email was' if u == 1 else 'emails were'} sent without that tracking: "
            "nobody can tell."
        )
    data = {
        "campaign": campaign.id,
        "outcome": who.outcome,
        "endusers": people,
        "untracked": found.untracked,
        "include_machine": who.include_machine,
    }
    return Reply("\n".join(lines), data)


@renders("nonopeners")
def nonopeners_blocks(reply: Reply) -> list[Block]:
    d = reply.data
    people, outcome, u = d["endusers"], d["outcome"], d["untracked"]
    n = len(people)
    counts = counting(Who(outcome, d["include_machine"])).removeprefix(": ")
    notes = [counts[:1].upper() + counts[1:]] if counts else []
    if u:
        notes.append(
            f"{u} {'email was' if u == 1 else 'emails were'} sent without that tracking: "
            "nobody can tell."
        )
    blocks = [
        header(f"Campaign #{d['campaign']}: not {outcome}"),
        section(f"*{n}* {'enduser has' if n == 1 else 'endusers have'} not {outcome} it."),
        *rows(people, person),
    ]
    if notes:
        blocks.append(note(*notes))
    if people:
        blocks.append(follow_up_button(d["campaign"], outcome, d["include_machine"]))
    return blocks
