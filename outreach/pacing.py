"""Keeping under a provider's sending rate: at most so many sends in any window of time."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from store.clock import Clock


class Pacer:
    """At most `limit` events in any `window`: wait() sleeps until one more fits."""

    def __init__(
        self, limit: int, window: timedelta, clock: Clock, sleep: Callable[[float], None]
    ) -> None:
        self._limit, self._window, self._clock, self._sleep = limit, window, clock, sleep
        self._times: deque[datetime] = deque()

    def wait(self) -> None:
        now = self._clock()
        while self._times and now - self._times[0] >= self._window:
            self._times.popleft()
        if len(self._times) >= self._limit:
            self._sleep((self._times.popleft() + self._window - now).total_seconds())
            now = self._clock()
        self._times.append(now)
