"""Injected faults on API and batch requests (never ``/token``): ``fail_next``, ``slow_next``, ``drop_next``,
``fault_rate``, the global ``latency``; and the request log's counters."""

from __future__ import annotations

from tests.fakes.google_calendar.base import FakeGoogleBase
from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.http_support import Fault, count_requests


class FaultsMixin(FakeGoogleBase):
    """Test hooks that queue faults and read the request log; the server takes the faults per request."""

    # ------------------------------------------------------------------ test hooks: faults/log
    def fail_next(self, n: int, status: int, reason: str, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """The next ``n`` HTTP requests to the API (not /token) fail with ``status``/``reason``."""
        self._faults.add_failures(n, status, reason, message or reason, retry_after)

    def fault_rate(self, rate: float, seed: int = 0) -> None:
        """A share ``rate`` of API requests fail at random from now on: 429 and 403 rate limits
        (with Retry-After), 500, 503, or a dropped connection. ``0`` stops it."""
        self._faults.set_random(rate, (
            Fault(status=429, code="rateLimitExceeded", message="Rate Limit Exceeded", retry_after=1),
            Fault(status=403, code="userRateLimitExceeded", message="User Rate Limit Exceeded", retry_after=1),
            Fault(status=500, code="backendError", message="Backend Error"),
            Fault(status=503, code="backendError", message="Backend Error"),
        ), seed=seed)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next ``n`` HTTP requests to the API (not /token) wait ``seconds`` before being handled."""
        self._faults.add_delays(n, seconds)

    def drop_next(self, n: int) -> None:
        """The next ``n`` HTTP requests to the API (not /token) get no response: the connection is closed.

        A dropped request does not use up a pending ``fail_next`` fault.
        """
        self._faults.add_drops(n)

    def set_latency(self, seconds: float) -> None:
        """Every API and /token request waits ``seconds`` (the /_fake/ control calls never do)."""
        self.latency = seconds

    def request_count(self, method: str | None = None, path_contains: str = "", *,
                      include_batch_parts: bool = False) -> int:
        with self._lock:
            return count_requests(self.requests, method, path_contains, include_batch_parts=include_batch_parts)

    def request_counts(self) -> dict[str, int]:
        """Top-level API requests (a batch counts once, dropped ones too), batch parts, and /token calls."""
        with self._lock:
            parts = sum(1 for r in self.requests if r.in_batch)
            return {"requests": len(self.requests) - parts, "batch_parts": parts, "token": len(self.token_requests)}

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()

    def _take_faults(self, path: str) -> tuple[float, bool, _Response | None]:
        """For one incoming API request: (delay, drop it?, injected error response)."""
        slow = self._faults.take_delay(path)
        delay = slow.seconds if slow else 0.0
        if self._faults.take_drop(path):
            return delay, True, None
        fault = self._faults.take_failure(path)
        if fault is None:
            return delay, False, None
        err = ApiError(fault.status, fault.code, fault.message)
        return delay, False, _Response(fault.status, err.body(), fault.retry_after_headers())

    def _pause(self, seconds: float) -> None:
        """An injected wait that ``stop()`` cuts short, so no handler outlives the fake for long."""
        self._closing.wait(seconds)
