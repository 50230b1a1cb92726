"""`/beacon alerts add|list|remove|quiet`: the rules that tell a user the moment something
happens, and their quiet hours."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, update

from bot.blocks import Block, escape, header, renders, rows, section
from bot.blocks import context as note
from bot.context import CommandFailed, Context, Reply, find_campaign, find_template
from bot.grammar import CommandError, Token, unquoted
from bot.permissions import admin_when
from bot.registry import command
from notifier.desktop import feed_link
from notifier.quiet import is_quiet_range
from notifier.subscriptions import (
    NewRule,
    add_subscription,
    in_words,
    list_subscriptions,
    remove_subscription,
)
from store.schema import companies, users

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


_FLAGS = {
    ("first", "only"): "first_only",
    ("from", "everyone"): "everyone",
    ("include", "machine"): "include_machine",
}


def parse_add(text: str, args: list[Token]) -> AlertsAdd:
    if len(args) < 2 or args[0].word != "on" or args[1].word not in ALERT_EVENTS:
        raise CommandError(f"say which event: `on {'|'.join(ALERT_EVENTS)}`")
    if len(args) < 4 or args[-2].word != "via" or args[-1].word not in ALERT_CHANNELS:
        raise CommandError(f"say where the alert goes, last: `via {'|'.join(ALERT_CHANNELS)}`")
    chosen: set[str] = set()
    narrowed: dict[str, str] = {}
    rest = args[2:-2]
    while rest:
        head, value = rest[0], rest[1] if len(rest) >= 2 else None
        if value is not None and (head.word, value.word) in _FLAGS:
            chosen.add(_FLAGS[head.word, value.word])
        elif head.word in ("template", "campaign", "company"):
            if value is None:
                raise CommandError(f"`{head.text}` needs a value after it")
            narrowed[head.word] = unquoted(value.text)
        else:
            raise CommandError(f"`{head.text}` is not an alert option")
        rest = rest[2:]
    return AlertsAdd(
        args[1].word,
        args[-1].word,
        template=narrowed.get("template"),
        campaign=narrowed.get("campaign"),
        company=narrowed.get("company"),
        first_only="first_only" in chosen,
        everyone="everyone" in chosen,
        include_machine="include_machine" in chosen,
    )


@command(
    "alerts add",
    usage=(
        "/beacon alerts add on open|click|reply|bounce [first only] [template <k>] "
        "[campaign <id>] [company <name>] [from everyone] [include machine] "
        "via slack|email|desktop"
    ),
    summary="Be told the moment someone opens, clicks, replies or bounces",
    parse=parse_add,
    permission=admin_when(
        lambda add: add.everyone,
        "only an admin may hear about everyone's emails: leave out `from everyone` to hear "
        "about your own",
    ),
    section="Alerts",
)
def alerts_add(command: AlertsAdd, context: Context) -> Reply:
    if command.channel not in context.alert_channels:
        usable = " or ".join(f"`via {name}`" for name in sorted(context.alert_channels))
        raise CommandFailed(
            f"this server cannot send alerts via {command.channel} yet: use {usable}"
        )
    with context.engine.begin() as connection:
        rule = NewRule(
            command.event,
            command.channel,
            everyone=command.everyone,
            include_machine=command.include_machine,
            first_only=command.first_only,
        )
        if command.template is not None:
            rule = replace(
                rule, template_key=find_template(connection, command.template).template.key
            )
        if command.campaign is not None:
            rule = replace(
                rule, campaign_id=find_campaign(connection, command.campaign, context.user).id
            )
        if command.company is not None:
            company_id = connection.scalar(
                select(companies.c.id).where(
                    func.lower(companies.c.name) == command.company.lower()
                )
            )
            if company_id is None:
                raise CommandFailed(
                    f"there is no company named {command.company!r}: check the spelling, "
                    "and put a name with spaces in quotes"
                )
            rule = replace(rule, company_id=company_id)
        rule_id = add_subscription(connection, context.user.id, rule)
        [added] = [r for r in list_subscriptions(connection, context.user.id) if r.id == rule_id]
        data: dict[str, Any] = {"alert": rule_id, "words": in_words(added)}
        if command.channel == "desktop":
            data["page"] = feed_link(
                connection, context.signer, context.tracking.base_url, context.user.id
            )
    text = f"Alert {in_words(added)}."
    if "page" in data:
        text += (
            f"\nOpen {data['page']} and keep it open: alerts appear there as desktop notifications."
        )
    return Reply(text, data)


@renders("alerts add")
def alerts_add_blocks(reply: Reply) -> list[Block]:
    blocks = [section(f"Alert {escape(reply.data['words'])}.")]
    if "page" in reply.data:
        blocks.append(
            section(
                f"<{reply.data['page']}|Open your alerts page> and keep it open: alerts appear "
                "there as desktop notifications."
            )
        )
    return blocks


@command(
    "alerts list",
    usage="/beacon alerts list",
    summary="Your alert rules, in words",
    section="Alerts",
)
def alerts_list(_: None, context: Context) -> Reply:
    with context.engine.connect() as connection:
        rules = list_subscriptions(connection, context.user.id)
    if not rules:
        return Reply(
            "You have no alerts: add one with `/beacon alerts add on open via email`.",
            {"alerts": []},
        )
    return Reply(
        "\n".join(in_words(rule) for rule in rules),
        {"alerts": [{"id": rule.id, "words": in_words(rule)} for rule in rules]},
    )


@renders("alerts list")
def alerts_list_blocks(reply: Reply) -> list[Block]:
    rules = reply.data["alerts"]
    if not rules:
        return [section("You have no alerts: add one with `/beacon alerts add on open via email`.")]
    return [
        header("Your alerts"),
        *rows(rules, lambda rule: escape(rule["words"])),
        note("`/beacon alerts remove &lt;number&gt;` removes one."),
    ]


def parse_remove(text: str, args: list[Token]) -> int:
    if len(args) == 1 and args[0].text.lstrip("#").isdigit():
        return int(args[0].text.lstrip("#"))
    raise CommandError("say which alert to remove, by its number: `alerts remove 3`")


@command(
    "alerts remove",
    usage="/beacon alerts remove <id>",
    summary="Remove one of your alert rules",
    parse=parse_remove,
    section="Alerts",
)
def alerts_remove(rule_id: int, context: Context) -> Reply:
    with context.engine.begin() as connection:
        if not remove_subscription(connection, context.user.id, rule_id):
            raise CommandFailed(f"you have no alert #{rule_id}: `/beacon alerts list` lists yours")
    return Reply(f"Alert #{rule_id} removed.", {"removed": rule_id})


@renders("alerts remove")
def alerts_remove_blocks(reply: Reply) -> list[Block]:
    return [section(f"Alert #{reply.data['removed']} removed.")]


@dataclass(frozen=True)
class Quiet:
    hours: str | None  # "22:00-07:00" in the user's time zone; None: never quiet


def parse_quiet(text: str, args: list[Token]) -> Quiet:
    if len(args) == 1 and args[0].word == "off":
        return Quiet(None)
    if len(args) == 1 and is_quiet_range(args[0].text):
        return Quiet(args[0].text)
    shown = " ".join(arg.text for arg in args) or "nothing"
    raise CommandError(
        f"`{shown}` is not a range of times: say `alerts quiet 22:00-07:00` (your own time "
        "zone) or `alerts quiet off`"
    )


@command(
    "alerts quiet",
    usage="/beacon alerts quiet <22:00-07:00>|off",
    summary="Hours in which your alerts wait until the quiet ends",
    parse=parse_quiet,
    section="Alerts",
)
def alerts_quiet(command: Quiet, context: Context) -> Reply:
    user = context.user
    with context.engine.begin() as connection:
        connection.execute(
            update(users).where(users.c.id == user.id).values(quiet_hours=command.hours)
        )
    if command.hours is None:
        return Reply("No quiet hours: alerts come whenever they happen.", {"quiet_hours": None})
    until = command.hours.split("-")[1]
    return Reply(
        f"Quiet hours {command.hours} ({user.timezone} time): alerts that come then wait "
        f"until {until}.",
        {"quiet_hours": command.hours},
    )


@renders("alerts quiet")
def alerts_quiet_blocks(reply: Reply) -> list[Block]:
    hours = reply.data["quiet_hours"]
    if hours is None:
        return [section("No quiet hours: alerts come whenever they happen.")]
    until = escape(hours.split("-")[1])
    return [
        section(
            f"Quiet hours *{escape(hours)}* (your time zone): alerts that come then wait "
            f"until {until}."
        )
    ]
