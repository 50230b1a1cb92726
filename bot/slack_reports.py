"""How a job started from Slack says it ended: through the command's response URL while Slack
still takes it, else as a direct message from the app."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.blocks import Block, context, escape, section
from bot.jobs import describe

log = logging.getLogger(__name__)


def job_blocks(row: Any) -> tuple[str, list[Block]]:
    """(text, blocks) for a job that ended, or that waits to go on later."""
    what = f"Job #{row.id} ({describe(row)})"
    if row.status == "done":
        text = str((row.result or {}).get("text") or f"{what} is done.")
        return text, [section(escape(text)), context(escape(what))]
    if row.status == "failed":
        text = f"{what} failed: {row.error}"
        return text, [section(f":warning: {escape(text)}")]
    text = f"{what} waits: {row.progress_note or row.status}. It goes on by itself."
    return text, [section(f":hourglass: {escape(text)}")]


class SlackReports:
    def __init__(self, client: WebClient) -> None:
        self._client = client

    def job_ended(self, row: Any) -> None:
        slack = (row.reply_to or {}).get("slack")
        if not slack:
            return
        text, blocks = job_blocks(row)
        url = slack.get("response_url")
        if url:
            try:
                answer = WebhookClient(url).send(
                    text=escape(text), blocks=blocks, response_type="ephemeral"
                )
                if answer.status_code == 200:
                    return
            except (SlackClientError, OSError) as exc:
                log.info("slack: response URL of job %s not taken (%s): a DM instead", row.id, exc)
        try:
            channel = self._client.conversations_open(users=slack["user"])["channel"]["id"]
            self._client.chat_postMessage(channel=channel, text=escape(text), blocks=blocks)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("slack: could not tell %s how job %s ended: %s", slack["user"], row.id, exc)
