"""The stats chart in Slack: after `/beacon stats` is answered, its rates as a PNG in the
asker's DM, with the same figures as text beside it for screen readers."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackClientError

from bot.blocks import escape
from bot.charts import rates_chart
from bot.commands.campaigns import rates_text
from bot.context import Reply
from bot.slack_app import SlackBot, also_in_slack
from tracking.analytics import Rates

log = logging.getLogger(__name__)
FILENAME = "mailbeacon-stats.png"


@also_in_slack("stats")
async def stats_chart(bot: SlackBot, body: dict[str, Any], reply: Reply) -> None:
    rows = reply.data.get("rows") or []
    if not rows:
        return
    title = chart_title(reply.data)
    png = await bot.in_thread(rates_chart, rows, title=title)
    try:
        opened = await bot.client.conversations_open(users=body["user_id"])
        await bot.client.files_upload_v2(
            channel=opened["channel"]["id"],
            file=png,
            filename=FILENAME,
            title=title,
            alt_txt=alt_text(title, len(rows)),
            initial_comment=figures_text(title, rows),
        )
    except SlackClientError as exc:  # the answer is out; the chart is a bonus
        log.warning("slack: the stats chart was not uploaded (is files:write granted?): %s", exc)


def chart_title(data: dict[str, Any]) -> str:
    by = f" by {data['by']}" if data.get("by") else ""
    counted = "machines included" if data.get("raw") else "people only"
    return f"Open, click and reply rates{by} ({counted})"


def alt_text(title: str, groups: int) -> str:
    return (
        f"Bar chart: {title}, {groups} {'group' if groups == 1 else 'groups'}, "
        "in percent; the figures are in the message."
    )[:1000]


def figures_text(title: str, rows: list[dict[str, Any]]) -> str:
    """The chart's figures, one line a group, as the command's own answer words them."""
    lines = [f"{escape(title)}:"]
    for row in rows:
        rates = Rates(row["emails"], row["open_rate"], row["click_rate"], row["reply_rate"])
        emails = f"{row['emails']} {'email' if row['emails'] == 1 else 'emails'}"
        lines.append(f"• {escape(row['label'])}: {emails}, {rates_text(rates)}")
    return "\n".join(lines)
