"""What an OOO period says, independent of where it is stored.

An OOO period is a half-open UTC interval ``[start, end)``. All-day periods also keep their
local dates (``end_date`` exclusive, as in iCalendar) and the IANA zone they are read in, so
that "Mon-Fri off" means those days in the user's zone, DST included.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

from syncd.core.errors import UserInputError
from syncd.core.time import ensure_aware, format_utc, local_midnight, zone

__all__ = ["OooContent", "all_day_content", "timed_content"]


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
