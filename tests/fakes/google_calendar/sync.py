"""``events.list``: full listings with their filters and ordering, paging (``pageToken``), and incremental sync
(``syncToken``: only the changes since, with tombstones; 410 ``fullSyncRequired`` once expired)."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.google_calendar.base import FakeGoogleBase, _Calendar
from tests.fakes.google_calendar.common import ApiError, _b64, _now_rfc3339, _unb64
from tests.fakes.google_calendar.times import _edge, _parse_time

_SYNC_INCOMPATIBLE = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _flag(query: dict[str, list[str]], name: str, default: bool = False) -> bool:
    value = _one(query, name)
    return default if value is None else value.lower() == "true"


def _selector(query: dict[str, list[str]], since: int | None,
              single_events: bool) -> Callable[[dict[str, Any]], bool]:
    """Which stored events a listing returns: the changes since a sync token, or the events its filters match."""
    show_deleted = _flag(query, "showDeleted")
    event_types = set(query.get("eventTypes", []))
    ical_uid = _one(query, "iCalUID")

    def keep(event: dict[str, Any]) -> bool:
        cancelled = event["status"] == "cancelled"
        if since is not None:
            if event["_seq"] <= since:
                return False
            return cancelled or not event_types or event["eventType"] in event_types
        # "Cancelled instances of recurring events (but not the underlying recurring event) will still
        # be included if showDeleted and singleEvents are both False."
        if cancelled and not show_deleted and (single_events or "recurringEventId" not in event):
            return False
        if ical_uid is not None and event.get("iCalUID") != ical_uid:
            return False
        if event_types and event["eventType"] not in event_types:
            return False
        for constraint in query.get("privateExtendedProperty", []):
            key, _, value = constraint.partition("=")
            if event.get("extendedProperties", {}).get("private", {}).get(key) != value:
                return False
        if (q := _one(query, "q")) is not None:
            text = " ".join(str(event.get(k, "")) for k in ("summary", "description", "location")).lower()
            if not all(term in text for term in q.lower().split()):
                return False
        if (time_min := _one(query, "timeMin")) is not None:
            end = _edge(event.get("end"))
            if end is not None and end <= _parse_time(time_min):
                return False
        if (time_max := _one(query, "timeMax")) is not None:
            start = _edge(event.get("start"))
            if start is not None and start >= _parse_time(time_max):
                return False
        if (updated_min := _one(query, "updatedMin")) is not None:
            if _parse_time(event["updated"]) < _parse_time(updated_min):
                return False
        return True

    return keep


class SyncMixin(FakeGoogleBase):
    """Listing events, with page and sync tokens; the hook that expires sync tokens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Google's docs do not promise that eventTypes may be combined with syncToken; a test
        # sets this to see the client cope when it is refused.
        self.refuse_event_types_with_sync_token = False

    def expire_sync_tokens(self, user: str, calendar: str) -> None:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            cal.min_sync_seq = self._seq + 1

    @staticmethod
    def _tombstone(event: dict[str, Any]) -> dict[str, Any]:
        stub = {"kind": "calendar#event", "etag": event["etag"], "id": event["id"], "status": "cancelled"}
        for key in ("recurringEventId", "originalStartTime"):
            if key in event:
                stub[key] = copy.deepcopy(event[key])
        return stub

    def _list(self, user: str, cal: _Calendar, query: dict[str, list[str]]) -> dict[str, Any]:
        max_results = int(_one(query, "maxResults") or 250)
        if not 1 <= max_results:
            raise ApiError(400, "invalid", "Invalid value for: maxResults")
        max_results = min(max_results, 2500)
        since = self._sync_since(user, cal, query)
        offset, snapshot = self._page_position(_one(query, "pageToken"))
        single_events = _flag(query, "singleEvents")
        keep = _selector(query, since, single_events)
        matching = [e for e in cal.events.values() if keep(e)]
        if single_events and any(e.get("recurrence") for e in matching):
            raise ApiError(400, "notImplementedInFake", "The fake does not expand recurring events.")
        order_by = _one(query, "orderBy")
        if order_by == "startTime" and not single_events:
            raise ApiError(400, "invalid", "The requested ordering is not available for the particular query.")
        if order_by == "updated":
            matching.sort(key=lambda e: e["_seq"])
        elif order_by == "startTime":
            matching.sort(key=lambda e: _edge(e.get("start")) or datetime.min.replace(tzinfo=UTC))
        else:
            matching.sort(key=lambda e: e["_order"])

        window = matching[offset: offset + max_results]
        # of a cancelled exception "only the fields id, recurringEventId and originalStartTime are guaranteed"
        items = [
            self._tombstone(e)
            if e["status"] == "cancelled" and (since is not None or "recurringEventId" in e)
            else self._public(e)
            for e in window
        ]
        result: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{snapshot}"',
            "summary": cal.calendar_id,
            "updated": _now_rfc3339(),
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
            "items": items,
        }
        if offset + max_results < len(matching):
            result["nextPageToken"] = _b64({"o": offset + max_results, "s": snapshot})
        else:
            result["nextSyncToken"] = _b64({"u": user, "c": cal.calendar_id, "s": snapshot, "n": secrets.token_hex(4)})
        return result

    def _sync_since(self, user: str, cal: _Calendar, query: dict[str, list[str]]) -> int | None:
        """The change sequence a ``syncToken`` stands for (None without one)."""
        sync_token = _one(query, "syncToken")
        if sync_token is None:
            return None
        bad = [name for name in _SYNC_INCOMPATIBLE if name in query]
        if self.refuse_event_types_with_sync_token and "eventTypes" in query:
            bad.append("eventTypes")
        if bad:
            raise ApiError(400, "invalid", f"Parameter {bad[0]} cannot be used with syncToken.",
                           locationType="parameter", location=bad[0])
        try:
            data = _unb64(sync_token)
            since = int(data["s"])
            valid = data["u"] == user and data["c"] == cal.calendar_id and since >= cal.min_sync_seq
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            raise ApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
        return since

    def _page_position(self, page_token: str | None) -> tuple[int, int]:
        """(offset, snapshot sequence) of a ``pageToken``; a first page starts at the current sequence."""
        if page_token is None:
            return 0, self._seq
        try:
            page = _unb64(page_token)
            return int(page["o"]), int(page["s"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "invalid", "Invalid page token value.") from exc
