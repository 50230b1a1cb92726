"""The Slack bot as config sets it up: on once a bot token and a signing secret are set."""

from __future__ import annotations

from dataclasses import replace

from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.slack_app import SlackBot, SlackBotSettings
from bot.slack_reports import SlackReports
from mailbeacon.context import command_context
from mailbeacon.settings import Settings


def slack_state(settings: Settings) -> str:
    """What `serve` says about Slack at start, once."""
    slack = settings.slack
    if not slack.bot_token:
        return "Slack is off: no Slack tokens are configured (slack.bot_token)"
    if not slack.signing_secret:
        return (
            "Slack is on for alerts by direct message; set slack.signing_secret for "
            f"{slack.command} to work"
        )
    return f"Slack is on: {slack.command} at /slack/events, and alerts by direct message"


def slack_bot(settings: Settings, engine: Engine) -> SlackBot | None:
    slack = settings.slack
    if not (slack.bot_token and slack.signing_secret):
        return None
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    return SlackBot(
        engine,
        client,
        SlackBotSettings(slack.signing_secret, slack.command, settings.internal_domains),
        lambda user, reply_to: replace(command_context(settings, engine, user), reply_to=reply_to),
    )


def slack_routes(bot: SlackBot) -> list[Route]:
    handler = AsyncSlackRequestHandler(bot.app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return [Route("/slack/events", events, methods=["POST"])]


def slack_reports(settings: Settings) -> SlackReports | None:
    if not settings.slack.bot_token:
        return None
    return SlackReports(WebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url))
