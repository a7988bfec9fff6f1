"""Instants, zones and durations: aware UTC datetimes only, ISO 8601 with an offset in and out."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.core.errors import ConfigError, UserInputError

__all__ = ["EARLIEST", "LATEST", "ensure_aware", "format_duration", "format_utc", "local_midnight", "parse_duration",
           "parse_instant", "within_reach", "zone"]

# Instants the rules are asked about (status at, timelines, business time): the rules look
# a year or more around them, which must stay inside what `datetime` can hold.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

_DURATION_HINT = "use e.g. 30s, 5m, 2h, 1d"
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION_RE = re.compile(r"\s*([0-9]+)\s*([wdhms])\s*")


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


def within_reach(value: datetime, what: str = "time") -> datetime:
    """``value``, if between `EARLIEST` and `LATEST`; else `UserInputError`."""
    if not EARLIEST <= value < LATEST:
        raise UserInputError(f"{what} {format_utc(value)} is out of range: give an instant from "
                             f"{EARLIEST.year} to {LATEST.year - 1}")
    return value


def format_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of ``day`` in ``tz`` as UTC (midnight may not exist on DST days)."""
    local = datetime.combine(day, time(0), tzinfo=tz)
    # A skipped midnight (e.g. America/Santiago) round-trips to a later wall time.
    return local.astimezone(UTC)


def parse_duration(text: str | int) -> timedelta:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"30d"``, ``"1w"``, ``"1h30m"`` (units largest first,
    each at most once), or a whole number of seconds (``30`` or ``"30"``).

    Raises `ConfigError` with the message ``bad duration '<text>' (use e.g. 30s, 5m, 2h, 1d)``.
    """
    shown = repr(text) if isinstance(text, str) else "true" if text is True else "false" if text is False \
        else str(text) if isinstance(text, int | float) else type(text).__name__
    bad = ConfigError(f"bad duration {shown} ({_DURATION_HINT})")
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise bad
    try:
        if isinstance(text, int):
            if text < 0:
                raise bad
            return timedelta(seconds=text)
        stripped = text.strip()
        if stripped.isdigit() and stripped.isascii():
            return timedelta(seconds=int(stripped))
        seconds, pos, last_rank = 0, 0, -1
        while pos < len(text):
            match = _DURATION_RE.match(text, pos)
            if match is None:
                raise bad
            rank = list(_DURATION_UNITS).index(match.group(2))
            if rank <= last_rank:  # "30m1h" or "5m5m": almost certainly a typo
                raise bad
            seconds += int(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos, last_rank = match.end(), rank
        if last_rank < 0:
            raise bad
        return timedelta(seconds=seconds)
    except OverflowError:
        raise bad from None


def format_duration(value: timedelta) -> str:
    """The duration as `parse_duration` reads it: ``"1d"``, ``"1h30m"``, ``"0s"``."""
    seconds, parts = int(value.total_seconds()), []
    for unit, size in _DURATION_UNITS.items():
        if unit != "w" and seconds >= size:  # days read better than weeks ("14d", not "2w")
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
