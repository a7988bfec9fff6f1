"""A sink: where status events go (a webhook, stdout, a message broker).

A sink takes one event (a JSON-ready mapping carrying an ``id`` that is its idempotency key)
and either delivers it, or raises:

    TransientError            try again later (5xx, 408, 429, timeouts, refused connections)
    └── DeliveryThrottled     also a ``RateLimited``: ``retry_after`` seconds if the receiver said
    PermanentDeliveryError    the receiver refused this event (4xx); retrying will not help

The outbox, per-user ordering, retry scheduling and dead-lettering live in the publisher;
`retry_delay` is the backoff it uses."""

from __future__ import annotations

import abc
import math
import random
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from syncd.core.errors import RateLimited, SyncdError, TransientError

__all__ = ['DeliveryThrottled', 'PermanentDeliveryError', 'Sink', 'retry_delay']

class PermanentDeliveryError(SyncdError):
    """The receiver refused the event (a 4xx other than 408/429): it will not get better."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryThrottled(RateLimited, TransientError):
    """429, or 503 with Retry-After: both a ``TransientError`` and a ``RateLimited``."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, retry_after)
        self.status = status


def retry_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential with full jitter.

    Uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]``. Full jitter spreads the retries of
    many events that failed together (a receiver outage) instead of sending them in waves.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be >= 0")
    try:
        ceiling = min(cap, math.ldexp(base, attempt - 1))
    except OverflowError:  # attempt in the thousands: long past the cap
        ceiling = cap
    return rng.uniform(0.0, ceiling)


class Sink(abc.ABC):
    """Where status changes go. Implementations are safe to call from several threads."""

    name: str
    # How many users' events `deliver_all` sends at once (each user's still one by one).
    concurrency: int = 1

    @abc.abstractmethod
    def deliver(self, event: Mapping[str, Any]) -> None:
        """Deliver one event, or raise ``TransientError`` / ``PermanentDeliveryError``.

        Delivery is at least once: the same event (same ``id``) may be delivered again after a
        failure that happened after the receiver accepted it.
        """

    def deliver_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        """Deliver several users' events: each queue in order, stopping at its first failure.
        Returns, per queue, how many were delivered and the error that stopped it. The
        default goes one event at a time; sinks that can send side by side do."""
        outcomes: list[tuple[int, SyncdError | None]] = []
        for queue in queues:
            sent, failure = 0, None
            for event in queue:
                try:
                    self.deliver(event)
                except SyncdError as exc:
                    failure = exc
                    break
                sent += 1
            outcomes.append((sent, failure))
        return outcomes

    def prepare(self, events: Sequence[Mapping[str, Any]], at: float) -> None:  # noqa: B027 - optional hook
        """Events that will be delivered at ``at`` (Unix seconds), told ahead so that a sink can
        encode them beforehand. Delivery must not depend on it; the default does nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sinks hold nothing open
        """Release what the sink holds; the default holds nothing."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"




