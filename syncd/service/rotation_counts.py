"""A rotation's counts per member, kept between assignments.

Choosing a rotation's next member needs every seat with its count, how many assignments it
took recently, its last one, and (for a cap) when its assignments within the cap window were
made. Reading those was most of an assignment's transaction, which is serial per rotation
(bench.api's profile). So they are kept here, per rotation, with the rotation's revision,
which triggers move with every change to its seats or assignments, whichever replica or path
makes it (migration 0016). The revision comes with the rotation's row, read anyway; while it
and the row's own terms are unchanged, the kept facts are the database's.

What is kept are the facts, not the counts: "recent" and the cap window slide with the
clock, so the members are worked out from the kept instants at each ``now``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from syncd.core import rotation as rot

__all__ = ["MAX_KEPT_TIMES", "RotationCounts", "SeatFacts", "Terms", "advance", "copied", "members_at"]

MAX_KEPT_TIMES = 100_000  # assignment instants kept per rotation; a busier rotation is read each time
MAX_KEPT_ROTATIONS = 1_000  # the least recently used go first

# What the facts depend on besides the revision: the rotation's row.
Terms = tuple[int, datetime, int | None, str]  # revision, counts_since, cap_window_s, policy


@dataclass(slots=True)
class SeatFacts:
    """One seat and its assignments, as read from the store."""
    toggled_on: bool
    weight: float
    cap: int | None
    extra: float  # baseline + credit: what the count holds besides the assignments themselves
    handed: int  # assignments since the counts were reset
    last: datetime | None  # the last assignment, ever
    times: list[datetime] = field(default_factory=list)  # committed assignments, in order; shared
    added: list[datetime] = field(default_factory=list)  # a batch's own, in order, until it commits

    def recent(self, since: datetime) -> int:
        return len(self.times) - bisect.bisect_left(self.times, since) + \
            len(self.added) - bisect.bisect_left(self.added, since)

    def after(self, since: datetime) -> tuple[datetime, ...]:
        return tuple(self.times[bisect.bisect_right(self.times, since):]) + \
            tuple(self.added[bisect.bisect_right(self.added, since):])


@dataclass(slots=True)
class _Kept:
    terms: Terms
    since: datetime  # `times` holds every assignment from here on
    seats: dict[str, SeatFacts]


class RotationCounts:
    """The kept facts of rotations, for `RotationEngine`. Thread-safe.

    A batch of assignments works on copies of the seats that share their lists of instants
    with what is kept (copying those lists per batch grew with the rotation's assignments),
    and adds its own to lists of its own. Only `replace`, after the batch committed, writes
    to the shared lists; it holds the lock, as `members` does while it reads them. No batch
    can be reading them then: another batch gets them at ``after`` only after `replace`, and
    the one at ``before`` is the one replacing."""

    def __init__(self, recent_window: timedelta) -> None:
        self.recent_window = recent_window
        self._kept: dict[str, _Kept] = {}
        self._lock = threading.Lock()

    def horizon(self, now: datetime, cap_window: timedelta | None) -> datetime:
        """How far back assignment instants are needed at ``now`` and later."""
        return now - max(self.recent_window, cap_window or timedelta(0))

    def members(self, rotation_id: str, terms: Terms, now: datetime, cap_window: timedelta | None
                ) -> list[rot.Member] | None:
        """The members at ``now`` from the kept facts, if they are right for ``terms``; else
        None, and the caller reads them (and keeps them)."""
        with self._lock:
            kept = self._fresh(rotation_id, terms, now, cap_window)
            return members_at(kept.seats, now, self.recent_window, cap_window) if kept else None

    def copy(self, rotation_id: str, terms: Terms, now: datetime, cap_window: timedelta | None
             ) -> tuple[datetime, dict[str, SeatFacts]] | None:
        """The kept facts to assign with (see the class), if they are right for ``terms``."""
        with self._lock:
            kept = self._fresh(rotation_id, terms, now, cap_window)
            return (kept.since, copied(kept.seats)) if kept else None

    def keep(self, rotation_id: str, terms: Terms, since: datetime, seats: dict[str, SeatFacts]) -> None:
        """Keep ``seats``, read in the transaction that read ``terms``, with every assignment
        from ``since`` on; they are the cache's from here on."""
        if sum(len(s.times) for s in seats.values()) > MAX_KEPT_TIMES:
            return
        with self._lock:
            self._put(rotation_id, _Kept(terms, since, seats))

    def replace(self, rotation_id: str, before: Terms, after: Terms, since: datetime,
                seats: dict[str, SeatFacts], now: datetime) -> None:
        """Assignments made at ``now`` and after on the facts of ``before`` (a `copy`, or a
        fresh read) were committed and took the rotation to ``after``, with ``seats``: kept,
        unless something else is kept already (another thread may have read those of
        ``after``, or later)."""
        with self._lock:
            kept = self._kept.get(rotation_id)
            if kept is not None and kept.terms != before:
                return
            horizon = max(since, self.horizon(now, timedelta(seconds=after[2]) if after[2] else None))
            total = 0
            for seat in seats.values():
                if seat.added:
                    if not seat.times or seat.added[0] >= seat.times[-1]:
                        seat.times.extend(seat.added)
                    else:
                        for at in seat.added:
                            bisect.insort(seat.times, at)
                    seat.added = []
                del seat.times[:bisect.bisect_left(seat.times, horizon)]  # no later `now` needs these
                total += len(seat.times)
            if total > MAX_KEPT_TIMES:
                self._kept.pop(rotation_id, None)
                return
            self._put(rotation_id, _Kept(after, horizon, seats))

    def _fresh(self, rotation_id: str, terms: Terms, now: datetime, cap_window: timedelta | None) -> _Kept | None:
        kept = self._kept.get(rotation_id)
        # Kept at a later instant than ``now`` (clocks of replicas differ): instants may be missing.
        if kept is None or kept.terms != terms or self.horizon(now, cap_window) < kept.since:
            return None
        return kept

    def _put(self, rotation_id: str, kept: _Kept) -> None:
        self._kept.pop(rotation_id, None)
        while len(self._kept) >= MAX_KEPT_ROTATIONS:
            del self._kept[next(iter(self._kept))]  # the least recently kept
        self._kept[rotation_id] = kept


def copied(seats: Mapping[str, SeatFacts]) -> dict[str, SeatFacts]:
    """``seats`` to assign with: their own counts and lists of added instants, the lists of
    committed ones shared."""
    return {user_id: replace(s, added=[]) for user_id, s in seats.items()}


def advance(seats: dict[str, SeatFacts], member: str, at: datetime, counts_since: datetime,
            credits: Iterable[tuple[str, float]]) -> None:
    """``member`` was given an assignment at ``at``, and the away members ``credits``."""
    seat = seats[member]
    if at >= counts_since:  # as the store counts: from counts_since on
        seat.handed += 1
    seat.last = at if seat.last is None else max(seat.last, at)
    bisect.insort(seat.added, at)
    for user_id, share in credits:
        if user_id in seats:
            seats[user_id].extra += share


def members_at(seats: Mapping[str, SeatFacts], now: datetime, recent_window: timedelta,
               cap_window: timedelta | None) -> list[rot.Member]:
    """Every seat as a `rot.Member` at ``now``, its status not yet known (taken as available)."""
    recent_from = now - recent_window
    window_from = now - cap_window if cap_window else None
    return [rot.Member(user_id=user_id, toggled_on=s.toggled_on, status="available", count=s.handed + s.extra,
                       recent=s.recent(recent_from), last_assigned_at=s.last, weight=s.weight, cap=s.cap,
                       # a cap counts the assignments after the window's start
                       in_window=s.after(window_from) if s.cap is not None and window_from else ())
            for user_id, s in seats.items()]
