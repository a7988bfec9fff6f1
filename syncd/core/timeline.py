"""A user's timeline: Available / Away over a span, as contiguous intervals.

Computed by the status rules themselves (`syncd.core.availability`): the span is cut at every
instant where ``auto`` may change (block boundaries, the midnights around days off, working
hours), each piece is described by ``auto_status`` at its start, and equal neighbours are
joined. A manual change in force holds, as in the live status, until the next automatic
transition. So the timeline at an instant is what ``status --at`` says there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from syncd.core.availability import (
    AWAY,
    Period,
    Status,
    StatusPolicy,
    StatusState,
    auto_status,
    boundaries,
    day_off_at,
    in_working_hours,
)
from syncd.core.errors import UserInputError
from syncd.core.time import format_utc, within_reach

__all__ = ["MAX_SPAN", "Interval", "check_span", "timeline"]

# At most this much per request: a span costs time in proportion to its boundaries.
MAX_SPAN = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Interval:
    """``[start, end)`` with one status and one reason: ``ooo_started`` (``block`` names the
    block), ``holiday`` (``holiday`` names it), ``day_off``, ``working_hours`` (outside them
    when away, inside when available), ``manual``, or None (available, nothing in the way)."""

    start: datetime
    end: datetime
    status: Status
    reason: str | None
    block: str | None = None
    holiday: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": format_utc(self.start), "end": format_utc(self.end), "status": self.status,
                               "reason": self.reason}
        if self.block is not None:
            out["block"] = self.block
        if self.holiday is not None:
            out["holiday"] = self.holiday
        return out


def check_span(start: datetime, end: datetime) -> None:
    within_reach(start, "from")
    within_reach(end, "to")
    if end <= start:
        raise UserInputError(f"'to' ({format_utc(end)}) must be after 'from' ({format_utc(start)})")
    if end - start > MAX_SPAN:
        raise UserInputError(f"a timeline covers at most {MAX_SPAN.days} days; ask for "
                             f"{format_utc(start)} to {format_utc(start + MAX_SPAN)} and then the next part")


def _describe(periods: Sequence[Period], policy: StatusPolicy, at: datetime) -> tuple[Status, str | None,
                                                                                      str | None, str | None]:
    status, reason, block = auto_status(periods, policy, at)
    if status == AWAY:
        day_off = day_off_at(policy, at) if reason == "holiday" else None
        return status, reason, block, day_off.name if day_off else None
    if policy.uses_hours:
        assert policy.working_hours is not None
        if in_working_hours(policy.working_hours, ZoneInfo(policy.timezone), at):
            return status, "working_hours", None, None
    return status, None, None, None


def _manual_until(state: StatusState, periods: Sequence[Period], policy: StatusPolicy,
                  until: datetime) -> datetime | None:
    """When the manual change in ``state`` ends: the first automatic transition after it
    was last evaluated, if one comes before ``until``."""
    for at in boundaries(periods, policy, state.evaluated_at, until):
        if auto_status(periods, policy, at)[0] != state.auto:
            return at
    return None


def timeline(periods: Sequence[Period], policy: StatusPolicy, start: datetime, end: datetime,
             state: StatusState | None = None) -> list[Interval]:
    """The intervals covering ``[start, end)`` in order. ``state`` is the user's status state
    brought up to now: a manual change in it is shown until the next automatic transition."""
    check_span(start, end)
    cuts = [start, *(t for t in boundaries(periods, policy, start, end) if t < end), end]
    manual: tuple[datetime, datetime, Status] | None = None
    # A manual change that agrees with the rules changes nothing until it ends with the next transition.
    if state is not None and state.manual is not None and state.manual != state.auto:
        held_from = state.manual_at or state.evaluated_at
        manual_end = _manual_until(state, periods, policy, end) or end
        if held_from < end and manual_end > start:
            manual = (max(held_from, start), manual_end, state.manual)
            cuts.extend(t for t in (manual[0], manual[1]) if start < t < end)
            cuts = sorted(set(cuts))
    out: list[Interval] = []
    for low, high in zip(cuts, cuts[1:], strict=False):
        if manual is not None and manual[0] <= low < manual[1]:
            piece = Interval(low, high, manual[2], "manual")
        else:
            status, reason, block, holiday = _describe(periods, policy, low)
            piece = Interval(low, high, status, reason, block, holiday)
        last = out[-1] if out else None
        if last is not None and (last.status, last.reason, last.block, last.holiday) == \
                (piece.status, piece.reason, piece.block, piece.holiday):
            out[-1] = Interval(last.start, high, last.status, last.reason, last.block, last.holiday)
        else:
            out.append(piece)
    return out
