"""The stats chart: a PNG of rates by group, whatever the rows hold."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from bot.charts import MAX_LABELS, rates_chart

PNG = b"\x89PNG\r\n\x1a\n"


def row(label: str, emails: int = 10, **rates: float | None) -> dict[str, Any]:
    return {
        "key": label,
        "label": label,
        "emails": emails,
        "open_rate": rates.get("open_rate", 50.0),
        "click_rate": rates.get("click_rate", 20.0),
        "reply_rate": rates.get("reply_rate", 0.0),
    }


def size(png: bytes) -> tuple[int, int]:
    """Width and height, from the IHDR chunk."""
    assert png.startswith(PNG) and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_rates_by_group_are_a_png_of_a_reasonable_size() -> None:
    png = rates_chart([row("webinar"), row("outage", 3, reply_rate=33.3)], title="By template")
    assert png.startswith(PNG)
    assert 5_000 < len(png) < 200_000
    width, height = size(png)
    assert width == 800 and 200 <= height <= 600


@pytest.mark.parametrize(
    "rows",
    [
        [row("untracked", open_rate=None, click_rate=None)],
        [row("all none", open_rate=None, click_rate=None, reply_rate=None)],
        [row("full", open_rate=100.0, click_rate=100.0, reply_rate=100.0)],
        [],
    ],
    ids=["no tracking", "no rates at all", "all 100 %", "no rows"],
)
def test_missing_rates_and_edges_draw(rows: list[dict[str, Any]]) -> None:
    assert rates_chart(rows, title="Rates").startswith(PNG)


def test_what_strangers_named_is_drawn_as_text() -> None:
    # `$…$` would be mathtext, and glyphs the font lacks would warn (warnings are errors here).
    png = rates_chart([row("$5 deal $ 漢字 🎉 <!channel>\n" + "x" * 200)], title="$by$ 🎉")
    assert png.startswith(PNG)


def test_many_groups_are_capped_and_the_picture_stays_readable() -> None:
    few = size(rates_chart([row(f"company {i}") for i in range(MAX_LABELS)], title="Rates"))
    many = size(rates_chart([row(f"company {i}") for i in range(50)], title="Rates"))
    assert many == few  # no more bars than MAX_LABELS groups: the rest are a note
    assert many[1] <= 1_200
