"""Writing: `create`, `update`, `delete`.

Everything syncd creates is its own file named after its block (UID ``syncd-<block id>``),
so a retried create finds its earlier write by name; only when that name is taken by someone
else's event is the folder scanned, and the new file gets a random suffix. Timed events are
written in UTC and all-day events as dates. An edit of a person's event keeps its other
properties; an edit or deletion of one occurrence of a series becomes an override or an
EXDATE. The etag given must match the file's (`PreconditionFailed` otherwise). A file left
with no event is removed. Every write is atomic (`FilesMixin._write`).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

from connectors import ical
from connectors.local.files import Snapshot, file_name, stem
from connectors.local.lookup import LookupMixin
from syncd.core.calendars import EventDraft, RemoteEvent, SyncWindow
from syncd.core.errors import NotFound, PreconditionFailed
from syncd.core.time import zone

__all__ = ["WritingMixin"]


class WritingMixin(LookupMixin):
    """Changing files, and the events they hold read back."""

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        with self._lock:
            folder = self._folder(calendar, create=True)
            uid = f"syncd-{draft.block_id}"
            name = file_name(uid)
            taken = (folder / name).exists() and uid not in self._uids_of(calendar, folder, name)
            # Everything we write is named after its block, so a retried create finds its earlier
            # write by name; only when that name is taken by someone else's event is a scan needed.
            existing = self.find_by_block_id(calendar, draft.block_id) if taken else \
                self._own_event(calendar, folder, name, draft.block_id)
            if existing is not None:
                return existing
            if taken:
                name = f"{stem(name)}-{hashlib.sha1(os.urandom(8)).hexdigest()[:8]}.ics"  # noqa: S324
            now = datetime.now(UTC)
            snap = self._write(calendar, folder / name, ical.new_event_bytes(uid, draft, now))
            return self._written(calendar, name, snap, uid, None, draft, now)

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        with self._lock:
            folder = self._folder(calendar)
            located = self._locate(calendar, folder, event_id)
            snap = self._read(calendar, folder / located[0]) if located is not None else None
            if located is None or snap is None:
                raise NotFound(f"local calendar {calendar!r} has no event {event_id!r}")
            name, uid, instant = located
            if snap.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            now = datetime.now(UTC)
            if instant is None:
                data = ical.replace_event(snap.data, uid, draft, now, self.rules, fallback_uid=stem(name))
            else:
                floating = zone(self._window_for(calendar).timezone)
                data = ical.override_occurrence(
                    snap.data, uid, instant, draft, now, self.rules, floating, fallback_uid=stem(name)
                )
            new = self._write(calendar, folder / name, data)
            return self._written(calendar, name, new, event_id, instant, draft, now)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        with self._lock:
            folder = self._folder(calendar)
            located = self._locate(calendar, folder, event_id)
            if located is None:
                return
            name, uid, instant = located
            snap = self._read(calendar, folder / name)
            if snap is None:
                return
            if instant is None:
                data = ical.remove_event(snap.data, uid, fallback_uid=stem(name))
            else:
                floating = zone(self._window_for(calendar).timezone)
                data = ical.exclude_occurrence(
                    snap.data, uid, instant, datetime.now(UTC), floating, fallback_uid=stem(name)
                )
            if data is None:
                return  # already gone
            if etag is not None and snap.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            if data:
                self._write(calendar, folder / name, data)
                return
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._os_error(folder / name, exc) from exc
            self._forget(calendar, name)

    def _written(
        self,
        calendar: str,
        name: str,
        snap: Snapshot,
        event_id: str,
        instant: str | None,
        draft: EventDraft,
        now: datetime,
    ) -> RemoteEvent:
        """The event as the file now says it (parsed back), with the file's new etag."""
        start, end = draft.content.start, draft.content.end
        if instant is not None:
            at = ical.instant_time(instant)
            start, end = min(start, at), max(end, at)
        window = SyncWindow(start - timedelta(days=2), end + timedelta(days=2), draft.timezone)
        found = self._event_in(calendar, name, event_id, window, ical.split_event_id(event_id)[0]
                               if instant is not None else event_id)
        if found is not None:
            return found
        return RemoteEvent(event_id=event_id, etag=snap.etag, content=draft.content, block_id=draft.block_id,
                           updated=now.replace(microsecond=0), series_id=ical.split_event_id(event_id)[0]
                           if instant is not None else None)
