"""Alerts as Slack direct messages, through the real slack_sdk WebClient (DESIGN §6)."""

from __future__ import annotations

import json
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from notifier.alerts import Alert
from notifier.channels import ChannelError, Recipient

METADATA_TYPE = "mailbeacon_alert"
# How far back a retry looks for the alert it may have posted before a crash.
LOOK_BACK = 50


class SlackChannel:
    """A DM from the app to the user: their linked Slack user, else the Slack member with their
    email address. Each message carries its delivery's key as metadata, so a retry after a
    crash finds it in the DM and posts nothing twice."""

    def __init__(self, client: WebClient) -> None:
        self._client = client
        self._members: dict[str, str] = {}  # email -> Slack user id, as Slack reported it

    def send(self, recipient: Recipient, alert: Alert, key: str) -> None:
        try:
            member = recipient.slack_user_id or self._member(recipient.email)
            dm = self._client.conversations_open(users=member)["channel"]["id"]
            if self._posted(dm, key):
                return
            self._client.chat_postMessage(
                channel=dm,
                text=escape(f"{alert.title}\n{alert.details}"),
                blocks=alert_blocks(alert),
                metadata={"event_type": METADATA_TYPE, "event_payload": {"key": key}},
            )
        except SlackApiError as exc:
            raise ChannelError(_explain(exc, recipient)) from exc
        except (SlackClientError, OSError) as exc:
            raise ChannelError(f"cannot reach Slack: {exc}") from exc

    def _member(self, email: str) -> str:
        if email not in self._members:
            self._members[email] = self._client.users_lookupByEmail(email=email)["user"]["id"]
        return self._members[email]

    def _posted(self, dm: str, key: str) -> bool:
        history = self._client.conversations_history(
            channel=dm, limit=LOOK_BACK, include_all_metadata=True
        )
        messages: list[dict[str, Any]] = history.get("messages", [])
        return any(
            (message.get("metadata") or {}).get("event_payload", {}).get("key") == key
            for message in messages
        )


def _explain(exc: SlackApiError, recipient: Recipient) -> str:
    error = exc.response.get("error", "") if exc.response is not None else ""
    if exc.response is not None and exc.response.status_code == 429:
        wait = exc.response.headers.get("Retry-After", "a few")
        return f"Slack asks to wait {wait} seconds (rate limited)"
    if error == "users_not_found":
        return (
            f"no Slack member has the email {recipient.email}: set `slack_user_id` for this user "
            "in config"
        )
    if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return f"Slack refused the bot token ({error}): check slack.bot_token in config"
    return f"Slack answered {error or exc}"


def escape(text: object) -> str:
    """mrkdwn's three control characters: `<!channel>` from a stranger pings nobody."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def alert_blocks(alert: Alert) -> list[dict[str, Any]]:
    """The alert, and for each campaign it names the buttons to open it, list who has not
    opened it, and follow up (the bot's `open_campaign`, `nonopeners`, `follow_up` actions)."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{escape(alert.title)}*"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(alert.details)}]},
    ]
    for campaign in alert.campaigns[:20]:
        follow = {"campaign": campaign, "outcome": "opened", "include_machine": False}
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    _button(f"Open campaign #{campaign}", "open_campaign", str(campaign)),
                    _button("Non-openers", "nonopeners", str(campaign)),
                    _button("Follow up…", "follow_up", json.dumps(follow)),
                ],
            }
        )
    return blocks


def _button(text: str, action_id: str, value: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }
