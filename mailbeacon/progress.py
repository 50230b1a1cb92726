"""How `mailbeacon cmd` shows a job it waits for: a bar with count, rate and time left on a
terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO


def progress_line(done: int, total: int | None, rate: float, width: int = 24) -> str:
    """`[#####...................] 62/300  21%  31.0/s  8s left`; without a total, the count."""
    if not total:
        return f"{done} done  {rate:.1f}/s"
    share = min(done / total, 1.0)
    filled = round(share * width)
    left = f"  {(total - done) / rate:.0f}s left" if rate > 0 and done < total else ""
    bar = "#" * filled + "." * (width - filled)
    return f"[{bar}] {done}/{total}  {share:.0%}  {rate:.1f}/s{left}"


class ProgressDisplay:
    """Called with the job's row each time it is read; shows what changed. The rate counts
    from when watching began, so a resumed job's earlier emails do not inflate it."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._terminal = stream.isatty()
        self._start: tuple[float, int] | None = None
        self._shown_done = -1
        self._width = 0

    def __call__(self, row: Any) -> None:
        if row.status != "running" and not (row.status == "done" and row.progress_total):
            return
        now, done = self._clock(), row.progress_done
        if self._start is None:
            self._start = (now, done)
        elapsed = now - self._start[0]
        rate = (done - self._start[1]) / elapsed if elapsed > 0 else 0.0
        line = progress_line(done, row.progress_total, rate)
        if row.progress_note:
            line += f"  ({row.progress_note})"
        if self._terminal:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        elif done != self._shown_done:
            self._stream.write(line + "\n")
        self._shown_done = done
        self._stream.flush()

    def close(self) -> None:
        if self._terminal and self._width:
            self._stream.write("\n")
            self._stream.flush()
