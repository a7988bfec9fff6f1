"""Writing: `create`, `update`, `delete`, with PUT and DELETE under If-Match.

A new block becomes its own object, ``syncd-<block id>.ics``, created with
``If-None-Match: *`` (a retried create finds the first one). Timed events are written in UTC
and all-day events as dates, so the object needs no VTIMEZONE and nothing the server does to
time zones can shift it. Edits of a person's event keep their other properties and go out
with ``If-Match``; a ``412`` is `PreconditionFailed`. Deleting one occurrence of a series
adds an EXDATE; deleting the last event of an object deletes the object. Servers that
rewrite an object on PUT (new ETag, reordered properties, no ETag in the answer) are handled
by reading the ETag back; syncd compares what events mean, never their bytes, so a rewrite
causes no update loop.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors import ical
from connectors.caldav.client import etag_of
from connectors.caldav.lookup import LookupMixin
from connectors.caldav.objects import stem
from syncd.core.calendars import EventDraft, RemoteEvent, SyncWindow
from syncd.core.errors import ConnectorError, NotFound, PreconditionFailed
from syncd.core.time import zone

__all__ = ["WritingMixin"]


class WritingMixin(LookupMixin):
    """PUT and DELETE of objects, and the events they hold read back."""

    def _put(self, url: str, data: bytes, *, etag: str | None = None, new: bool = False, what: str) -> str:
        """Store ``data`` at ``url``; the ETag the server reports for what it stored."""
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if new:
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        answer = self._request("PUT", url, body=data, headers=headers, what=what, ok=(200, 201, 204))
        written = etag_of(answer.headers)
        if written is None:  # the server changed what we sent (allowed, RFC 4791 5.3.4): ask for the ETag
            written = self._etags_of([url]).get(url, "")
        return written

    def _written(self, collection: str, href: str, data: bytes, etag: str, event_id: str,
                 draft: EventDraft, instant: str | None) -> RemoteEvent:
        """The event as the object now says it (parsed back), with the object's new ETag."""
        start, end = draft.content.start, draft.content.end
        if instant is not None:
            at = ical.instant_time(instant)
            start, end = min(start, at), max(end, at)
        window = SyncWindow(start - timedelta(days=2), end + timedelta(days=2), draft.timezone)
        uid = ical.split_event_id(event_id)[0] if instant is not None else event_id
        parsed = self._parse(collection, href, data, etag, window, only_uid=uid)
        found = next((e for e in parsed.events if e.event_id == event_id), None) if parsed else None
        if found is None:
            raise ConnectorError(f"caldav: event {event_id} cannot be read back after writing it")
        return found

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        collection = self._collection(calendar)
        uid = f"syncd-{draft.block_id}"
        href = self._own_href(collection, uid)
        url = self._absolute(collection, href)
        data = ical.new_event_bytes(uid, draft, datetime.now(UTC))
        try:
            etag = self._put(url, data, new=True, what=f"creating the event of block {draft.block_id}")
        except PreconditionFailed:
            # Written before (a crash before its link was saved): that event, not a second one.
            existing = self.find_by_block_id(calendar, draft.block_id)
            if existing is None:
                raise
            return existing
        with self._lock:
            self._hrefs.setdefault(collection, {})[uid] = href
        return self._written(collection, href, data, etag, uid, draft, None)

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        collection = self._collection(calendar)
        located = self._locate(collection, event_id)
        got = self._get_object(self._absolute(collection, located[0])) if located is not None else None
        if located is None or got is None:
            raise NotFound(f"caldav: no event {event_id!r} in {calendar}")
        href, uid, instant = located
        current, current_etag = got
        if etag and current_etag != etag:
            raise PreconditionFailed(f"caldav: event {event_id!r} changed since it was read")
        now = datetime.now(UTC)
        if instant is None:
            data = ical.replace_event(current, uid, draft, now, self.rules, fallback_uid=stem(href))
        else:
            floating = zone(self._window_for(collection).timezone)
            data = ical.override_occurrence(current, uid, instant, draft, now, self.rules, floating,
                                            fallback_uid=stem(href))
        new_etag = self._put(self._absolute(collection, href), data, etag=current_etag,
                             what=f"updating event {event_id}")
        return self._written(collection, href, data, new_etag, event_id, draft, instant)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        collection = self._collection(calendar)
        located = self._locate(collection, event_id)
        if located is None:
            return
        href, uid, instant = located
        url = self._absolute(collection, href)
        got = self._get_object(url)
        if got is None:
            return
        current, current_etag = got
        if etag and current_etag != etag:
            raise PreconditionFailed(f"caldav: event {event_id!r} changed since it was read")
        if instant is None:
            data = ical.remove_event(current, uid, fallback_uid=stem(href))
        else:
            floating = zone(self._window_for(collection).timezone)
            data = ical.exclude_occurrence(current, uid, instant, datetime.now(UTC), floating,
                                           fallback_uid=stem(href))
        if data is None:
            return  # already gone
        if data:
            self._put(url, data, etag=current_etag, what=f"deleting event {event_id}")
            return
        try:
            self._request("DELETE", url, headers={"If-Match": current_etag} if current_etag else {},
                          what=f"deleting event {event_id}", ok=(200, 204))
        except NotFound:
            return
        with self._lock:
            self._hrefs.get(collection, {}).pop(uid, None)
