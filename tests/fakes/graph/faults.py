"""Injected faults (``fail_next``, ``slow_next``, ``drop_next``, ``fault_rate``) and the request log's counters;
the server takes the faults from the queues as requests come in."""

from __future__ import annotations

from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.http_support import Fault, count_requests


class FaultsMixin(FakeGraphBase):
    """Test hooks that queue faults and read the request log."""

    def fail_next(self, n: int, status: int, code: str, retry_after: float | None = None, *,
                  message: str | None = None, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` matching requests fail with ``status``/``code``.

        ``where``: ``request`` = top-level Graph requests (a $batch envelope fails whole),
        ``part`` = parts of a $batch only, ``any`` = plain requests or batch parts (never the
        envelope), ``token`` = the token endpoint (``code`` is the OAuth ``error``).
        """
        self._check_where(where, ("request", "part", "any", "token"))
        self._faults.add_failures(n, status, code, message or f"Injected {status} {code}", retry_after,
                                  where=where, path_contains=path_contains)

    def fault_rate(self, rate: float, seed: int = 0) -> None:
        """A share ``rate`` of Graph requests (and batch parts) fail at random from now on: 429
        with Retry-After, 503, 500, or a dropped connection. ``0`` stops it."""
        self._faults.set_random(rate, (
            Fault(status=429, code="TooManyRequests", message="Too many requests", retry_after=1),
            Fault(status=503, code="ServiceUnavailable", message="Service unavailable", retry_after=1),
            Fault(status=500, code="generalException", message="General exception"),
        ), seed=seed)

    def slow_next(self, n: int, seconds: float, *, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` top-level requests (``request``) or token requests (``token``) take ``seconds`` longer."""
        self._check_where(where, ("request", "token"))
        self._faults.add_delays(n, seconds, where=where, path_contains=path_contains)

    def drop_next(self, n: int, *, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` top-level (or token) requests get the connection closed without an answer."""
        self._check_where(where, ("request", "token"))
        self._faults.add_drops(n, where=where, path_contains=path_contains)

    @staticmethod
    def _check_where(where: str, allowed: tuple[str, ...]) -> None:
        if where not in allowed:
            raise ValueError(f"where must be one of {allowed}, not {where!r}")

    def request_count(self, method: str | None = None, path_contains: str = "", *, include_batch_parts: bool = False,
                      only_batch_parts: bool = False, kind: str = "graph") -> int:
        """Count logged requests. ``kind="graph"`` counts top-level Graph requests including $batch
        envelopes; batch parts are added with ``include_batch_parts`` or counted alone with
        ``only_batch_parts``. ``kind`` may also be ``token`` or ``discovery``."""
        with self._lock:
            if kind == "graph":
                return count_requests((r for r in self.requests if r.kind in ("graph", "batch")), method,
                                      path_contains, include_batch_parts=include_batch_parts,
                                      only_batch_parts=only_batch_parts)
            return count_requests((r for r in self.requests if r.kind == kind), method, path_contains,
                                  include_batch_parts=True)

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "graph_requests": sum(1 for r in self.requests if r.kind in ("graph", "batch") and not r.in_batch),
                "batch_requests": sum(1 for r in self.requests if r.kind == "batch"),
                "batch_parts": sum(1 for r in self.requests if r.in_batch),
                "token_requests": sum(1 for r in self.requests if r.kind == "token"),
                "discovery_requests": sum(1 for r in self.requests if r.kind == "discovery"),
                "dropped": sum(1 for r in self.requests if r.status == 0),
            }

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()
