"""Event writes, as the API or the human editing Outlook makes them: create (with ``transactionId``
de-duplication), patch and delete of events, series, occurrences and exceptions, with body validation, change keys
and ``If-Match``; each write queues change notifications."""

from __future__ import annotations

import copy
import html
import re
import secrets
from datetime import datetime
from typing import Any
from urllib.parse import quote

from tests.fakes.graph.common import GraphError, _b64url, _stamp
from tests.fakes.graph.listing import ListingMixin, _ext_key
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.subscriptions import SubscriptionsMixin
from tests.fakes.graph.timezones import _point, _render_time

SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")

# event properties a client may write, and the read-only ones it may echo back (ignored)
_WRITABLE = frozenset({
    "allowNewTimeProposals", "attendees", "body", "categories", "end", "hideAttendees", "importance", "isAllDay",
    "isOnlineMeeting", "isReminderOn", "location", "locations", "onlineMeetingProvider", "recurrence",
    "reminderMinutesBeforeStart", "responseRequested", "sensitivity", "showAs", "start", "subject", "transactionId",
    "singleValueExtendedProperties", "multiValueExtendedProperties", "originalStartTimeZone", "originalEndTimeZone",
})
_READ_ONLY = frozenset({
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "iCalUId", "uid", "type", "seriesMasterId",
    "webLink", "bodyPreview", "hasAttachments", "isCancelled", "isDraft", "isOrganizer", "onlineMeeting",
    "onlineMeetingUrl", "organizer", "originalStart", "responseStatus", "occurrenceId", "cancelledOccurrences",
    "exceptionOccurrences", "calendar", "instances", "attachments", "extensions",
})
_TIME_FIELDS = frozenset({"start", "end", "isAllDay", "recurrence"})
_OCCURRENCE_ID = re.compile(r"^(?P<master>.+)_OCC(?P<key>\d{8}T\d{6}Z)$")


def _strip_html(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()


class EventsMixin(SubscriptionsMixin, ListingMixin):
    """Creating, changing and deleting events; the test hooks that do it as a human would."""

    # ------------------------------------------------------------------------------------ hooks: the human editing
    def add_event(self, user: str, body: dict[str, Any], *, calendar: str | None = None) -> dict[str, Any]:
        """Create an event as Outlook would (notifications fire); returns it rendered in UTC."""
        with self._lock:
            box = self._mailbox(user, create=True)
            created, _existing = self._create(box, calendar or box.primary_calendar, copy.deepcopy(body))
            return self._render(box, created, "UTC", expand=True)

    def edit_event(self, user: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Patch an event, an occurrence (making it an exception) or an exception."""
        with self._lock:
            box = self._mailbox(user, create=True)
            item = self._patch(box, event_id, copy.deepcopy(changes), if_match=None)
            return self._render(box, item, "UTC", expand=True)

    def delete_event(self, user: str, event_id: str) -> None:
        """Delete an event or series; for an occurrence id, cancel that one instance."""
        with self._lock:
            self._delete(self._mailbox(user, create=True), event_id, if_match=None)

    def events(self, user: str, *, calendar: str | None = None) -> list[dict[str, Any]]:
        """The stored single events and series masters (UTC, extended properties included)."""
        with self._lock:
            box = self._mailbox(user, create=True)
            return [
                self._render(box, e, "UTC", expand=True)
                for e in box.events.values()
                if calendar is None or e["_calendar"] == calendar
            ]

    def view(self, user: str, start: datetime, end: datetime, *, calendar: str | None = None) -> list[dict[str, Any]]:
        """The instances (singles, occurrences, exceptions) of the calendar view, as calendarView renders them."""
        with self._lock:
            box = self._mailbox(user, create=True)
            return [self._render(box, i, "UTC") for i in self._instances(box, calendar or box.primary_calendar,
                                                                          start, end)]

    # ------------------------------------------------------------------------------------ events: writes
    def _clean_body(self, body: Any, *, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
        clean: dict[str, Any] = {}
        for key, value in body.items():
            if key.startswith("@odata") or key in _READ_ONLY:
                continue
            if key not in _WRITABLE:
                raise GraphError(400, "RequestBodyRead",
                                 f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure to "
                                 f"only use property names that are defined by the type or mark the type as open type.")
            clean[key] = value
        if "showAs" in clean and clean["showAs"] is not None:
            canonical = {s.lower(): s for s in SHOW_AS}.get(str(clean["showAs"]).lower())
            if canonical is None:
                raise GraphError(400, "RequestBodyRead", f"Requested value '{clean['showAs']}' was not found.")
            clean["showAs"] = canonical
        for flag in ("isAllDay", "isReminderOn", "responseRequested", "allowNewTimeProposals", "hideAttendees",
                     "isOnlineMeeting"):
            if flag in clean and not isinstance(clean[flag], bool):
                raise GraphError(400, "RequestBodyRead",
                                 f"Cannot convert a value to target type 'Edm.Boolean' ({flag}).")
        if "subject" in clean and clean["subject"] is not None and not isinstance(clean["subject"], str):
            raise GraphError(400, "RequestBodyRead", "Cannot convert a value to target type 'Edm.String' (subject).")
        if "body" in clean and not (clean["body"] is None or isinstance(clean["body"], dict)):
            raise GraphError(400, "RequestBodyRead", "The body property must be an itemBody object.")
        props = clean.get("singleValueExtendedProperties")
        if props is not None:
            if not isinstance(props, list):
                raise GraphError(400, "RequestBodyRead", "singleValueExtendedProperties must be a collection.")
            for prop in props:
                if not isinstance(prop, dict) or not isinstance(prop.get("id"), str):
                    raise GraphError(400, "RequestBodyRead", "Each extended property needs an id.")
                if not isinstance(prop.get("value"), str):
                    raise GraphError(400, "RequestBodyRead", "Extended property values are strings.")
                _ext_key(prop["id"])
        if creating:
            for edge in ("start", "end"):
                if edge not in clean:
                    raise GraphError(400, "ErrorInvalidRequest", f"The event must have a {edge} time.")
        return clean

    def _apply_times(self, item: dict[str, Any]) -> None:
        """Recompute the internal instants of a single event or series master and validate them."""
        start_local, start_tz, start_utc = _point(item["start"], "start")
        end_local, end_tz, end_utc = _point(item["end"], "end")
        if end_utc < start_utc:
            raise GraphError(400, "ErrorInvalidRequest", "The end time of the event must be after its start time.")
        if item.get("isAllDay"):
            midnight = datetime.min.time()
            if start_local.time() != midnight or end_local.time() != midnight or end_local <= start_local:
                raise GraphError(400, "ErrorInvalidRequest",
                                 "An all-day event must start and end at midnight in its time zone and last whole "
                                 "days.")
        item["start"] = {"dateTime": start_local.isoformat(), "timeZone": start_tz}
        item["end"] = {"dateTime": end_local.isoformat(), "timeZone": end_tz}
        item["_start"], item["_end"] = start_utc, end_utc
        item["originalStartTimeZone"], item["originalEndTimeZone"] = start_tz, end_tz
        recurrence = item.get("recurrence")
        if recurrence is not None:
            self._rule(item)  # validates
            item["type"] = "seriesMaster"
        else:
            item["type"] = "singleInstance"

    def _create(self, box: _Mailbox, calendar: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if calendar not in box.calendars:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        clean = self._clean_body(body, creating=True)
        transaction = clean.get("transactionId")
        if transaction:
            existing_id = box.transactions.get(transaction)
            if existing_id and existing_id in box.events:
                return box.events[existing_id], True
        event_id = "AAMkAG" + _b64url(secrets.token_bytes(30)) + "="
        props = clean.pop("singleValueExtendedProperties", None) or []
        body_value = clean.pop("body", None) or {"contentType": "html", "content": ""}
        item = self._new_item(box, event_id, body_value)
        item.update(clean)
        item["bodyPreview"] = _strip_html(str((item.get("body") or {}).get("content", "")))[:255]
        item["_calendar"] = calendar
        item["_props"] = [dict(p) for p in props]
        item["_exceptions"] = {}
        item["_cancelled"] = set()
        self._apply_times(item)
        self._bump(item)
        box.events[event_id] = item
        if transaction:
            box.transactions[transaction] = event_id
        self._emit(box, event_id, "created", item["changeKey"])
        return item, False

    @staticmethod
    def _new_item(box: _Mailbox, event_id: str, body_value: Any) -> dict[str, Any]:
        """A new event with every property Graph fills in by default (the request's values go on top)."""
        item: dict[str, Any] = {
            "id": event_id,
            "createdDateTime": _stamp(),
            "lastModifiedDateTime": _stamp(),
            "changeKey": "",
            "categories": [],
            "transactionId": None,
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "uid": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": "",
            "bodyPreview": "",
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": False,
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": True,
            "seriesMasterId": None,
            "showAs": "busy",
            "type": "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={quote(event_id)}&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": False,
            "onlineMeetingProvider": "unknown",
            "allowNewTimeProposals": True,
            "isDraft": False,
            "hideAttendees": False,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": body_value,
            "start": None,
            "end": None,
            "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"},
            "locations": [],
            "recurrence": None,
            "attendees": [],
            "organizer": {"emailAddress": {"name": box.display_name, "address": box.upn}},
            "onlineMeeting": None,
        }
        return item

    def _resolve(self, box: _Mailbox, event_id: str) -> tuple[dict[str, Any], str | None]:
        """(stored item, occurrence key or None) for an event, occurrence or exception id."""
        item = box.events.get(event_id)
        if item is not None:
            return item, None
        match = _OCCURRENCE_ID.match(event_id)
        if match:
            master = box.events.get(match.group("master"))
            key = match.group("key")
            if master is not None and master.get("recurrence") and key not in master["_cancelled"]:
                if key in master["_exceptions"] or self._is_occurrence(master, key):
                    return master, key
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    @staticmethod
    def _check_etag(current_change_key: str, if_match: str | None) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        candidates = {tag.strip() for tag in if_match.split(",")}
        accepted = {f'W/"{current_change_key}"', f'"{current_change_key}"', current_change_key}
        if not candidates & accepted:
            raise GraphError(412, "ErrorIrresolvableConflict",
                             "The send or update operation could not be performed because the change key passed in "
                             "the request does not match the current change key for the item.")

    def _patch(self, box: _Mailbox, event_id: str, body: dict[str, Any], *, if_match: str | None) -> dict[str, Any]:
        item, key = self._resolve(box, event_id)
        clean = self._clean_body(body, creating=False)
        clean.pop("transactionId", None)
        if key is not None:
            return self._patch_instance(box, item, key, clean, if_match)
        self._check_etag(item["changeKey"], if_match)
        candidate = copy.deepcopy(item)
        for name, value in clean.items():
            if name == "singleValueExtendedProperties":
                for prop in value or []:
                    wanted = _ext_key(prop["id"])
                    candidate["_props"] = [p for p in candidate["_props"] if _ext_key(p["id"]) != wanted]
                    candidate["_props"].append(dict(prop))
            else:
                candidate[name] = value
        if "body" in clean:
            candidate["bodyPreview"] = _strip_html(str((candidate.get("body") or {}).get("content", "")))[:255]
        self._apply_times(candidate)
        if _TIME_FIELDS & clean.keys():
            candidate["_exceptions"] = {}
            candidate["_cancelled"] = set()
        self._bump(candidate)
        box.events[item["id"]] = candidate
        self._emit(box, item["id"], "updated", candidate["changeKey"])
        return candidate

    def _patch_instance(self, box: _Mailbox, master: dict[str, Any], key: str, clean: dict[str, Any],
                        if_match: str | None) -> dict[str, Any]:
        if "recurrence" in clean or "singleValueExtendedProperties" in clean:
            raise GraphError(400, "ErrorInvalidRequest", "This property cannot be changed on an instance of a series.")
        current = self._instance(master, key)
        self._check_etag(current["changeKey"], if_match)
        override = copy.deepcopy(master["_exceptions"].get(key, {}))
        override.update(clean)
        probe = {**current, **override}
        probe["isAllDay"] = override.get("isAllDay", master["isAllDay"])
        if "start" in override or "end" in override:
            probe["start"] = override.get("start") or _render_time(current["_start"], master["start"]["timeZone"])
            probe["end"] = override.get("end") or _render_time(current["_end"], master["end"]["timeZone"])
            probe["recurrence"] = None
            self._apply_times(probe)
            override["start"], override["end"] = probe["start"], probe["end"]
            override["_start"], override["_end"] = probe["_start"], probe["_end"]
        self._bump(override)
        master["_exceptions"][key] = override
        self._next_seq()
        self._emit(box, master["id"], "updated", master["changeKey"])
        return self._instance(master, key)

    def _delete(self, box: _Mailbox, event_id: str, *, if_match: str | None) -> None:
        item, key = self._resolve(box, event_id)
        if key is not None:
            self._check_etag(self._instance(item, key)["changeKey"], if_match)
            item["_exceptions"].pop(key, None)
            item["_cancelled"].add(key)
            self._next_seq()
            self._emit(box, item["id"], "updated", item["changeKey"])
            return
        self._check_etag(item["changeKey"], if_match)
        del box.events[item["id"]]
        box.tombstones[item["id"]] = self._next_seq()
        self._emit(box, item["id"], "deleted", item["changeKey"])
