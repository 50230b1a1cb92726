"""The Slack bot as config sets it up: on once a bot token and a way in are set, a signing
secret (requests to /slack/events) or an app token (Socket Mode, no public URL needed)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot import slack_charts  # noqa: F401  (registers the stats chart)
from bot.slack_app import SlackBot, SlackBotSettings
from bot.slack_reports import SlackReports
from mailbeacon.context import command_context
from mailbeacon.settings import Settings

log = logging.getLogger(__name__)
# Shutdown waits this long for Slack to answer the socket's close, then cuts it.
SOCKET_CLOSE_SECONDS = 2.0


def slack_state(settings: Settings) -> str:
    """What `serve` says about Slack at start, once."""
    slack = settings.slack
    if not slack.bot_token:
        return "Slack is off: no Slack tokens are configured (slack.bot_token)"
    ways = [
        *(["over Socket Mode"] if slack.app_token else []),
        *(["at /slack/events"] if slack.signing_secret else []),
    ]
    if not ways:
        return (
            "Slack is on for alerts by direct message; set slack.app_token (Socket Mode) or "
            f"slack.signing_secret (/slack/events) for {slack.command} to work"
        )
    return f"Slack is on: {slack.command} {' and '.join(ways)}, and alerts by direct message"


def slack_bot(settings: Settings, engine: Engine) -> SlackBot | None:
    slack = settings.slack
    if not (slack.bot_token and (slack.signing_secret or slack.app_token)):
        return None
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    # A 429 on the way to answering someone is waited out once (Retry-After), not shown.
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    return SlackBot(
        engine,
        client,
        SlackBotSettings(slack.signing_secret, slack.command, settings.internal_domains),
        lambda user, reply_to: replace(command_context(settings, engine, user), reply_to=reply_to),
    )


def slack_routes(bot: SlackBot) -> list[Route]:
    """`/slack/events`, only with a signing secret: Socket Mode needs none, and without one
    bolt could check no request (it fails on every one)."""
    if not bot.settings.signing_secret:
        return []
    handler = AsyncSlackRequestHandler(bot.app)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    return [Route("/slack/events", events, methods=["POST"])]


def socket_mode(settings: Settings, bot: SlackBot | None) -> SocketMode | None:
    if bot is None or not settings.slack.app_token:
        return None
    return SocketMode(bot, settings.slack.app_token)


class SocketMode:
    """The bot's requests over a WebSocket this process opens to Slack: no public URL, and no
    signatures (the socket is authenticated by the app token). Every serving process (`all`
    or `web`) opens one; with several, Slack spreads the envelopes across them, and jobs still
    run on the one active worker."""

    def __init__(self, bot: SlackBot, app_token: str) -> None:
        self.bot = bot
        self.app_token = app_token
        self._handler: AsyncSocketModeHandler | None = None
        self._connecting: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect in the background: the server serves tracking while Slack is unreachable.
        Built here, as the client takes the running loop (an aiohttp session, a task)."""
        # The bot's client: its base_url is slack.api_url, where apps.connections.open is.
        self._handler = AsyncSocketModeHandler(
            self.bot.app, self.app_token, web_client=self.bot.client
        )
        self._connecting = asyncio.create_task(self._connect(self._handler))

    async def _connect(self, handler: AsyncSocketModeHandler) -> None:
        try:
            opened = await handler.client.web_client.apps_connections_open(app_token=self.app_token)
            handler.client.wss_uri = opened["url"]
        except SlackApiError as exc:
            if exc.response.status_code == 200:  # Slack answered, and said no: the token
                log.error(
                    "slack: Socket Mode is off: apps.connections.open answered %s; set "
                    "slack.app_token to the app-level token (xapp-…, scope connections:write)",
                    exc.response.get("error"),
                )
                return
        except Exception:  # not reachable: connect() asks again and keeps trying
            log.warning("slack: apps.connections.open failed; retrying", exc_info=True)
        await handler.connect_async()  # type: ignore[no-untyped-call]  # bolt leaves it untyped

    async def stop(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()  # before closing, so no session opens after it
            await asyncio.gather(self._connecting, return_exceptions=True)
        if self._handler is None:
            return
        try:
            closing = self._handler.close_async()  # type: ignore[no-untyped-call]
            await asyncio.wait_for(closing, SOCKET_CLOSE_SECONDS)
        except TimeoutError:
            log.warning("slack: the Socket Mode connection did not close in time; cut")
            await self._handler.client.aiohttp_client_session.close()
        except Exception:  # shutdown goes on: the journal still has hits to sync
            log.exception("slack: closing the Socket Mode connection failed")


def slack_reports(settings: Settings) -> SlackReports | None:
    if not settings.slack.bot_token:
        return None
    client = WebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    return SlackReports(client)
