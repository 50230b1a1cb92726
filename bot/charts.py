"""The stats chart: open, click and reply rates per group as grouped bars, a PNG. Drawn with
matplotlib's object API on an Agg canvas: no pyplot, no global backend. Pure: rows in, bytes out."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, get_font
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

MAX_LABELS = 15  # groups drawn; the rest are counted in a note below the chart
MAX_LABEL_CHARS = 32
BAR = 0.27  # a bar's thickness; a group's three take 0.81 of its row
# Okabe-Ito colours, told apart with the common colour blindnesses.
RATES = (
    ("open_rate", "open", "#0072B2"),
    ("click_rate", "click", "#E69F00"),
    ("reply_rate", "reply", "#009E73"),
)
Row = Mapping[str, Any]


def rates_chart(rows: Sequence[Row], *, title: str) -> bytes:
    """Rows as `stats` gives them (label, emails, open/click/reply rate in percent or None)."""
    shown, rest = rows[:MAX_LABELS], rows[MAX_LABELS:]
    figure = Figure(figsize=(8, 1.8 + 0.6 * max(len(shown), 1)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for k, (key, name, colour) in enumerate(RATES):
        offset = (k - 1) * BAR
        drawn = [(i + offset, row[key]) for i, row in enumerate(shown) if row.get(key) is not None]
        bars = axes.barh(
            [y for y, _ in drawn], [value for _, value in drawn], height=BAR, color=colour
        )
        axes.bar_label(bars, [f"{value:g}%" for _, value in drawn], padding=3, fontsize=8)
        for i, row in enumerate(shown):
            if row.get(key) is None:  # no tracking of this kind: not a 0
                axes.text(1, i + offset, f"{name}: n/a", va="center", fontsize=8, color="#595959")
    axes.set_yticks(range(len(shown)), [_label(row) for row in shown], fontsize=9, parse_math=False)
    axes.set_ylim(max(len(shown), 1) - 0.5, -0.5)  # the biggest group on top
    axes.set_xlim(0, 100)
    axes.set_xticks(range(0, 101, 20))
    axes.xaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    axes.grid(axis="x", color="#dddddd")
    axes.set_axisbelow(True)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_title(_drawable(title), loc="left", fontsize=11, parse_math=False)
    axes.legend(
        handles=[Patch(color=colour, label=name) for _, name, colour in RATES],
        loc="lower right",
        ncols=3,
        fontsize=8,
        bbox_to_anchor=(1, 1),
        frameon=False,
    )
    if rest:
        emails = sum(int(row.get("emails") or 0) for row in rest)
        figure.supxlabel(
            f"… and {len(rest)} more {'group' if len(rest) == 1 else 'groups'} "
            f"({emails} {'email' if emails == 1 else 'emails'}), in the text only",
            fontsize=8,
            color="#595959",
        )
    png = io.BytesIO()
    figure.savefig(png, format="png", metadata={"Software": None})
    return png.getvalue()


def _label(row: Row) -> str:
    emails = int(row.get("emails") or 0)
    name = " ".join(str(row.get("label") or "?").split())
    if len(name) > MAX_LABEL_CHARS:
        name = name[: MAX_LABEL_CHARS - 1] + "…"
    return _drawable(f"{name}\n{emails} {'email' if emails == 1 else 'emails'}")


def _drawable(text: str) -> str:
    """`text` with what the font cannot draw as `?`: names may be in any script, and a missing
    glyph is a warning, not a picture."""
    return "".join(c if c == "\n" or _in_font(c) else "?" for c in text)


@cache
def _in_font(character: str) -> bool:
    return bool(_font().get_char_index(ord(character)))


@cache
def _font() -> Any:
    return get_font(findfont(FontProperties()))
