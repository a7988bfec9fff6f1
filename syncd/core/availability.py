"""Available / Away: the status rules as pure functions.

Nothing here reads a clock or a database: the caller passes the blocks, the working hours,
the last known `StatusState` and `now`, and gets back the new state and the `StatusChange`s
to publish, in order, each with the instant it truly took effect.

The model: ``auto(t)`` is what the blocks, the days off (public holidays, company days off)
and optionally working hours say at ``t``, in that order of precedence. An *automatic
transition* is an instant where ``auto`` changes value — at a block boundary, at the local
midnight that starts or ends a day off, at a working-hours boundary, or "now" when an edit
makes a block start or stop covering the present. A manual change holds until the next
automatic transition; the effective status is whichever of the two happened last. So:
manual change > OOO block > holiday / day off > working hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from syncd.core.daysoff import DayOff, DaysOff
from syncd.core.hours import WorkingHours
from syncd.core.time import local_midnight

__all__ = [
    "AWAY",
    "AVAILABLE",
    "Evaluation",
    "HOURS_HORIZON",
    "Period",
    "Status",
    "StatusChange",
    "StatusPolicy",
    "StatusState",
    "WorkingHours",
    "advance",
    "auto_status",
    "covering",
    "day_off_at",
    "first_seen_away",
    "initial_state",
    "next_change",
    "set_manual",
]

Status = Literal["available", "away"]
AVAILABLE: Status = "available"
AWAY: Status = "away"
Reason = Literal["ooo_started", "ooo_ended", "ooo_ended_early", "manual", "working_hours", "holiday", "day_off",
                 "initial"]
DAY_OFF_REASONS = ("holiday", "day_off")


# How far ahead `next_change` looks when only working hours or days off could change the status.
HOURS_HORIZON = timedelta(days=400)


@dataclass(frozen=True, slots=True)
class Period:
    """One live OOO block as the status rules see it."""

    block_id: str
    start: datetime
    end: datetime
    title: str = "Out of office"


@dataclass(frozen=True, slots=True)
class StatusPolicy:
    """A user's rules besides their blocks."""

    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    away_outside_working_hours: bool = False
    days_off: DaysOff = DaysOff()  # public holidays and company days off: away all (local) day

    @property
    def uses_hours(self) -> bool:
        return self.away_outside_working_hours and bool(self.working_hours)

    @property
    def uses_days_off(self) -> bool:
        return bool(self.days_off)

    @property
    def recurs(self) -> bool:
        """Whether `auto` changes without end (hours each week, holidays each year)."""
        return self.uses_hours or self.uses_days_off


@dataclass(frozen=True, slots=True)
class StatusState:
    """What has been decided for a user up to ``evaluated_at``."""

    auto: Status
    auto_reason: Reason
    effective: Status
    reason: Reason
    since: datetime  # when `effective` last changed
    evaluated_at: datetime
    block_id: str | None = None  # the block behind `auto` being away, if any
    manual: Status | None = None  # a manual change still in force
    manual_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: Status
    previous: Status
    reason: Reason
    effective_at: datetime
    block_id: str | None
    holiday: str | None = None  # the public holiday that started or ended, by name


@dataclass(frozen=True, slots=True)
class Evaluation:
    state: StatusState
    changes: list[StatusChange]


def covering(periods: Iterable[Period], at: datetime) -> list[Period]:
    """Blocks covering ``at``, the one that ends last first (it says "away until")."""
    hits = [p for p in periods if p.start <= at < p.end]
    return sorted(hits, key=lambda p: (p.end, p.block_id), reverse=True)


def in_working_hours(hours: WorkingHours, tz: ZoneInfo, at: datetime) -> bool:
    local = at.astimezone(tz)
    wall = local.time().replace(tzinfo=None)
    return any(start <= wall and (end == time.max or wall < end) for start, end in hours.get(local.weekday(), ()))


def day_off_at(policy: StatusPolicy, at: datetime) -> DayOff | None:
    """The day off (holiday or company day off) that ``at`` falls on in the policy's zone."""
    if not policy.uses_days_off:
        return None
    return policy.days_off.on(at.astimezone(ZoneInfo(policy.timezone)).date())


def auto_status(periods: Sequence[Period], policy: StatusPolicy, at: datetime) -> tuple[Status, Reason, str | None]:
    """``auto(at)``: away while a block covers ``at``, on a day off, or (if enabled) outside
    working hours, in that order of precedence."""
    hits = covering(periods, at)
    if hits:
        return AWAY, "ooo_started", hits[0].block_id
    day_off = day_off_at(policy, at)
    if day_off is not None:
        return AWAY, day_off.kind, None
    if policy.uses_hours:
        assert policy.working_hours is not None
        if not in_working_hours(policy.working_hours, ZoneInfo(policy.timezone), at):
            return AWAY, "working_hours", None
    return AVAILABLE, "ooo_ended", None


def _offset_change(tz: ZoneInfo, day: date) -> datetime | None:
    """The UTC instant the zone's offset changes during ``day``, if it does."""
    low = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    high = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    if low.astimezone(tz).utcoffset() == high.astimezone(tz).utcoffset():
        return None
    before = low.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _hour_boundaries(policy: StatusPolicy, after: datetime, until: datetime) -> Iterator[datetime]:
    assert policy.working_hours is not None
    tz = ZoneInfo(policy.timezone)
    day: date = after.astimezone(tz).date() - timedelta(days=1)
    last = until.astimezone(tz).date() + timedelta(days=1)
    while day <= last:
        # Wall times in a DST gap or fold map to two instants (fold 0 and 1); the jump itself
        # is a boundary too, since the wall clock can skip into or back out of working hours.
        ranges = policy.working_hours.get(day.weekday(), ())
        jump = _offset_change(tz, day) if ranges else None
        if jump is not None:
            yield jump
        for start, end in ranges:
            for wall in (start, end):
                if wall == time.max:
                    yield datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
                    continue
                for fold in (0, 1):
                    yield datetime.combine(day, wall, tzinfo=tz).replace(fold=fold).astimezone(UTC)
        day += timedelta(days=1)


def _day_off_boundaries(policy: StatusPolicy, after: datetime, until: datetime) -> Iterator[datetime]:
    """The local midnights that start and end each day off around ``(after, until]``."""
    tz = ZoneInfo(policy.timezone)
    first = after.astimezone(tz).date() - timedelta(days=1)
    last = until.astimezone(tz).date() + timedelta(days=1)
    for day_off in policy.days_off.between(first, last):
        yield local_midnight(day_off.day, tz)
        yield local_midnight(day_off.day + timedelta(days=1), tz)


def boundaries(periods: Sequence[Period], policy: StatusPolicy, after: datetime, until: datetime) -> list[datetime]:
    """Every instant in ``(after, until]`` where ``auto`` may change, in order."""
    points = {p.start for p in periods} | {p.end for p in periods}
    if policy.uses_hours:
        points.update(_hour_boundaries(policy, after, until))
    if policy.uses_days_off:
        points.update(_day_off_boundaries(policy, after, until))
    return sorted(t for t in points if after < t <= until)


def initial_state(periods: Sequence[Period], policy: StatusPolicy, now: datetime) -> StatusState:
    status, reason, block = auto_status(periods, policy, now)
    if status == AVAILABLE:
        reason = "initial"
    return StatusState(status, reason, status, reason, now, now, block)


def first_seen_away(state: StatusState, policy: StatusPolicy) -> StatusChange:
    """The change announcing a user who is away when syncd first sees them (the helpdesk
    assumes available until told otherwise)."""
    day_off = day_off_at(policy, state.evaluated_at) if state.reason == "holiday" else None
    return StatusChange(AWAY, AVAILABLE, state.reason, state.evaluated_at, state.block_id,
                        day_off.name if day_off else None)


def _transition(state: StatusState, status: Status, reason: Reason, block: str | None, at: datetime,
                policy: StatusPolicy) -> tuple[StatusState, StatusChange | None]:
    """An automatic transition: ``auto`` becomes ``status``; any manual change ends."""
    if status == AVAILABLE and state.auto_reason in ("working_hours", *DAY_OFF_REASONS):
        reason = state.auto_reason  # back from outside working hours, or from a day off
    change = None
    since = state.since
    if status != state.effective:
        # An "ended" change names the block (or the holiday) that ended, so the helpdesk can say which.
        holiday = None
        if reason == "holiday":
            day_off = day_off_at(policy, at if status == AWAY else at - timedelta(microseconds=1))
            holiday = day_off.name if day_off is not None else None
        change = StatusChange(status, state.effective, reason, at, block if status == AWAY else state.block_id,
                              holiday)
        since = at
    new = StatusState(status, reason, status, reason, since, at, block)
    return new, change


def _steps(state: StatusState, periods: Sequence[Period], policy: StatusPolicy, points: Iterable[datetime],
           *, ended_early_at: datetime | None = None) -> Iterator[tuple[StatusState, StatusChange | None]]:
    """Evaluate ``auto`` at each instant in order, yielding the state and any change it causes."""
    for at in points:
        status, reason, block = auto_status(periods, policy, at)
        if status != state.auto:
            if at == ended_early_at and status == AVAILABLE:
                reason = "ooo_ended_early"
            state, change = _transition(state, status, reason, block, at, policy)
            yield state, change
        elif status == AWAY and (block, reason) != (state.block_id, state.auto_reason):
            # Still away, for another block or now for working hours: same status, new cause.
            state = replace(state, block_id=block, auto_reason=reason,
                            reason=reason if state.manual is None else state.reason)
            yield state, None


def advance(state: StatusState, periods: Sequence[Period], policy: StatusPolicy, now: datetime,
            *, ended_early: bool = False) -> Evaluation:
    """Carry ``state`` forward to ``now``, returning every change on the way.

    Boundaries between ``state.evaluated_at`` and ``now`` (a restart after downtime, or a
    future instant the helpdesk asks about) each produce their change at their true time.
    Then, if ``auto(now)`` still differs — a block was created, moved, deleted or ended
    early — that is a transition at ``now`` (``ended_early`` names the reason).
    """
    changes: list[StatusChange] = []
    if now < state.evaluated_at:
        return Evaluation(state, changes)
    walk_until = now - timedelta(microseconds=1) if ended_early else now
    points = [*boundaries(periods, policy, state.evaluated_at, walk_until), now]
    final = state
    for step, change in _steps(state, periods, policy, points, ended_early_at=now if ended_early else None):
        final = step
        if change:
            changes.append(change)
    return Evaluation(replace(final, evaluated_at=now), changes)


def set_manual(state: StatusState, status: Status, now: datetime) -> Evaluation:
    """A manual change by the user or a super admin; holds until the next automatic transition.

    The caller has already turned "available while OOO" into ending the blocks early, so a
    manual ``available`` here never hides a covering block.
    """
    if status == state.effective:
        return Evaluation(replace(state, manual=status, manual_at=now, evaluated_at=max(now, state.evaluated_at)), [])
    change = StatusChange(status, state.effective, "manual", now, state.block_id if status == AWAY else None)
    new = replace(state, effective=status, reason="manual", since=now, manual=status, manual_at=now,
                  evaluated_at=max(now, state.evaluated_at))
    return Evaluation(new, [change])


def next_change(state: StatusState, periods: Sequence[Period], policy: StatusPolicy) -> StatusChange | None:
    """The next change of the effective status after ``state.evaluated_at``, assuming no manual change."""
    after = state.evaluated_at
    points = sorted(t for t in {p.start for p in periods} | {p.end for p in periods} if t > after)
    if not policy.recurs:
        return next((change for _, change in _steps(state, periods, policy, points) if change), None)
    # Working hours and holidays never end: walk in slices so only the boundaries needed are generated.
    horizon = after + HOURS_HORIZON
    cursor = after
    # Hours change every day or so; holidays alone are weeks apart: longer slices, fewer walks.
    step = timedelta(days=7 if policy.uses_hours else 61)
    while cursor < horizon:
        step_end = min(horizon, cursor + step)
        evaluation = advance(state, periods, policy, step_end)
        if evaluation.changes:
            return evaluation.changes[0]
        state, cursor = evaluation.state, step_end
    return None


def next_boundary(periods: Sequence[Period], policy: StatusPolicy, after: datetime) -> datetime | None:
    """The next instant after ``after`` at which ``auto`` may change (the daemon's timer)."""
    points = [t for t in {p.start for p in periods} | {p.end for p in periods} if t > after]
    if policy.uses_hours:
        points.extend(_hour_boundaries(policy, after, after + timedelta(days=8)))
    if policy.uses_days_off:
        # Days off can be months apart: look as far as `next_change` does, a year at a time.
        cursor = after
        while cursor < after + HOURS_HORIZON:
            step_end = min(after + HOURS_HORIZON, cursor + timedelta(days=366))
            found = [t for t in _day_off_boundaries(policy, cursor, step_end) if t > after]
            if found:
                points.append(min(found))
                break
            cursor = step_end
    points = [t for t in points if t > after]
    return min(points) if points else None
