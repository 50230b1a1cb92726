"""Running the notifier's commands: `/beacon alerts …` and `/beacon digest …`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select, update

from bot.commands import AlertsAdd, AlertsQuiet, AlertsRemove, Digest
from bot.context import CommandFailed, Context, Reply, find_campaign, find_template
from bot.permissions import check_campaign_access
from notifier.channels import ChannelError, EmailChannel, Recipient
from notifier.digests import compose, gather, set_digest, zone
from notifier.subscriptions import (
    NewRule,
    add_subscription,
    in_words,
    list_subscriptions,
    remove_subscription,
)
from store.clock import utcnow
from store.schema import companies, users


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
            campaign = find_campaign(connection, command.campaign, context.user)
            check_campaign_access(context.user, campaign.sender_user_id)
            rule = replace(rule, campaign_id=campaign.id)
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
    text = f"Alert {in_words(added)}."
    if command.channel == "desktop":
        page = (
            f"{context.tracking.base_url}/alerts?token={context.signer.feed_token(context.user.id)}"
        )
        text += f"\nOpen {page} and keep it open: alerts appear there as desktop notifications."
    return Reply(text, {"alert": rule_id})


def alerts_list(context: Context) -> Reply:
    with context.engine.connect() as connection:
        rules = list_subscriptions(connection, context.user.id)
    if not rules:
        return Reply(
            "You have no alerts: add one with `/beacon alerts add on open via email`.",
            {"alerts": []},
        )
    return Reply(
        "\n".join(in_words(rule) for rule in rules), {"alerts": [rule.id for rule in rules]}
    )


def alerts_remove(command: AlertsRemove, context: Context) -> Reply:
    with context.engine.begin() as connection:
        if not remove_subscription(connection, context.user.id, command.id):
            raise CommandFailed(
                f"you have no alert #{command.id}: `/beacon alerts list` lists yours"
            )
    return Reply(f"Alert #{command.id} removed.", {"removed": command.id})


def digest(command: Digest, context: Context) -> Reply:
    user = context.user
    if command.action == "now":
        now = utcnow()
        yesterday = now.astimezone(zone(user.timezone)).date() - timedelta(days=1)
        with context.engine.connect() as connection:
            digest = compose(gather(connection, user.id, yesterday, user.timezone))
        channel = EmailChannel(lambda recipient: context.mailbox_for(user))
        try:
            key = f"digest.{user.id}.now.{now:%Y%m%dT%H%M%S%f}"
            channel.send(Recipient(user.id, user.email, user.name), digest, key)
        except ChannelError as exc:
            raise CommandFailed(f"the digest could not be sent: {exc}") from None
        return Reply(
            f"Sent to {user.email}:\n{digest.title}\n{digest.details}",
            {"title": digest.title, "details": digest.details},
        )
    with context.engine.begin() as connection:
        row = set_digest(connection, user.id, enabled=command.action == "on", at=command.at)
    if row.enabled:
        return Reply(
            f"Your daily digest comes by email at {row.at_time} ({user.timezone} time), with "
            "what your emails did the day before.",
            {"enabled": True, "at": row.at_time},
        )
    return Reply(
        "Your daily digest is off: `/beacon digest on` turns it back on.", {"enabled": False}
    )


def alerts_quiet(command: AlertsQuiet, context: Context) -> Reply:
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
