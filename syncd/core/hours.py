"""Working hours: per weekday, the local times a user works, as the status rules read them.

Written as ``{"mon": "09:00-17:00", "fri": "09:00-12:00,13:00-17:00"}`` (or a list of ranges
per day) in the config file and the API, and stored in that form; ``24:00`` ends at midnight
and ``"off"`` (or an empty string) is a day without hours. Parsing raises `ValueError` with a
message that names what is wrong, for the caller to prefix with where it was written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

__all__ = ["CONFIG_SOURCE", "DAYS", "CalendarHours", "EffectiveHours", "WorkingHours", "choose_hours",
           "hours_from_json", "hours_to_json", "merge_ranges", "parse_day"]

# weekday (0 = Monday) -> local (start, end) ranges; end == time.max means "until midnight".
WorkingHours = Mapping[int, Sequence[tuple[time, time]]]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_RANGE_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")


def parse_range(text: str) -> tuple[time, time]:
    match = _RANGE_RE.fullmatch(text)
    bad = f"bad time range {text.strip()!r} (use e.g. \"09:00-17:00\", several separated by commas)"
    if match is None:
        raise ValueError(bad)
    sh, sm, eh, em = (int(g) for g in match.groups())
    if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
        raise ValueError(bad)
    start = time(sh, sm)
    end = time.max if eh == 24 else time(eh, em)  # 24:00: the day's last instant
    if start >= end:
        raise ValueError(f"time range {text.strip()!r} must start before it ends (split overnight shifts across days)")
    return start, end


def parse_day(value: str | Sequence[str]) -> tuple[tuple[time, time], ...]:
    """One day's ranges, sorted and checked not to overlap."""
    parts = (value.split(",") if value.strip() else []) if isinstance(value, str) else list(value)
    if [p.strip().lower() for p in parts] == ["off"]:
        parts = []
    ranges = sorted(parse_range(p) for p in parts)
    for (_, end), (start, _) in zip(ranges, ranges[1:], strict=False):
        if start < end:
            raise ValueError(f"time ranges overlap at {start:%H:%M}")
    return tuple(ranges)


def merge_ranges(ranges: Sequence[tuple[time, time]]) -> tuple[tuple[time, time], ...]:
    """Ranges of one day sorted, overlapping or touching ones joined (a calendar may list
    the same hours twice, or split a day at noon)."""
    merged: list[tuple[time, time]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def hours_to_json(hours: WorkingHours | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for weekday, ranges in (hours or {}).items():
        out[DAYS[weekday]] = [
            f"{s.strftime('%H:%M')}-{'24:00' if e == time.max else e.strftime('%H:%M')}" for s, e in ranges
        ]
    return out


def hours_from_json(data: Mapping[str, Any] | None) -> dict[int, tuple[tuple[time, time], ...]]:
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for day, ranges in (data or {}).items():
        parsed = []
        for text in ranges:
            start, end = text.split("-")
            parsed.append((time.fromisoformat(start), time.max if end == "24:00" else time.fromisoformat(end)))
        hours[DAYS.index(day)] = tuple(parsed)
    return hours


# -- hours a calendar provides ---------------------------------------------------------------------

CONFIG_SOURCE = "config"


@dataclass(frozen=True, slots=True)
class CalendarHours:
    """Working hours as a calendar keeps them: weekly local ranges in the calendar's own zone
    (an IANA name), which may differ from the user's configured one."""

    hours: WorkingHours
    timezone: str

    def __post_init__(self) -> None:
        if not self.hours:
            raise ValueError("calendar working hours need at least one working day")


@dataclass(frozen=True, slots=True)
class EffectiveHours:
    """The hours the status rules use for a user, and where they came from: ``config``, or
    ``<provider>:<account>`` of the linked calendar that provided them."""

    hours: WorkingHours
    timezone: str
    source: str = CONFIG_SOURCE


def choose_hours(config_hours: WorkingHours, timezone: str, from_calendar: bool,
                 read: Sequence[tuple[str, CalendarHours | None]]) -> EffectiveHours:
    """The effective working hours: with ``from_calendar``, the first linked calendar (in link
    order) that provides hours; otherwise, or when none does, the config's in the user's zone.

    ``read`` is each link's source name and what it provided (None: nothing, or unreadable).
    """
    if from_calendar:
        for source, found in read:
            if found is not None:
                return EffectiveHours(found.hours, found.timezone, source)
    return EffectiveHours(config_hours, timezone, CONFIG_SOURCE)
