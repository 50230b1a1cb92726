"""`/beacon` in Slack: slack-bolt's AsyncApp over the same command registry as `mailbeacon cmd`.
Every request is acknowledged at once (over HTTP bolt first checks its signature; in Socket
Mode it comes over the authenticated socket); the command runs after the ack, and its answer
comes back as Block Kit through the response URL. A retried request has one effect, and a
preview's buttons work once, for the person who asked."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from slack_bolt import BoltResponse
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from bot import slack_views
from bot.blocks import Block, actions, blocks_for, button, context, escape, section
from bot.context import CommandFailed, Context, Reply
from bot.grammar import CommandError
from bot.registry import execute, parse
from bot.users import User, link_slack_user, user_by_slack_id
from store.schema import slack_seen

log = logging.getLogger(__name__)
Message = dict[str, Any]
T = TypeVar("T")
WORK_AT_ONCE = 3  # commands worked on at once; bench/slack.py measured the acks with it
# What a command does in Slack besides its answer (the stats chart): by command name, called
# with the bot, the request's body and the command's reply, after the answer is sent.
Also = Callable[["SlackBot", dict[str, Any], Reply], Awaitable[None]]
_ALSO: dict[str, Also] = {}


def also_in_slack(name: str) -> Callable[[Also], Also]:
    def register(also: Also) -> Also:
        _ALSO[name] = also
        return also

    return register


NOT_LINKED = (
    "mailbeacon does not know you yet: ask an admin to add your email address under `users:` "
    "in its config (or your Slack user id as `slack_user_id`)."
)


@dataclass(frozen=True)
class SlackBotSettings:
    signing_secret: str
    command: str = "/beacon"
    internal_domains: Sequence[str] = ()


def seen_before(engine: Engine, key: str) -> bool:
    """Record `key` as handled; True when it already was (a retry, a second press)."""
    try:
        with engine.begin() as connection:
            connection.execute(slack_seen.insert().values(key=key[:200]))
    except IntegrityError:
        return True
    return False


class SlackBot:
    """The app and what it stands on: the store, and a Context for a linked user."""

    def __init__(
        self,
        engine: Engine,
        client: AsyncWebClient,
        settings: SlackBotSettings,
        context_for: Callable[[User, dict[str, Any]], Context],
    ) -> None:
        self.engine = engine
        self.client = client
        self.settings = settings
        self.context_for = context_for
        # Bolt checks the bot token (auth.test) at the first request, not at start.
        self.app = AsyncApp(client=client, signing_secret=settings.signing_secret)
        self.app.middleware(self._once)
        self.app.command(settings.command)(self._command)
        self.app.action("confirm")(self._confirm)
        self.app.action("cancel")(self._cancel)
        self.not_linked = NOT_LINKED
        self._slots: asyncio.Semaphore | None = None
        slack_views.register(self)

    # --- cross-cutting -----------------------------------------------------------------

    async def _once(
        self, body: dict[str, Any], req: Any, next: Callable[[], Awaitable[Any]]
    ) -> Any:
        """A retried request has one effect: an event by its id; anything else Slack retries
        was handled at its first attempt."""
        event_id = body.get("event_id")
        if event_id and await asyncio.to_thread(seen_before, self.engine, f"event:{event_id}"):
            return BoltResponse(status=200, body="")
        if req.headers.get("x-slack-retry-num") and not event_id:
            return BoltResponse(status=200, body="")
        return await next()

    async def in_thread(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a command's work in a thread, a few at a time: more threads would only take the
        interpreter from the event loop, which must keep acknowledging within 3 s."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(WORK_AT_ONCE)
        async with self._slots:
            return await asyncio.to_thread(work, *args, **kwargs)

    async def who(self, slack_user_id: str) -> User | None:
        """The internal user behind a Slack member: linked already, or by the email Slack
        reports when that is a configured user or of an internal domain. The store is read in
        a thread: the event loop answers other requests meanwhile (SQLite may be busy)."""
        user = await asyncio.to_thread(self._linked, slack_user_id)
        if user is not None:
            return user
        try:
            info = await self.client.users_info(user=slack_user_id)
        except SlackApiError:
            log.warning("slack: users.info failed for %s", slack_user_id)
            return None
        profile = (info.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        if not email:
            return None
        name = profile.get("real_name") or profile.get("display_name") or ""
        return await asyncio.to_thread(self._link, slack_user_id, email, name)

    def _linked(self, slack_user_id: str) -> User | None:
        with self.engine.connect() as connection:
            return user_by_slack_id(connection, slack_user_id)

    def _link(self, slack_user_id: str, email: str, name: str) -> User | None:
        with self.engine.begin() as connection:
            return link_slack_user(
                connection, slack_user_id, email, name, self.settings.internal_domains
            )

    # --- the slash command --------------------------------------------------------------

    async def _command(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        user = await self.who(body["user_id"])
        if user is None:
            await respond(text=NOT_LINKED, response_type="ephemeral")
            return
        reply_to = {
            "slack": {
                "user": body["user_id"],
                "channel": body.get("channel_id"),
                "response_url": body.get("response_url"),
            }
        }
        text = body.get("text") or ""
        if text.strip().lower() == "send" and body.get("trigger_id"):
            await slack_views.open_compose(self, body["trigger_id"])
            return
        answer = await self.in_thread(self.run, text, user, reply_to, confirmed=False)
        await respond(**answer.message)
        also = _ALSO.get(answer.command or "")
        if also is not None and answer.reply is not None:
            try:
                await also(self, body, answer.reply)
            except Exception:  # the answer is out; what comes besides it is best effort
                log.exception("slack: what comes after %s failed", answer.command)

    async def answer(self, body: dict[str, Any], text: str, respond: Any) -> None:
        """A command a button stands for (open a campaign), answered to whoever pressed it."""
        slack_user = body["user"]["id"]
        user = await self.who(slack_user)
        if user is None:
            await respond(replace_original=False, response_type="ephemeral", text=NOT_LINKED)
            return
        reply_to = {"slack": {"user": slack_user, "response_url": body.get("response_url")}}
        answer = await self.in_thread(self.run, text, user, reply_to, confirmed=False)
        await respond(replace_original=False, **answer.message)

    def run(self, text: str, user: User, reply_to: dict[str, Any], *, confirmed: bool) -> Answer:
        """A command, answered as a Slack message (ephemeral: only the asker sees it)."""
        try:
            parsed = parse(text)
        except CommandError as exc:
            return Answer(failure(exc.message, exc.usage))
        try:
            reply = execute(parsed, self.context_for(user, reply_to), confirmed=confirmed)
        except CommandFailed as exc:
            return Answer(failure(str(exc), parsed.spec.usage), parsed.spec.name)
        message = {
            "response_type": "ephemeral",
            "text": escape(reply.text)[:3000],
            "blocks": blocks_for(parsed.spec.name, reply),
        }
        if reply.needs_confirmation:
            message["blocks"] = [*message["blocks"][:47], *confirm_buttons(text, reply_to)]
        return Answer(message, parsed.spec.name, reply)

    # --- Send / Cancel ------------------------------------------------------------------

    async def _confirm(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        pressed = await self._pressed(body, respond)
        if pressed is None:
            return
        user, value = pressed
        # The job says how it ended through this press's response URL, the newer one.
        slack = {**value["reply_to"]["slack"], "response_url": body.get("response_url")}
        answer = await self.in_thread(
            self.run, value["text"], user, {"slack": slack}, confirmed=True
        )
        await respond(replace_original=True, **answer.message)

    async def _cancel(self, ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        if await self._pressed(body, respond) is not None:
            await respond(replace_original=True, text="Cancelled: nothing was sent.")

    async def _pressed(
        self, body: dict[str, Any], respond: Any
    ) -> tuple[User, dict[str, Any]] | None:
        """Who pressed a preview's button, if they may: the person who asked, once."""
        value = json.loads(body["actions"][0]["value"])
        presser = body["user"]["id"]
        if presser != value["reply_to"]["slack"]["user"]:
            await respond(
                replace_original=False,
                response_type="ephemeral",
                text="Only the person who asked can press this.",
            )
            return None
        if await asyncio.to_thread(seen_before, self.engine, f"button:{value['key']}"):
            await respond(
                replace_original=False,
                response_type="ephemeral",
                text="This was already answered: nothing more happens.",
            )
            return None
        user = await self.who(presser)
        if user is None:
            await respond(replace_original=False, response_type="ephemeral", text=NOT_LINKED)
            return None
        return user, value


@dataclass(frozen=True)
class Answer:
    message: Message  # what the asker sees
    command: str | None = None  # which command answered, when the words named one
    reply: Reply | None = None  # its reply, when it did not fail


def confirm_buttons(text: str, reply_to: dict[str, Any]) -> list[Block]:
    """Send and Cancel: each carries the command, who asked, and one key for both, so the
    first press decides and any later one does nothing."""
    value = json.dumps({"text": text, "reply_to": reply_to, "key": uuid.uuid4().hex})
    return [
        actions(
            button("Send", "confirm", value, style="primary"),
            button("Cancel", "cancel", value),
        )
    ]


def failure(message: str, usage: str = "") -> Message:
    blocks = [section(f":warning: {escape(message)}")]
    if usage:
        blocks.append(context(f"usage: `{escape(usage)}`"))
    return {"response_type": "ephemeral", "text": escape(message), "blocks": blocks}
