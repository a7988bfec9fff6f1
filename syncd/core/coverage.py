"""Team coverage: how many of a team's members are available over a span, and where the
team falls below (or gets back to) its minimum.

Pure: the caller passes each member's timeline (contiguous intervals with a status, as the
status rules compute them) and gets back the team's own contiguous intervals. An interval
ends wherever the set of available members changes, so two intervals side by side always
differ in who is available.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

__all__ = ["COVERAGE_LOW", "COVERAGE_RESTORED", "CoverageCrossing", "CoverageInterval", "MemberSpan",
           "coverage", "crossings"]

CrossingKind = Literal["coverage.low", "coverage.restored"]
COVERAGE_LOW: CrossingKind = "coverage.low"
COVERAGE_RESTORED: CrossingKind = "coverage.restored"


class MemberSpan(Protocol):
    """One interval of a member's timeline."""

    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def status(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CoverageInterval:
    start: datetime
    end: datetime
    members_available: tuple[str, ...]  # sorted
    min_available: int

    @property
    def available(self) -> int:
        return len(self.members_available)

    @property
    def below_min(self) -> bool:
        return self.available < self.min_available


@dataclass(frozen=True, slots=True)
class CoverageCrossing:
    """The instant a team falls below its minimum (``coverage.low``) or gets back to it."""

    kind: CrossingKind
    at: datetime
    available: int
    min_available: int


def coverage(timelines: Mapping[str, Sequence[MemberSpan]], start: datetime, end: datetime,
             min_available: int) -> list[CoverageInterval]:
    """The team's intervals covering ``[start, end)``. A member counts as available where
    their timeline says ``available``; where it says nothing (outside what was computed) they
    do not count."""
    if end <= start:
        return []
    # A sweep over the instants where someone's availability begins or ends: +1 / -1 per
    # member, so overlapping or touching intervals of one member count once.
    changes: dict[datetime, dict[str, int]] = {}
    for member, spans in timelines.items():
        for span in spans:
            if span.status != "available":
                continue
            low, high = max(span.start, start), min(span.end, end)
            if low >= high:
                continue
            changes.setdefault(low, {}).setdefault(member, 0)
            changes[low][member] += 1
            changes.setdefault(high, {}).setdefault(member, 0)
            changes[high][member] -= 1
    depth: dict[str, int] = {}
    out: list[CoverageInterval] = []
    cursor = start
    present: tuple[str, ...] = ()
    for at in sorted(changes):
        if at > cursor:
            _extend(out, cursor, at, present, min_available)
            cursor = at
        for member, delta in changes[at].items():
            depth[member] = depth.get(member, 0) + delta
        present = tuple(sorted(m for m, d in depth.items() if d > 0))
    if cursor < end:
        _extend(out, cursor, end, present, min_available)
    return out


def _extend(out: list[CoverageInterval], start: datetime, end: datetime, members: tuple[str, ...],
            min_available: int) -> None:
    if out and out[-1].members_available == members and out[-1].end == start:
        out[-1] = CoverageInterval(out[-1].start, end, members, min_available)
    else:
        out.append(CoverageInterval(start, end, members, min_available))


def crossings(intervals: Sequence[CoverageInterval], *, below_at_start: bool | None = None) -> list[CoverageCrossing]:
    """Where the team crosses its minimum, in order. ``below_at_start`` is what was last
    announced before the first interval (None: take the first interval as known, not a
    crossing)."""
    out: list[CoverageCrossing] = []
    below = below_at_start
    for interval in intervals:
        if below is not None and interval.below_min != below:
            kind = COVERAGE_LOW if interval.below_min else COVERAGE_RESTORED
            out.append(CoverageCrossing(kind, interval.start, interval.available, interval.min_available))
        below = interval.below_min
    return out
