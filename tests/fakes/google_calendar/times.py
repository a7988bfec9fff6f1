"""Event times: RFC 3339 values, an ``EventDateTime`` (``date``, or ``dateTime`` read in its ``timeZone``) as an
instant, and the zone it names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo


def _parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _point_time(point: dict[str, Any]) -> datetime:
    """An event's dateTime; without an offset it is read in the point's timeZone (as Google does)."""
    dt = datetime.fromisoformat(str(point["dateTime"]).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone(point) or UTC)
    return dt


def _edge(point: dict[str, Any] | None) -> datetime | None:
    if not point:
        return None
    if "dateTime" in point:
        return _point_time(point)
    if "date" in point:
        return datetime.fromisoformat(point["date"]).replace(tzinfo=UTC)
    return None


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _zone(point: dict[str, Any]) -> ZoneInfo | None:
    name = point.get("timeZone")
    return ZoneInfo(name) if name else None
