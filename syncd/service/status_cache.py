"""Answers to "what is this user's status now", kept while nothing can have changed them.

A status read is a function of the database and the clock. An answer computed at ``t`` stays
right while (1) nothing has been committed to the database since the read began, and (2) no
instant at which the user's status may change by time alone (a block's start or end, a
working-hours or day-off boundary: `availability.next_boundary`) lies in ``(t, now]``. The
first is told by the database's change stamp (`Database.change_stamp`), which moves on any
commit, by any connection or process, to what a status is read from (users, their status and
blocks); the second by the instant kept with each answer. While the database gives no stamp
nothing is kept.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

__all__ = ["StatusCache"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    computed_at: datetime
    valid_until: datetime
    value: T


class StatusCache(Generic[T]):
    """Answers per user, all dropped when the change stamp moves; at most ``capacity`` kept
    (the oldest go first)."""

    def __init__(self, capacity: int = 50_000) -> None:
        self.capacity = capacity
        self._stamp: int | None = None
        self._answers: dict[str, _Answer[T]] = {}
        self._lock = threading.Lock()

    def get(self, user_id: str, stamp: int | None, now: datetime) -> T | None:
        """The answer for ``user_id`` at ``now``, if one is kept and still right."""
        if stamp is None:
            return None
        with self._lock:
            if stamp != self._stamp:
                self._answers.clear()  # something was committed: any answer may be wrong
                self._stamp = stamp
                return None
            answer = self._answers.get(user_id)
        if answer is None or not answer.computed_at <= now < answer.valid_until:
            return None
        return answer.value

    def put(self, user_id: str, stamp: int | None, computed_at: datetime, valid_until: datetime, value: T) -> None:
        """Keep ``value``, read from the database in a transaction that began after ``stamp``
        was taken, and right from ``computed_at`` until ``valid_until``."""
        if stamp is None or valid_until <= computed_at:
            return
        with self._lock:
            if self._stamp is None or stamp > self._stamp:
                self._answers.clear()
                self._stamp = stamp
            elif stamp < self._stamp:
                return  # read before a change this cache has already seen
            if user_id not in self._answers and len(self._answers) >= self.capacity:
                del self._answers[next(iter(self._answers))]
            self._answers[user_id] = _Answer(computed_at, valid_until, value)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
