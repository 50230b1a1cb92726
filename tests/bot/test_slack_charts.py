"""The stats chart in Slack: `/beacon stats` answers with its figures, then the same figures
as a PNG in the asker's DM, through files_upload_v2's three calls to the fake Slack."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import select, update

from bot.slack_charts import FILENAME, figures_text
from store.schema import emails, engagements
from tests.bot.conftest import LEE, UBOSS, Slack
from tests.fakes.slack import Uploaded

DANA, PRIYA = "dana.reyes@acme-logistics.example", "priya.nair@bluebird-health.example"
UPLOAD = (
    "conversations.open",
    "files.getUploadURLExternal",
    "upload",
    "files.completeUploadExternal",
)
PNG = b"\x89PNG\r\n\x1a\n"


def engaged(slack: Slack) -> None:
    """Two webinars, one opened as a person; one outage, replied to."""
    slack.team.run(f"send webinar to {LEE}, {DANA}", yes=True)
    slack.team.run(f"send outage to {PRIYA}", yes=True)
    with slack.team.engine.begin() as connection:
        email_of = {row.to_addrs[0]: row.id for row in connection.execute(select(emails))}
        for who, values in ((DANA, {"open_rate": 100}), (PRIYA, {"reply_rate": 100})):
            connection.execute(
                update(engagements).where(engagements.c.email_id == email_of[who]).values(values)
            )


def uploaded(slack: Slack) -> list[Uploaded]:
    """The uploads, once one has completed."""
    deadline = time.monotonic() + 10
    while not slack.fake.files:
        assert time.monotonic() < deadline, "no chart was uploaded"
        time.sleep(0.01)
    return slack.fake.files


def upload_calls(slack: Slack) -> list[tuple[str, dict[str, Any]]]:
    return [(method, arguments) for method, arguments in slack.fake.calls if method in UPLOAD]


def test_stats_answer_with_figures_and_upload_the_chart_to_the_askers_dm(slack: Slack) -> None:
    engaged(slack)
    _, url = slack.command("stats by template")
    answer = slack.answer(url)
    blocks = json.dumps(answer["blocks"])
    assert "webinar" in blocks and "outage" in blocks and "50" in blocks and "100" in blocks
    [chart] = uploaded(slack)
    assert chart.channel == f"D{UBOSS}"
    assert chart.filename == FILENAME and chart.title == (
        "Open, click and reply rates by template (people only)"
    )
    assert chart.data is not None and chart.data.startswith(PNG)
    assert len(chart.data) == chart.length
    assert chart.alt_txt is not None and "Bar chart" in chart.alt_txt
    assert chart.initial_comment == (
        "Open, click and reply rates by template (people only):\n"
        "• webinar: 2 emails, open 50%, click 0%, reply 0%\n"
        "• outage: 1 email, open 0%, click 0%, reply 100%"
    )
    assert [method for method, _ in upload_calls(slack)] == list(UPLOAD)


def test_stats_with_nothing_sent_upload_nothing(slack: Slack) -> None:
    _, url = slack.command("stats")
    assert "nothing sent yet" in slack.answer(url)["text"]
    time.sleep(0.3)  # what comes after the answer would have come by now
    assert slack.fake.files == [] and upload_calls(slack) == []


def test_a_failing_upload_leaves_the_answer_intact(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    engaged(slack)
    slack.fake.methods["files.getUploadURLExternal"] = lambda _: {
        "ok": False,
        "error": "missing_scope",
    }
    _, url = slack.command("stats by template")
    assert "webinar" in json.dumps(slack.answer(url)["blocks"])
    deadline = time.monotonic() + 10
    while "missing_scope" not in caplog.text:
        assert time.monotonic() < deadline, "the failed upload was not logged"
        time.sleep(0.01)
    assert [method for method, _ in upload_calls(slack)] == list(UPLOAD[:2])
    assert slack.fake.files == [] and len(slack.fake.said(url)) == 1


def test_the_figures_beside_the_chart_are_escaped() -> None:
    rows = [
        {
            "label": "<!channel> & co",
            "emails": 1,
            "open_rate": None,
            "click_rate": 12.5,
            "reply_rate": 0.0,
        }
    ]
    assert figures_text("Rates by company", rows) == (
        "Rates by company:\n• &lt;!channel&gt; &amp; co: 1 email, open n/a, click 12.5%, reply 0%"
    )
