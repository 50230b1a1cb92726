"""The channels this server sends alerts and digests through, as config sets them up."""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy import Engine

from mailbeacon.mailboxes import user_mailboxes
from mailbeacon.settings import Settings
from notifier.channels import Channel, EmailChannel
from notifier.slack import SlackChannel


def email_channel(settings: Settings, engine: Engine) -> EmailChannel:
    """From each user's own mailbox to themselves."""
    mailbox_of = user_mailboxes(settings, engine)
    return EmailChannel(lambda recipient: mailbox_of(recipient.user_id, recipient.email))


def alert_channels(settings: Settings, engine: Engine) -> dict[str, Channel]:
    """Email always; Slack when a bot token is configured."""
    channels: dict[str, Channel] = {"email": email_channel(settings, engine)}
    if settings.slack.bot_token:
        client = WebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url)
        channels["slack"] = SlackChannel(client)
    return channels
