"""Request budgets for providers with per-minute quotas (Google, Microsoft Graph).

A provider's quota is a number of requests per minute for the whole project and another,
smaller one per user. `Quota` keeps one token bucket for the project and one per user and
takes a token from both before every request (a batch part counts as one request, as the
providers count them). A caller that would have to wait longer than ``max_wait`` gets
`RateLimited` with the wait as ``retry_after`` instead of holding a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from syncd.core.errors import RateLimited

__all__ = ["Quota", "TokenBucket"]


class TokenBucket:
    """``per_minute`` tokens at most, refilled continuously at ``per_minute / 60`` a second."""

    def __init__(self, per_minute: float, now: float) -> None:
        if per_minute <= 0:
            raise ValueError("a quota must allow at least one request a minute")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.at = now

    def _refill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def wait_for(self, n: float, now: float) -> float:
        """Seconds until ``n`` tokens are there (0 when they are there now)."""
        self._refill(now)
        if n > self.capacity:
            raise ValueError(f"{n:g} requests at once exceed the quota of {self.capacity:g} a minute")
        missing = n - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, n: float) -> None:
        self.tokens -= n


class Quota:
    def __init__(self, project_per_minute: float, user_per_minute: float, *, max_wait: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.clock = clock
        self.sleep = sleep
        self.max_wait = max_wait
        self.user_per_minute = user_per_minute
        self._lock = threading.Lock()
        self._project = TokenBucket(project_per_minute, clock())
        self._users: dict[str, TokenBucket] = {}

    def acquire(self, user: str, n: int = 1) -> None:
        """Take ``n`` requests from the project's and ``user``'s budgets, waiting briefly if needed."""
        while True:
            with self._lock:
                now = self.clock()
                bucket = self._users.get(user)
                if bucket is None:
                    bucket = self._users[user] = TokenBucket(self.user_per_minute, now)
                wait = max(self._project.wait_for(n, now), bucket.wait_for(n, now))
                if wait <= 0:
                    self._project.take(n)
                    bucket.take(n)
                    return
            if wait > self.max_wait:
                raise RateLimited(f"request quota used up for now (next request in {wait:.1f}s)", retry_after=wait)
            self.sleep(wait)
