"""An in-memory calendar: first-class for tests, and the model the other connectors follow.

Calendars are dicts of event id -> RemoteEvent. The cursor is a change counter; `expire`
invalidates outstanding cursors, and `edit`/`remove`/`add` are how a test plays the person
editing the calendar. Thread-safe.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from connectors.base import CalendarConnector
from syncd.core.calendars import ChangeSet, EventDraft, RemoteEvent, SyncWindow
from syncd.core.errors import CursorExpired, NotFound, PreconditionFailed
from syncd.core.ooo import OooContent

__all__ = ["MemoryCalendar", "MemoryConnector"]


@dataclass
class MemoryCalendar:
    events: dict[str, RemoteEvent] = field(default_factory=dict)
    not_ooo: dict[str, RemoteEvent] = field(default_factory=dict)  # events that stopped being OOO
    log: list[tuple[int, str]] = field(default_factory=list)  # (version, event id) changes
    epoch: int = 0  # cursors from older epochs are expired


class MemoryConnector(CalendarConnector):
    provider = "memory"

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock = clock or (lambda: datetime.now(UTC))  # stamps `updated`, for the `newest` policy
        self.calendars: dict[str, MemoryCalendar] = {}
        self._version = itertools.count(1)
        self._last_version = 0
        self._lock = threading.RLock()
        self.writes = 0  # create/update/delete calls that changed something

    # -- what a person does in their calendar ------------------------------------------
    def calendar(self, name: str) -> MemoryCalendar:
        with self._lock:
            return self.calendars.setdefault(name, MemoryCalendar())

    def add(self, calendar: str, content: OooContent, *, block_id: str | None = None,
            event_id: str | None = None, now: datetime | None = None) -> RemoteEvent:
        with self._lock:
            event = RemoteEvent(
                event_id=event_id or uuid.uuid4().hex,
                etag=self._etag(),
                content=content,
                block_id=block_id,
                updated=now or self.clock(),
            )
            self._store(calendar, event)
            return event

    def edit(self, calendar: str, event_id: str, content: OooContent, now: datetime | None = None) -> RemoteEvent:
        with self._lock:
            old = self.calendar(calendar).events[event_id]
            event = replace(old, content=content, etag=self._etag(), updated=now or self.clock())
            self._store(calendar, event)
            return event

    def remove(self, calendar: str, event_id: str) -> None:
        with self._lock:
            cal = self.calendar(calendar)
            cal.events.pop(event_id, None)
            cal.log.append((self._bump(), event_id))

    def unmark_ooo(self, calendar: str, event_id: str) -> None:
        """The person changes the event to a normal busy one: no longer OOO."""
        with self._lock:
            cal = self.calendar(calendar)
            cal.not_ooo[event_id] = cal.events.pop(event_id)
            cal.log.append((self._bump(), event_id))

    def expire(self, calendar: str) -> None:
        with self._lock:
            self.calendar(calendar).epoch += 1

    # -- the connector interface ---------------------------------------------------------
    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        with self._lock:
            cal = self.calendar(calendar)
            in_window = {
                eid: e for eid, e in cal.events.items() if window.overlaps(e.content.start, e.content.end)
            }
            head = f"{cal.epoch}:{self._last_version}"
            if cursor is None:
                return ChangeSet(events=list(in_window.values()), cursor=head, full=True)
            epoch, _, since = cursor.partition(":")
            if int(epoch) != cal.epoch:
                raise CursorExpired(f"memory calendar {calendar!r}: cursor from an older epoch")
            changed = {eid for version, eid in cal.log if version > int(since)}
            return ChangeSet(
                events=[in_window[eid] for eid in sorted(changed) if eid in in_window],
                removed=[eid for eid in sorted(changed) if eid not in cal.events],
                cursor=head,
            )

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        with self._lock:
            return self.calendar(calendar).events.get(event_id)

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        with self._lock:
            return next((e for e in self.calendar(calendar).events.values() if e.block_id == block_id), None)

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        with self._lock:
            existing = self.find_by_block_id(calendar, draft.block_id)
            if existing is not None:
                return existing
            self.writes += 1
            return self.add(calendar, draft.content, block_id=draft.block_id, event_id=f"syncd-{draft.block_id}")

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        with self._lock:
            current = self.calendar(calendar).events.get(event_id)
            if current is None:
                raise NotFound(f"memory calendar {calendar!r} has no event {event_id!r}")
            if current.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            self.writes += 1
            event = replace(current, content=draft.content, etag=self._etag(), block_id=draft.block_id,
                            updated=self.clock())
            self._store(calendar, event)
            return event

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        with self._lock:
            current = self.calendar(calendar).events.get(event_id)
            if current is None:
                return
            if etag is not None and current.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            self.writes += 1
            self.remove(calendar, event_id)

    # -- internals -------------------------------------------------------------------------
    def _bump(self) -> int:
        self._last_version = next(self._version)
        return self._last_version

    def _etag(self) -> str:
        return uuid.uuid4().hex[:12]

    def _store(self, calendar: str, event: RemoteEvent) -> None:
        cal = self.calendar(calendar)
        cal.events[event.event_id] = event
        cal.log.append((self._bump(), event.event_id))
