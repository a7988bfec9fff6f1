"""OOO content and time arithmetic shared by the core and the connectors.

An OOO period is a half-open UTC interval ``[start, end)``. All-day periods also keep their
local dates (``end_date`` exclusive, as in iCalendar) and the IANA zone they are read in, so
that "Mon-Fri off" means those days in the user's zone, DST included.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.errors import UserInputError

__all__ = [
    "OooContent",
    "all_day_content",
    "ensure_aware",
    "format_utc",
    "local_midnight",
    "parse_instant",
    "timed_content",
    "zone",
]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UserInputError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Stockholm')") from exc


def ensure_aware(value: datetime, what: str = "time") -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise UserInputError(f"{what} {value.isoformat()} has no UTC offset; add one, e.g. 'Z' or '+01:00'")
    return value.astimezone(UTC)


def parse_instant(text: str, what: str = "time") -> datetime:
    """ISO 8601 with an offset (``Z`` accepted) -> aware UTC datetime."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError as exc:
        raise UserInputError(f"{what} {text!r} is not an ISO 8601 time like 2026-12-24T09:00:00+01:00") from exc
    return ensure_aware(value, what)


def format_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` as UTC (midnight may not exist on DST days)."""
    local = datetime.combine(day, time(0), tzinfo=tz)
    # A skipped midnight (e.g. America/Santiago) round-trips to a later wall time.
    return local.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class OooContent:
    """What an OOO period says, independent of where it is stored.

    ``start_date``/``end_date``/``timezone`` are set for all-day periods only.
    """

    start: datetime
    end: datetime
    all_day: bool = False
    start_date: date | None = None
    end_date: date | None = None
    timezone: str | None = None
    title: str = "Out of office"

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("OooContent needs aware datetimes")
        if self.end <= self.start:
            raise UserInputError(
                f"OOO period ends ({format_utc(self.end)}) before or when it starts ({format_utc(self.start)})"
            )
        if self.all_day and (self.start_date is None or self.end_date is None):
            raise ValueError("an all-day OooContent needs its local dates")

    def covers(self, instant: datetime) -> bool:
        return self.start <= instant < self.end

    def fingerprint(self) -> str:
        """Stable hash of the meaning (not the bytes): the base of the three-way merge."""
        if self.all_day:
            return _fingerprint(True, self.start_date, self.end_date, (self.title or "").strip())
        return _fingerprint(False, self.start, self.end, (self.title or "").strip())

    def in_zone(self, tz_name: str) -> OooContent:
        """Re-anchor an all-day period's dates in another zone (a user's)."""
        if not self.all_day or self.timezone == tz_name:
            return self
        assert self.start_date is not None and self.end_date is not None
        return all_day_content(self.start_date, self.end_date, tz_name, self.title)

    def with_end(self, end: datetime) -> OooContent:
        """The period cut off at ``end``; an all-day period becomes timed (it no longer fills whole days)."""
        return replace(self, end=end.astimezone(UTC), all_day=False, start_date=None, end_date=None, timezone=None)


@functools.lru_cache(maxsize=65536)  # every pass compares every block of a user with its base
def _fingerprint(all_day: bool, first: date | datetime | None, last: date | datetime | None, title: str) -> str:
    if all_day:
        key: dict[str, object] = {"all_day": True, "start_date": first.isoformat() if first else None,
                                  "end_date": last.isoformat() if last else None}
    else:
        assert isinstance(first, datetime) and isinstance(last, datetime)
        key = {"start": format_utc(first), "end": format_utc(last)}
    key["title"] = title
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def timed_content(start: datetime, end: datetime, title: str | None = None) -> OooContent:
    return OooContent(
        start=ensure_aware(start, "start"), end=ensure_aware(end, "end"), title=title or "Out of office"
    )


def all_day_content(start_date: date, end_date: date, tz_name: str, title: str | None = None) -> OooContent:
    """All-day period ``[start_date, end_date)`` in the zone ``tz_name``."""
    if end_date <= start_date:
        raise UserInputError(f"the last day {end_date - timedelta(days=1)} is before the first day {start_date}")
    tz = zone(tz_name)
    return OooContent(
        start=local_midnight(start_date, tz),
        end=local_midnight(end_date, tz),
        all_day=True,
        start_date=start_date,
        end_date=end_date,
        timezone=tz_name,
        title=title or "Out of office",
    )
