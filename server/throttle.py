"""A limit on wrong tokens per client address, so that a token typed by a person cannot be guessed at network speed.

Only presented credentials count (a login form, a ``?token=`` link, a Bearer header): a browser already holding the
cookie is never slowed, so someone guessing from a shared proxy address cannot lock out the team that is logged in.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable

#: wrong tokens from one address within WINDOW seconds before its next checks are refused
LIMIT = 10
WINDOW = 60.0
#: addresses remembered at most; beyond it the ones whose failures have all expired are forgotten first
MAX_ADDRESSES = 4096


class Throttle:
    """Counts failed token checks per address over a sliding window."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> int:
        """Seconds until ``address`` may present a token again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            if len(failures) < self.limit:
                return 0
            return max(1, math.ceil(failures[-self.limit] + self.window - now))

    def failed(self, address: str) -> None:
        """Record one wrong token from ``address``."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            failures.append(now)
            self._failures[address] = failures
            if len(self._failures) > MAX_ADDRESSES:
                self._forget(now)

    def _forget(self, now: float) -> None:
        for address in [a for a, f in self._failures.items() if not f or f[-1] <= now - self.window]:
            del self._failures[address]
        while len(self._failures) > MAX_ADDRESSES:  # all recent: the oldest go
            del self._failures[min(self._failures, key=lambda a: self._failures[a][-1])]

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
