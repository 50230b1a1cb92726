"""How `mailbeacon cmd` shows a job's progress: the line is pure; a terminal gets one line
rewritten, anything else a plain line per change."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from mailbeacon.progress import ProgressDisplay, progress_line


@pytest.mark.parametrize(
    ("done", "total", "rate", "line"),
    [
        (0, 300, 0.0, "[........................] 0/300  0%  0.0/s"),
        (62, 300, 31.0, "[#####...................] 62/300  21%  31.0/s  8s left"),
        (300, 300, 250.0, "[########################] 300/300  100%  250.0/s"),
        (7, None, 2.0, "7 done  2.0/s"),
    ],
)
def test_the_line_shows_count_share_rate_and_time_left(
    done: int, total: int | None, rate: float, line: str
) -> None:
    assert progress_line(done, total, rate) == line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def job(status: str, done: int, note: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        status=status, progress_done=done, progress_total=100, progress_note=note
    )


def test_plain_output_gets_a_line_per_change_and_a_terminal_one_line() -> None:
    ticks = iter([0.0, 1.0, 2.0, 2.5])
    plain = io.StringIO()
    show = ProgressDisplay(plain, clock=lambda: next(ticks))
    for row in (job("queued", 0), job("running", 0), job("running", 50), job("running", 50)):
        show(row)
    show(job("running", 60, "paused: daily limit"))
    assert plain.getvalue().splitlines() == [
        "[........................] 0/100  0%  0.0/s",
        "[############............] 50/100  50%  50.0/s  1s left",
        "[##############..........] 60/100  60%  24.0/s  2s left  (paused: daily limit)",
    ]
    screen = Terminal()
    show = ProgressDisplay(screen, clock=iter([0.0, 1.0]).__next__)
    show(job("running", 10))
    show(job("done", 100))
    show.close()
    assert screen.getvalue().count("\r") == 2 and screen.getvalue().endswith("100%  90.0/s\n")
