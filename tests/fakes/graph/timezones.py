"""Time zones and ``dateTimeTimeZone`` values: Windows and IANA zone names as Graph accepts them, parsing the
dateTime strings clients send, and rendering instants in the zone a client asked for."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tests.fakes.graph.common import GraphError

#: Windows time zone names (as Outlook uses them) for the zones tests are likely to need.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Arabian Standard Time": "Asia/Dubai",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
}


def zone(name: str) -> tzinfo:
    """A tzinfo for a Windows or IANA time zone name, as Graph accepts them."""
    iana = WINDOWS_ZONES.get(name, name)
    if iana in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        return UTC
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(400, "TimeZoneNotSupportedException",
                         f"A valid TimeZone value must be specified. The following TimeZone value is not supported: "
                         f"'{name}'.") from exc


def _parse_wall(value: str) -> datetime:
    """A dateTime string as Graph sends it (up to 7 fractional digits, optional offset)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    return datetime.fromisoformat(text)


def _point(value: Any, name: str) -> tuple[datetime, str, datetime]:
    """Validate a dateTimeTimeZone: (local wall time, zone name, UTC instant)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", f"The {name} property must have a dateTime value.")
    tz_name = value.get("timeZone") or "UTC"
    if not isinstance(tz_name, str):
        raise GraphError(400, "RequestBodyRead", f"Invalid timeZone in {name}.")
    tz = zone(tz_name)
    try:
        parsed = _parse_wall(value["dateTime"])
    except ValueError as exc:
        raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{value['dateTime']}' to the expected "
                                                 f"type 'Edm.DateTime' ({name}).") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed, tz_name, parsed.replace(tzinfo=tz).astimezone(UTC)


def _render_time(instant: datetime, tz_name: str) -> dict[str, str]:
    local = instant.astimezone(zone(tz_name))
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0", "timeZone": tz_name}


def _parse_query_instant(value: str, name: str) -> datetime:
    try:
        parsed = _parse_wall(value)
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidParameter",
                         f"The value '{value}' of parameter '{name}' is invalid.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
