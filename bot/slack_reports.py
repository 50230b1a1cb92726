"""How a job started from Slack tells its user how it goes: a long send-out keeps one direct
message up to date with its progress (chat.update), and the end comes through the command's
response URL while Slack still takes it, else as a direct message from the app."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.blocks import Block, context, escape, section
from bot.jobs import describe

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 2.0  # the least time between two updates of one job's progress message
LONG = 50  # jobs of fewer steps are over before a progress message would help


def progress_text(row: Any, done: int, total: int) -> str:
    share = done / total if total else 1.0
    return f"Job #{row.id} ({describe(row)}): {done} of {total} done ({share:.0%})."


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
    """A bot.jobs.Watcher for jobs started from Slack."""

    def __init__(self, client: WebClient, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._messages: dict[int, tuple[str, str]] = {}  # job id -> its progress message
        self._last: dict[int, float] = {}

    def progress(self, row: Any, done: int, total: int | None) -> None:
        slack = (row.reply_to or {}).get("slack")
        if not slack or not total or total < LONG:
            return
        now = self._clock()
        if now - self._last.get(row.id, float("-inf")) < PROGRESS_SECONDS and done < total:
            return
        self._last[row.id] = now
        text = progress_text(row, done, total)
        blocks = [section(f":outbox_tray: {escape(text)}")]
        if row.id in self._messages:
            channel, ts = self._messages[row.id]
            self._client.chat_update(channel=channel, ts=ts, text=escape(text), blocks=blocks)
            return
        channel = self._dm(slack["user"])
        posted = self._client.chat_postMessage(channel=channel, text=escape(text), blocks=blocks)
        self._messages[row.id] = (channel, str(posted["ts"]))

    def ended(self, row: Any) -> None:
        slack = (row.reply_to or {}).get("slack")
        if not slack:
            return
        text, blocks = job_blocks(row)
        if row.id in self._messages and row.status != "queued":
            channel, ts = self._messages.pop(row.id)
            self._last.pop(row.id, None)
            self._client.chat_update(channel=channel, ts=ts, text=escape(text), blocks=blocks)
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
            channel = self._dm(slack["user"])
            self._client.chat_postMessage(channel=channel, text=escape(text), blocks=blocks)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("slack: could not tell %s how job %s ended: %s", slack["user"], row.id, exc)

    def _dm(self, slack_user: str) -> str:
        return str(self._client.conversations_open(users=slack_user)["channel"]["id"])
