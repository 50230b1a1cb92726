"""The bot's Slack surfaces beyond replies: App Home (my campaigns, alert rules, digest, quiet
hours, mailbox), the compose modal that `/beacon send` opens, and the modal that a "Follow up…"
button opens. Views are made by pure functions from data; the listeners run the same
commands as typing them would."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bot.blocks import FOLLOW_UP, Block, button, context, escape, header, rate, section
from bot.context import CommandFailed
from bot.registry import run_text
from bot.users import User
from notifier.subscriptions import in_words, list_subscriptions, remove_subscription
from outreach.audience import resolve_audience
from outreach.filters import AudienceError
from outreach.templates import list_templates
from store.schema import digests
from tracking.analytics import stats

if TYPE_CHECKING:
    from bot.slack_app import SlackBot

Json = dict[str, Any]
HOME_CAMPAIGNS = 10


# --- App Home -----------------------------------------------------------------------------


def home_view(user: User, me: Json, campaigns: list[Any], rules: list[Any], digest: Any) -> Json:
    """App Home, from what the store says about the user."""
    blocks: list[Block] = [header(f"mailbeacon for {user.display_name}")]
    blocks.append(section(f"*Sends from:* {escape(me['mailbox'])}"))
    blocks.append(header("Your campaigns"))
    if not campaigns:
        blocks.append(section("Nothing sent yet: `/beacon send` starts a campaign."))
    for row in campaigns[:HOME_CAMPAIGNS]:
        blocks.append(
            section(
                f"*{escape(row.label)}*: {row.emails} email{'' if row.emails == 1 else 's'} · "
                f"opened {rate(row.open_rate)} · clicked {rate(row.click_rate)} · "
                f"replied {rate(row.reply_rate)}"
            )
        )
    blocks.append(context("People only: machine opens and link scanners are left out."))
    blocks.append(header("Your alerts"))
    if not rules:
        blocks.append(section("No alerts: `/beacon alerts add on open via slack` adds one."))
    for rule in rules[:20]:
        blocks.append(
            {
                **section(escape(in_words(rule))),
                "accessory": button("Remove", "remove_alert", str(rule.id), style="danger"),
            }
        )
    quiet = user.quiet_hours or "none"
    daily = f"daily at {digest.at_time}" if digest is not None and digest.enabled else "off"
    blocks.append(section(" ", fields=[f"*Digest*\n{daily}", f"*Quiet hours*\n{escape(quiet)}"]))
    return {"type": "home", "blocks": blocks[:100]}


def home_data(bot: SlackBot, user: User) -> Json:
    me = run_text("me", bot.context_for(user, {})).data
    with bot.engine.connect() as connection:
        campaigns = stats(
            connection, by="campaign", since=None, sender_user_id=user.id, limit=HOME_CAMPAIGNS
        )
        rules = list_subscriptions(connection, user.id)
        digest = connection.execute(select(digests).where(digests.c.user_id == user.id)).first()
    return home_view(user, me, campaigns, rules, digest)


# --- the Follow up… modal -----------------------------------------------------------------


def follow_up_modal(value: Json, templates: list[str]) -> Json:
    who = f"not {value.get('outcome', 'opened')}"
    if value.get("include_machine"):
        who += ", machines counted"
    return {
        "type": "modal",
        "callback_id": FOLLOW_UP,
        "private_metadata": json.dumps(value),
        "title": {"type": "plain_text", "text": "Follow up"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Campaign #{int(value['campaign'])}: everyone who has {escape(who)}, each in "
                "the thread of the email they got."
            ),
            _template_input(templates),
        ],
    }


def follow_up_text(value: Json, template: str) -> str:
    words = f"followup {int(value['campaign'])} with {template} to not {value['outcome']}"
    return words + (" include machine" if value.get("include_machine") else "")


# --- the compose modal --------------------------------------------------------------------


def compose_modal(templates: list[str], count: str = "") -> Json:
    return {
        "type": "modal",
        "callback_id": "compose",
        "title": {"type": "plain_text", "text": "Send an email"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _template_input(templates),
            {
                "type": "input",
                "block_id": "audience",
                "dispatch_action": True,
                "label": {"type": "plain_text", "text": "To"},
                "hint": {
                    "type": "plain_text",
                    "text": 'Addresses, a filter such as company.region = "West Coast", or '
                    "cohort unengaged outage since 30d",
                },
                "element": {
                    "type": "plain_text_input",
                    "action_id": "audience_typed",
                    "dispatch_action_config": {"trigger_actions_on": ["on_character_entered"]},
                },
            },
            {"type": "context", "block_id": "count", "elements": [_count_text(count)]},
            {
                "type": "input",
                "block_id": "mode",
                "label": {"type": "plain_text", "text": "As"},
                "element": {
                    "type": "radio_buttons",
                    "action_id": "value",
                    "initial_option": _option("individual", "One email each"),
                    "options": [
                        _option("individual", "One email each"),
                        _option("group", "One email to all (the first is credited)"),
                    ],
                },
            },
            {
                "type": "input",
                "block_id": "track",
                "optional": True,
                "label": {"type": "plain_text", "text": "Track"},
                "element": {
                    "type": "checkboxes",
                    "action_id": "value",
                    "initial_options": [_option("opens", "Opens"), _option("clicks", "Clicks")],
                    "options": [_option("opens", "Opens"), _option("clicks", "Clicks")],
                },
            },
        ],
    }


def _count_text(count: str) -> Json:
    return {"type": "mrkdwn", "text": count or "Type an audience to see how many it reaches."}


def _option(value: str, text: str) -> Json:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def _template_input(templates: list[str]) -> Json:
    return {
        "type": "input",
        "block_id": "template",
        "label": {"type": "plain_text", "text": "Template"},
        "element": {
            "type": "static_select",
            "action_id": "value",
            "options": [_option(key, key) for key in templates[:100]],
        },
    }


def compose_text(values: Json) -> str:
    """The `send` command a filled-in compose modal stands for."""
    template = values["template"]["value"]["selected_option"]["value"]
    audience = (values["audience"]["audience_typed"].get("value") or "").strip()
    mode = values["mode"]["value"]["selected_option"]["value"]
    tracked = [o["value"] for o in values["track"]["value"].get("selected_options") or []]
    return f"send {template} to {audience} as {mode} track {','.join(tracked) or 'none'}"


def match_count(bot: SlackBot, audience: str) -> str:
    """How many endusers an audience reaches, as it is typed; nothing is stored."""
    if not audience.strip():
        return ""
    with bot.engine.connect() as connection:  # never committed: new addresses are not kept
        connection.begin()  # new addresses are written, then rolled back: a write transaction
        try:
            found = resolve_audience(connection, audience)
        except AudienceError as exc:
            return f"Not an audience yet: {escape(exc.message)}"
    return f"Reaches {escape(found.summary())}."


def field_for(message: str) -> str:
    """Which field of the compose modal a command's complaint is about."""
    if "template" in message and "audience" not in message:
        return "template"
    return "audience"


# --- listeners ----------------------------------------------------------------------------


def register(bot: SlackBot) -> None:
    app = bot.app

    @app.event("app_home_opened")
    async def home_opened(event: Json) -> None:
        await publish_home(bot, event["user"])

    @app.action("remove_alert")
    async def remove_alert(ack: Any, body: Json) -> None:
        await ack()
        user = await bot.who(body["user"]["id"])
        if user is None:
            return
        rule_id = int(body["actions"][0]["value"])
        await asyncio.to_thread(_remove_alert, bot, user.id, rule_id)
        await publish_home(bot, body["user"]["id"])

    @app.action("open_campaign")
    async def open_campaign(ack: Any, body: Json, respond: Any) -> None:
        await ack()
        campaign = body["actions"][0]["value"]
        await bot.answer(body, f"campaign {int(campaign)}", respond)

    @app.action("nonopeners")
    async def nonopeners(ack: Any, body: Json, respond: Any) -> None:
        await ack()
        await bot.answer(body, f"nonopeners {int(body['actions'][0]['value'])}", respond)

    @app.action(FOLLOW_UP)
    async def follow_up(ack: Any, body: Json) -> None:
        await ack()
        value = json.loads(body["actions"][0]["value"])
        await bot.client.views_open(
            trigger_id=body["trigger_id"],
            view=follow_up_modal(value, await asyncio.to_thread(_template_keys, bot)),
        )

    @app.view(FOLLOW_UP)
    async def follow_up_sent(ack: Any, body: Json, view: Json) -> None:
        value = json.loads(view["private_metadata"])
        template = view["state"]["values"]["template"]["value"]["selected_option"]["value"]
        await _submit(bot, ack, body, follow_up_text(value, template), "template")

    @app.action("audience_typed")
    async def audience_typed(ack: Any, body: Json) -> None:
        await ack()
        view = body["view"]
        typed = body["actions"][0].get("value") or ""
        count = await asyncio.to_thread(match_count, bot, typed)
        await bot.client.views_update(
            view_id=view["id"],
            hash=view.get("hash"),
            view=compose_modal(await asyncio.to_thread(_template_keys, bot), count),
        )

    @app.view("compose")
    async def compose_sent(ack: Any, body: Json, view: Json) -> None:
        await _submit(bot, ack, body, compose_text(view["state"]["values"]), None)


async def open_compose(bot: SlackBot, trigger_id: str) -> None:
    keys = await asyncio.to_thread(_template_keys, bot)
    await bot.client.views_open(trigger_id=trigger_id, view=compose_modal(keys))


async def publish_home(bot: SlackBot, slack_user_id: str) -> None:
    user = await bot.who(slack_user_id)
    if user is None:
        view = {"type": "home", "blocks": [section(escape(bot.not_linked))]}
    else:
        view = await bot.in_thread(home_data, bot, user)
    await bot.client.views_publish(user_id=slack_user_id, view=view)


def _remove_alert(bot: SlackBot, user_id: int, rule_id: int) -> None:
    with bot.engine.begin() as connection:
        remove_subscription(connection, user_id, rule_id)


def _template_keys(bot: SlackBot) -> list[str]:
    with bot.engine.connect() as connection:
        return [stored.template.key for stored in list_templates(connection)]


async def _submit(bot: SlackBot, ack: Any, body: Json, text: str, field: str | None) -> None:
    """A modal stands for a confirmed command: run it; a complaint goes back onto its field,
    and anything else to the user's DM (where the job later says how it ended)."""
    slack_user = body["user"]["id"]
    user = await bot.who(slack_user)
    if user is None:
        await ack(response_action="errors", errors={field or "audience": bot.not_linked})
        return
    reply_to = {"slack": {"user": slack_user}}

    def run() -> Json:
        try:
            reply = run_text(text, bot.context_for(user, reply_to), confirmed=True)
        except CommandFailed as exc:
            return {"error": str(exc)}
        return {"text": reply.text}

    outcome = await bot.in_thread(run)
    if "error" in outcome:
        message = outcome["error"]
        await ack(response_action="errors", errors={field or field_for(message): message[:150]})
        return
    await ack()
    channel = (await bot.client.conversations_open(users=slack_user))["channel"]["id"]
    await bot.client.chat_postMessage(
        channel=channel, text=escape(outcome["text"]), blocks=[section(escape(outcome["text"]))]
    )
