"""How busy a process keeps its CPU, from /proc/<pid>/stat (Linux). Where that cannot be read,
the process looks idle."""

from __future__ import annotations

import os
import time
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ProcessCpu:
    """`mark()`, then `since_mark()`: the share of one CPU the process used in between (1.0:
    all of one CPU, the most a single event loop can use)."""

    def __init__(self, pid: int) -> None:
        self._stat = Path(f"/proc/{pid}/stat")
        self._marked: tuple[float, float] | None = None

    def mark(self) -> None:
        self._marked = self._read()

    def since_mark(self) -> float:
        now = self._read()
        if self._marked is None or now is None:
            return 0.0
        used, elapsed = now[0] - self._marked[0], now[1] - self._marked[1]
        return used / elapsed if elapsed > 0 else 0.0

    def _read(self) -> tuple[float, float] | None:
        """(CPU seconds used, now)."""
        try:
            stat = self._stat.read_text()
        except OSError:
            return None
        # After the command's closing parenthesis: state, ppid, ... utime and stime are the
        # 12th and 13th fields from there.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND, time.monotonic()
