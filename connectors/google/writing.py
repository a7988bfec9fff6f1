"""Reading one event and writing events: `get`, `find_by_block_id`, `create`, `update`, `delete`.

Writing
-------
Events syncd writes are OOO events carrying the block id in ``extendedProperties.private``.
Google refuses all-day OOO events, so an all-day block is written from local midnight to
local midnight in the user's zone, and read back as all-day. Inserts use an event id derived
from the block id: a retried insert after a crash answers ``409`` and the existing event is
used, never a second one. Updates and deletes send ``If-Match``.
"""

from __future__ import annotations

from connectors.google.client import ClientMixin, Duplicate, event_segment
from connectors.google.mapping import (
    BLOCK_PROPERTY,
    OOO,
    block_id_of,
    event_body,
    event_id_for_block,
    event_zone,
    is_ooo,
    occurrence_of_series,
    remote_event,
    split_instance_id,
)
from syncd.core.calendars import EventDraft, RemoteEvent
from syncd.core.errors import ConnectorError, NotFound

__all__ = ["WritingMixin"]


class WritingMixin(ClientMixin):
    """One event at a time, by id or by block id."""

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        event_segment(event_id)
        try:
            item = self._execute(lambda: self._events.get(
                calendarId=calendar_id, eventId=event_id, quotaUser=owner), owner, f"reading event {event_id}")
        except NotFound:
            return None
        if not is_ooo(item):
            return None
        return occurrence_of_series(remote_event(item, self._zone(calendar, event_zone(item))), item)

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        page = self._execute(lambda: self._events.list(
            calendarId=calendar_id, privateExtendedProperty=f"{BLOCK_PROPERTY}={block_id}", maxResults=10,
            quotaUser=owner), owner, f"finding the event of block {block_id}")
        for item in page.get("items") or ():
            if is_ooo(item) and block_id_of(item) == block_id:
                return remote_event(item, self._zone(calendar, event_zone(item)))
        return None

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        self._zones.setdefault(calendar, draft.timezone)
        body = {**event_body(draft, self.options), "eventType": OOO}
        for attempt in range(16):
            event_id = event_id_for_block(draft.block_id, attempt)
            try:
                item = self._execute(lambda eid=event_id: self._events.insert(  # type: ignore[misc]
                    calendarId=calendar_id, body={**body, "id": eid}, quotaUser=owner),
                    owner, f"creating the event of block {draft.block_id}", conflict_ok=True)
            except Duplicate:
                # Written before (a crash before its link was saved), or deleted since: Google
                # keeps a deleted event's id, so the next id of the sequence is tried.
                try:
                    existing = self._execute(lambda eid=event_id: self._events.get(  # type: ignore[misc]
                        calendarId=calendar_id, eventId=eid, quotaUser=owner), owner, f"reading event {event_id}")
                except NotFound:
                    continue
                if existing.get("status") == "cancelled":
                    continue
                return remote_event(existing, draft.timezone)
            return remote_event(item, draft.timezone)
        raise ConnectorError(f"google: block {draft.block_id}: 16 events were created and deleted for it; "
                             "not creating another")

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        event_segment(event_id)
        body = event_body(draft, self.options)
        if split_instance_id(event_id)[1] is not None:
            body.pop("extendedProperties")  # an occurrence of someone's series is not our event
        item = self._execute(lambda: self._events.patch(
            calendarId=calendar_id, eventId=event_id, body=body, quotaUser=owner), owner,
            f"updating event {event_id}", etag=etag or None)
        return occurrence_of_series(remote_event(item, draft.timezone), item)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        owner, calendar_id = self._split(calendar)
        event_segment(event_id)
        try:
            self._execute(lambda: self._events.delete(
                calendarId=calendar_id, eventId=event_id, quotaUser=owner), owner,
                f"deleting event {event_id}", etag=etag or None)
        except NotFound:
            return  # already gone (404 / 410 deleted): what we wanted
