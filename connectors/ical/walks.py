"""Recurrence walks with a hard bound: a step count and a deadline, checked during the walk.

Every recurrence in iCalendar data is walked by dateutil from its DTSTART: our own reads of
an RRULE/RDATE (`connectors.ical.recurrence`), recurring-ical-events' expansion of a series,
and the onsets of a VTIMEZONE's STANDARD/DAYLIGHT rules (`connectors.ical.zones`). dateutil
offers no bound on such a walk, and it does not even yield control while it looks for the
next occurrence: a rule that never matches again (``FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30``)
spins to the year 9999 without returning (seconds), a rule that matches every second walks
millions of occurrences before the window, and its cache keeps every one of them.

`bounded_walk` therefore counts the walk's work from inside: while it is active, a profile
hook of the current thread (``sys.setprofile``, which sees every Python call, including each
step of dateutil's generators) counts calls, looks at the clock every `_CHECK_EVERY` of them,
and raises `WalkLimit` once the walk has made more than its steps or passed its deadline.
The exception unwinds dateutil and recurring-ical-events (neither catches it); the hook is
removed and the previous one restored on the way out, so other threads and the code after
the walk run unhooked (a profiler of that thread, if any, is suspended during walks). Nothing
on the walks' path catches `WalkLimit` (a profile hook that raises is also removed by
CPython, so a library swallowing it would leave the rest of that walk uncounted; the
deadline check between walks still holds then). Steps are Python calls: what the walk's time and the memory it
allocates grow with; they are counted the same on any machine, so a limit on them skips the
same inputs everywhere, and the deadline stays a backstop for a slow or busy one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from syncd.core.errors import BadEventData

__all__ = ["Budget", "ExpansionLimits", "WalkLimit", "WalkMeter", "bounded_walk"]

_CHECK_EVERY = 2048  # calls between two looks at the clock: about a millisecond of walking


@dataclass(frozen=True, slots=True)
class ExpansionLimits:
    """Bounds on the work spent expanding recurring series of one iCalendar object."""

    max_occurrences: int = 1000  # per series; the first ones are kept
    expand_seconds: float = 2.0  # wall time per object
    clock: Callable[[], float] = time.monotonic


class WalkLimit(BadEventData):
    """A recurrence walk made more steps than it may, or ran past its deadline.

    ``out_of_time`` tells the two apart: out of steps means this input is too costly to
    walk (skip it), out of time means the object's time is up (stop reading it).
    """

    def __init__(self, message: str, *, out_of_time: bool) -> None:
        super().__init__(message)
        self.out_of_time = out_of_time


class WalkMeter:
    """What one or more walks may still spend: steps left, and the deadline on ``clock``."""

    __slots__ = ("clock", "deadline", "limit", "steps", "what")

    def __init__(self, steps: int, deadline: float, clock: Callable[[], float], what: str) -> None:
        self.limit = steps
        self.steps = steps
        self.deadline = deadline
        self.clock = clock
        self.what = what

    def check(self) -> None:
        """Raise `WalkLimit` if the steps or the time are used up (before a walk, say)."""
        if self.steps < 0:
            raise WalkLimit(f"{self.what} too costly to expand (over {self.limit} steps)", out_of_time=False)
        if self.clock() > self.deadline:
            raise WalkLimit(f"{self.what} not expanded: out of time", out_of_time=True)


@dataclass(slots=True)
class Budget:
    """The limits of one iCalendar object, its deadline, and whether it was reached."""

    limits: ExpansionLimits
    deadline: float
    out_of_time: bool = False

    @classmethod
    def starting_now(cls, limits: ExpansionLimits) -> Budget:
        return cls(limits, limits.clock() + limits.expand_seconds)

    def meter(self, steps: int, what: str) -> WalkMeter:
        """A meter of ``steps`` for one walk (or several), up to this object's deadline."""
        return WalkMeter(steps, self.deadline, self.limits.clock, what)

    def reached(self, exc: WalkLimit) -> None:
        """Note a walk stopped by ``exc``: out of time means the whole object is."""
        if exc.out_of_time:
            self.out_of_time = True


_active = threading.local()


@contextmanager
def bounded_walk(meter: WalkMeter) -> Iterator[WalkMeter]:
    """Run the body with its calls counted against ``meter``; `WalkLimit` once it is spent.

    Checked before the body starts, then every `_CHECK_EVERY` calls during it. Nested use in
    one thread counts against the outer meter only.
    """
    meter.check()
    if getattr(_active, "meter", None) is not None:
        yield meter  # an outer walk already counts these calls
        return
    previous = sys.getprofile()
    counter = 0

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal counter
        if event != "call" and event != "c_call":
            return
        counter += 1
        if counter >= _CHECK_EVERY:
            meter.steps -= counter
            counter = 0
            meter.check()

    _active.meter = meter
    sys.setprofile(hook)
    try:
        yield meter
    finally:
        sys.setprofile(previous)
        _active.meter = None
        meter.steps -= counter
