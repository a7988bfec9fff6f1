"""Graph event JSON <-> syncd's OOO values: no I/O here.

OOO is ``showAs == "oof"`` (and neither cancelled nor an ``@removed`` stub). Graph writes a
point in time as ``{"dateTime", "timeZone"}`` with seven fractional digits and IANA or Windows
zone names; all-day events start and end at midnight in the zone they name, which syncd asks
to be the user's (``Prefer: outlook.timezone``), so their dates are the user's dates.

syncd's events carry the block id in a single-value extended property (`BLOCK_PROPERTY`), and
each POST a ``transactionId`` derived from it (`transaction_id`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from connectors import ical
from syncd.core.calendars import RemoteEvent
from syncd.core.errors import BadEventData
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import zone

__all__ = ["BLOCK_PROPERTY", "block_id_of", "event_content", "graph_times", "is_ooo", "parse_instant", "remote_event",
           "transaction_id"]

# A fixed GUID names syncd's property set; "Name SyncdBlockId" is the property in it.
BLOCK_PROPERTY = "String {5b1c7f6e-3a2d-4c8e-9f41-2d6b8e0a7c35} Name SyncdBlockId"


def transaction_id(block_id: str) -> str:
    """The POST's transactionId: Graph answers a retried POST with the event it made first."""
    return "syncd-" + hashlib.sha256(block_id.encode()).hexdigest()[:32]


def parse_instant(point: Mapping[str, Any] | None, what: str) -> datetime:
    """A Graph ``dateTimeTimeZone`` as an aware datetime; `BadEventData` if it has none or an unknown zone."""
    if not isinstance(point, Mapping) or not point.get("dateTime"):
        raise BadEventData(f"event has no {what}")
    text = str(point["dateTime"]).replace("Z", "")
    head, dot, fraction = text.partition(".")
    value = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
    tz_name = str(point.get("timeZone") or "UTC")
    tz = ical.resolve_tzid(tz_name)
    if tz is None:
        raise BadEventData(f"event {what} has an unknown time zone {tz_name!r}")
    return value.replace(tzinfo=tz)


def event_content(event: Mapping[str, Any], tz_name: str) -> OooContent:
    """A Graph event as OOO content, in the user's zone ``tz_name`` (all-day dates live there)."""
    title = str(event.get("subject") or "").strip() or None
    start, end = parse_instant(event.get("start"), "start"), parse_instant(event.get("end"), "end")
    if event.get("isAllDay"):
        tz = zone(tz_name)
        first, last = start.astimezone(tz), end.astimezone(tz)
        if first.time() == last.time() == datetime.min.time() and last.date() > first.date():
            return all_day_content(first.date(), last.date(), tz_name, title)
    return timed_content(start, end, title)


def _updated(event: Mapping[str, Any]) -> datetime | None:
    text = str(event.get("lastModifiedDateTime") or "").replace("Z", "")
    if not text:
        return None
    head, dot, fraction = text.partition(".")  # Graph writes seven fractional digits
    try:
        return datetime.fromisoformat(head + (dot + fraction[:6] if dot else "")).replace(tzinfo=UTC)
    except ValueError:
        return None


def _etag(event: Mapping[str, Any]) -> str:
    return str(event.get("@odata.etag") or event.get("changeKey") or "")


def block_id_of(event: Mapping[str, Any]) -> str | None:
    """The block id syncd wrote into the event, if it was asked for (``$expand``) and is there."""
    for prop in event.get("singleValueExtendedProperties") or ():
        if str(prop.get("id", "")).lower() == BLOCK_PROPERTY.lower():
            return str(prop.get("value") or "") or None
    return None


def is_ooo(event: Mapping[str, Any]) -> bool:
    return str(event.get("showAs", "")).lower() == "oof" and not event.get("isCancelled") \
        and "@removed" not in event


def remote_event(event: Mapping[str, Any], tz_name: str) -> RemoteEvent:
    """A Graph event as the connector reports it, its content in the user's zone ``tz_name``."""
    return RemoteEvent(event_id=str(event["id"]), etag=_etag(event), content=event_content(event, tz_name),
                       block_id=block_id_of(event), updated=_updated(event),
                       series_id=str(event["seriesMasterId"]) if event.get("seriesMasterId") else None)


def graph_times(content: OooContent, tz_name: str) -> dict[str, Any]:
    """OOO content as an event's ``isAllDay``, ``start`` and ``end``, written in the user's zone."""
    tz = zone(tz_name)
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        return {"isAllDay": True,
                "start": {"dateTime": f"{content.start_date.isoformat()}T00:00:00", "timeZone": tz_name},
                "end": {"dateTime": f"{content.end_date.isoformat()}T00:00:00", "timeZone": tz_name}}
    return {"isAllDay": False,
            "start": {"dateTime": content.start.astimezone(tz).replace(tzinfo=None).isoformat(), "timeZone": tz_name},
            "end": {"dateTime": content.end.astimezone(tz).replace(tzinfo=None).isoformat(), "timeZone": tz_name}}
