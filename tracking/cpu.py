"""How much CPU a process's main thread wants, from /proc/<pid>/schedstat (Linux): the time it
ran and the time it was ready but waited for a CPU. Where that cannot be read, the process
looks idle."""

from __future__ import annotations

import time
from pathlib import Path


class ProcessCpu:
    """`mark()`, then `since_mark()`: the share of one CPU the process's main thread used or
    waited for in between (1.0: it would have kept a CPU busy all along)."""

    def __init__(self, pid: int) -> None:
        self._schedstat = Path(f"/proc/{pid}/schedstat")
        self._marked: tuple[int, int] | None = None

    def mark(self) -> None:
        self._marked = self._read()

    def since_mark(self) -> float:
        now = self._read()
        if self._marked is None or now is None:
            return 0.0
        wanted, elapsed = now[0] - self._marked[0], now[1] - self._marked[1]
        return wanted / elapsed if elapsed > 0 else 0.0

    def _read(self) -> tuple[int, int] | None:
        """(ns run or waited for a CPU, now in ns)."""
        try:
            ran, waited, _ = self._schedstat.read_text().split()
        except (OSError, ValueError):
            return None
        return int(ran) + int(waited), time.monotonic_ns()
