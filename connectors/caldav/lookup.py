"""Finding one event: the object of a UID (from the last listing, by our own naming, or a
``calendar-query`` on the UID), `get`, and `find_by_block_id` (our own object first, then a
``calendar-query`` on ``X-SYNCD-BLOCK-ID``).

An event id is a UID, or for one occurrence of a series ``<UID>`` plus its instant
(`connectors.ical.split_event_id`); a whole id that is a UID wins over a split. A single
event is found wherever it is, an occurrence inside the last window listed.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.sax.saxutils import escape

from connectors import ical
from connectors.caldav.client import NS, XML_TYPE
from connectors.caldav.discovery import DiscoveryMixin
from connectors.caldav.objects import ObjectsMixin
from syncd.core.calendars import RemoteEvent, SyncWindow
from syncd.core.errors import ConnectorError

__all__ = ["LookupMixin"]


class LookupMixin(DiscoveryMixin, ObjectsMixin):
    """UID -> href, event id -> (href, uid, instant), and the reads that use them."""

    def _window_for(self, collection: str, instant: str | None = None) -> SyncWindow:
        with self._lock:
            last = self._windows.get(collection)
        return ical.lookup_window(last, instant)

    def _everything(self, collection: str) -> SyncWindow:
        return ical.all_of_time(self._window_for(collection).timezone)

    def _href_of_uid(self, collection: str, uid: str) -> str | None:
        with self._lock:
            href = self._hrefs.get(collection, {}).get(uid)
        if href is not None:
            return href
        if uid.startswith("syncd-"):  # ours: named after the UID, so no search is needed
            own = self._own_href(collection, uid)
            if self._get_object(self._absolute(collection, own)) is not None:
                return own
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                '<d:prop><d:getetag/></d:prop><c:filter><c:comp-filter name="VCALENDAR">'
                '<c:comp-filter name="VEVENT"><c:prop-filter name="UID">'
                f'<c:text-match collation="i;octet">{escape(uid)}</c:text-match>'
                '</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>')
        answer = self._request("REPORT", collection, body=body, what=f"finding event {uid}",
                               headers={"Content-Type": XML_TYPE, "Depth": "1"})
        for response in answer.xml().iterfind("d:response", NS):
            found = str(response.findtext("d:href", namespaces=NS) or "")
            if found:
                self._resolve(collection, found, f"finding event {uid}")
            if found and not found.endswith("/"):
                with self._lock:
                    self._hrefs.setdefault(collection, {})[uid] = found
                return found
        return None

    def _locate(self, collection: str, event_id: str) -> tuple[str, str, str | None] | None:
        """(href, uid, instant) of an event id; a whole id that is a UID wins over a split."""
        candidates: list[tuple[str, str | None]] = [(event_id, None)]
        uid, instant = ical.split_event_id(event_id)
        if instant is not None:
            candidates.append((uid, instant))
        for cand_uid, cand_instant in candidates:
            href = self._href_of_uid(collection, cand_uid)
            if href is not None:
                return href, cand_uid, cand_instant
        return None

    def _event_in(self, collection: str, href: str, window: SyncWindow, uid: str,
                  match: Callable[[RemoteEvent], bool]) -> RemoteEvent | None:
        got = self._get_object(self._absolute(collection, href))
        if got is None:
            return None
        data, etag = got
        parsed = self._parse(collection, href, data, etag, window, only_uid=uid)
        if parsed is None:
            return None
        return next((e for e in parsed.events if match(e)), None)

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        collection = self._collection(calendar)
        located = self._locate(collection, event_id)
        if located is None:
            return None
        href, uid, instant = located
        window = self._everything(collection) if instant is None else self._window_for(collection, instant)
        return self._event_in(collection, href, window, uid, lambda e: e.event_id == event_id)

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        collection = self._collection(calendar)
        uid = f"syncd-{block_id}"
        own = self._event_in(collection, self._own_href(collection, uid), self._everything(collection), uid,
                             lambda e: e.block_id == block_id)
        if own is not None:
            return own
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                '<d:prop><d:getetag/><c:calendar-data/></d:prop><c:filter><c:comp-filter name="VCALENDAR">'
                '<c:comp-filter name="VEVENT"><c:prop-filter name="X-SYNCD-BLOCK-ID">'
                f'<c:text-match collation="i;octet">{escape(block_id)}</c:text-match>'
                '</c:prop-filter></c:comp-filter></c:comp-filter></c:filter></c:calendar-query>')
        try:
            answer = self._request("REPORT", collection, body=body, what=f"finding the event of block {block_id}",
                                   headers={"Content-Type": XML_TYPE, "Depth": "1"})
        except ConnectorError:
            return None  # a server without prop-filter support: our own object name was the way
        window = self._window_for(collection)
        for response in answer.xml().iterfind("d:response", NS):
            href = response.findtext("d:href", namespaces=NS) or ""
            self._resolve(collection, href, f"finding the event of block {block_id}")
            data = response.findtext("d:propstat/d:prop/c:calendar-data", namespaces=NS)
            etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS) or ""
            if data:
                parsed = self._parse(collection, href, data.encode(), etag, window)
                for event in parsed.events if parsed else ():
                    if event.block_id == block_id:
                        return event
        return None
