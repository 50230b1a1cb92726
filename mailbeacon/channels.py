"""The channels this server sends alerts and digests through, as config sets them up."""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy import Engine

from mailbeacon.mailboxes import user_mailboxes
from mailbeacon.settings import Settings
from notifier.channels import Channel, EmailChannel
from notifier.slack import SlackChannel


def channel_names(settings: Settings) -> frozenset[str]:
    """What `/beacon alerts add … via` takes on this server. Desktop alerts are read by the
    user's open /alerts pages (notifier/desktop.py), not sent by the worker."""
    return frozenset({"email", "desktop", *(["slack"] if settings.slack.bot_token else [])})


def alert_channels(settings: Settings, engine: Engine) -> dict[str, Channel]:
    """The channels the worker sends through: email always (from each user's own mailbox to
    themselves), Slack when a bot token is set."""
    mailbox_of = user_mailboxes(settings, engine)
    email = EmailChannel(lambda recipient: mailbox_of(recipient.user_id, recipient.email))
    channels: dict[str, Channel] = {"email": email}
    if settings.slack.bot_token:
        client = WebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url)
        channels["slack"] = SlackChannel(client)
    return channels
