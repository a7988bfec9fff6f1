"""Google event JSON <-> syncd's values: what an event says as `OooContent` and
`RemoteEvent`, the body of an event syncd writes, and the ids (the event id derived from a
block id, Google's instance id of an occurrence).

OOO is ``eventType == "outOfOffice"``. Google refuses all-day OOO events, so an all-day
block is written from local midnight to local midnight in the user's zone, and such an event
is read back as all-day. The block id travels in ``extendedProperties.private``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from connectors.google.options import GoogleOptions
from syncd.core.calendars import EventDraft, RemoteEvent
from syncd.core.errors import BadEventData
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import local_midnight, zone

__all__ = ["BLOCK_PROPERTY", "OOO", "block_id_of", "event_body", "event_content", "event_id_for_block",
           "event_zone", "is_ooo", "occurrence_of_series", "read_point", "remote_event", "split_instance_id",
           "updated_at"]

BLOCK_PROPERTY = "syncdBlock"  # extendedProperties.private key holding our block id
OOO = "outOfOffice"


# -- ids ---------------------------------------------------------------------------------------


def event_id_for_block(block_id: str, attempt: int = 0) -> str:
    """The client-supplied event id for a block (base32hex, as Google requires).

    Google keeps a deleted event's id reserved, so the n-th re-creation of a block after its
    event was deleted in the calendar uses the n-th id of the same deterministic sequence."""
    seed = block_id if attempt == 0 else f"{block_id}#{attempt}"
    digest = hashlib.sha256(seed.encode()).digest()[:20]
    return "sd" + base64.b32hexencode(digest).decode().lower().rstrip("=")


def split_instance_id(event_id: str) -> tuple[str, str | None]:
    """``master_20261224T090000Z`` -> (master, instant); a plain id -> (id, None)."""
    master, sep, instant = event_id.rpartition("_")
    if sep and master and (len(instant) == 8 or (len(instant) == 16 and instant.endswith("Z"))) \
            and instant[:8].isdigit():
        return master, instant
    return event_id, None


# -- Google events -> OOO content --------------------------------------------------------------


def read_point(point: Mapping[str, Any] | None, what: str) -> date | datetime:
    """An event's ``start``/``end``-like object as a date or an aware date-time."""
    if not isinstance(point, Mapping):
        raise BadEventData(f"event has no {what}")
    if point.get("dateTime"):
        value = datetime.fromisoformat(str(point["dateTime"]).replace("Z", "+00:00"))
        if value.tzinfo is None:
            name = point.get("timeZone") or "UTC"
            value = value.replace(tzinfo=zone(str(name)))
        return value
    if point.get("date"):
        return date.fromisoformat(str(point["date"]))
    raise BadEventData(f"event {what} has neither date nor dateTime")


def event_content(event: Mapping[str, Any], tz_name: str) -> OooContent:
    """What a Google event says as OOO content, read in the user's zone ``tz_name``.

    A timed event from local midnight to local midnight is an all-day period: that is how
    all-day OOO has to be written to Google (and how syncd writes it)."""
    title = str(event.get("summary") or "").strip() or None
    start = read_point(event.get("start"), "start")
    end = read_point(event.get("end"), "end")
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise BadEventData("event mixes a date and a date-time")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return all_day_content(start, end, tz_name, title)
    tz = zone(tz_name)
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    if last > first and start == local_midnight(first, tz) and end == local_midnight(last, tz):
        return all_day_content(first, last, tz_name, title)
    return timed_content(start, end, title)


def updated_at(event: Mapping[str, Any]) -> datetime | None:
    text = event.get("updated")
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def block_id_of(event: Mapping[str, Any]) -> str | None:
    value = ((event.get("extendedProperties") or {}).get("private") or {}).get(BLOCK_PROPERTY)
    return str(value) if value else None


def remote_event(event: Mapping[str, Any], tz_name: str) -> RemoteEvent:
    return RemoteEvent(event_id=str(event["id"]), etag=str(event.get("etag") or ""),
                       content=event_content(event, tz_name), block_id=block_id_of(event), updated=updated_at(event))


def occurrence_of_series(event: RemoteEvent, item: Mapping[str, Any]) -> RemoteEvent:
    """An event read alone that is an occurrence of a series belongs to the series, not to a block."""
    if item.get("recurringEventId"):
        return replace(event, series_id=str(item["recurringEventId"]), block_id=None)
    return event


def is_ooo(event: Mapping[str, Any]) -> bool:
    return event.get("eventType") == OOO and event.get("status") != "cancelled"


def event_zone(item: Mapping[str, Any]) -> str:
    """The zone an event's start is written in (UTC when it names none)."""
    return str((item.get("start") or {}).get("timeZone") or "UTC")


# -- OOO content -> Google events --------------------------------------------------------------


def _times(content: OooContent, tz_name: str) -> dict[str, Any]:
    tz = zone(tz_name)
    start, end = content.start, content.end
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        start, end = local_midnight(content.start_date, tz), local_midnight(content.end_date, tz)
    return {
        "start": {"dateTime": start.astimezone(tz).isoformat(), "timeZone": tz_name},
        "end": {"dateTime": end.astimezone(tz).isoformat(), "timeZone": tz_name},
    }


def event_body(draft: EventDraft, options: GoogleOptions) -> dict[str, Any]:
    """The fields syncd writes for a block (an insert adds ``eventType`` and ``id``)."""
    properties: dict[str, Any] = {"autoDeclineMode": options.auto_decline}
    if options.decline_message:
        properties["declineMessage"] = options.decline_message
    return {
        "summary": draft.content.title or options.summary,
        **_times(draft.content, draft.timezone),
        "transparency": "opaque",
        "outOfOfficeProperties": properties,
        "extendedProperties": {"private": {BLOCK_PROPERTY: draft.block_id}},
    }
