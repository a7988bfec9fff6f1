"""Listing a collection's OOO events: `changes`, and the cursor it hands back.

A listing asks what changed with an RFC 6578 ``sync-collection`` REPORT (the cursor keeps
the server's sync token), then fetches every changed object in one ``calendar-multiget``
REPORT, never one GET per object; deletions come from the sync report. The report asks for
``calendar-data`` too: servers that send the bodies along (Radicale) save the multiget. A
server without sync-collection is listed by its ``getctag`` (unchanged: nothing to do) and
then an ETag listing compared with the ETags the cursor remembers. An invalid or expired
token (Radicale answers 403, Xandikos 412, both with ``DAV:valid-sync-token``) is
`CursorExpired`: the caller lists again. The connector does this REPORT itself rather than
through ``caldav``'s ``objects_by_sync_token``, which silently falls back to a full listing
and fetches objects one by one: here every listing knows the path it took.

The cursor remembers the listing mode, the sync token or ctag, the window, and per object
(href) its ETag and the event ids it gave, so a deleted object removes exactly its events.
A window that moved expands every series again. An object that no longer parses keeps what
it said until it parses again; an event moved out of the window is not reported removed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote
from xml.sax.saxutils import escape

from connectors import ical
from connectors.caldav.client import NS, XML_TYPE, precondition
from connectors.caldav.discovery import DiscoveryMixin
from connectors.caldav.objects import ObjectsMixin
from connectors.cursor import dump_cursor, load_cursor, window_key
from syncd.core.calendars import ChangeSet, PollRequest, RemoteEvent, SyncWindow
from syncd.core.errors import CursorExpired

__all__ = ["MAX_SYNC_PAGES", "MULTIGET_CHUNK", "ListingMixin"]

log = logging.getLogger(__name__)

MULTIGET_CHUNK = 1000  # hrefs per calendar-multiget REPORT
MAX_SYNC_PAGES = 100  # a truncated sync report is continued this many times at most

#: (new token, changed href -> etag, deleted hrefs, bodies the report carried)
_SyncListing = tuple[str | None, dict[str, str], set[str], dict[str, bytes]]


@dataclass(slots=True)
class _Object:
    """What a cursor remembers about one object: its ETag and the event ids it gave."""

    etag: str
    ids: tuple[str, ...]


@dataclass(slots=True)
class _Cursor:
    mode: str  # sync (RFC 6578) | etag (ctag + ETag listing)
    token: str | None
    ctag: str | None
    window: str
    objects: dict[str, _Object] = field(default_factory=dict)  # href -> what it gave

    def dump(self) -> str:
        return dump_cursor({"m": self.mode, "t": self.token, "c": self.ctag, "w": self.window,
                            "o": {h: [o.etag, ical.pack_ids(o.ids)] for h, o in self.objects.items()}})

    @classmethod
    def load(cls, text: str) -> _Cursor:
        def read(raw: dict[str, Any]) -> _Cursor:
            if raw["m"] not in ("sync", "etag"):
                raise ValueError("mode")
            objects = {str(h): _Object(str(v[0]), ical.unpack_ids(v[1])) for h, v in raw["o"].items()}
            return cls(raw["m"], raw["t"], raw["c"], str(raw["w"]), objects)
        return load_cursor(text, "caldav", read)


def _read_sync_page(root: Any, changed: dict[str, str], deleted: set[str], inline: dict[str, bytes]) -> bool:
    """Add one page of a sync report to what the earlier pages said; whether it was truncated."""
    truncated = False
    for response in root.iterfind("d:response", NS):
        href = response.findtext("d:href", namespaces=NS) or ""
        status = response.findtext("d:status", namespaces=NS) or ""
        if " 404" in status:
            deleted.add(href)
            changed.pop(href, None)
            inline.pop(href, None)
            continue
        if " 507" in status:
            truncated = True
            continue
        etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS)
        if etag is None or href.endswith("/"):
            continue  # the collection itself, or a sub-collection
        changed[href] = etag
        deleted.discard(href)
        data = response.findtext("d:propstat/d:prop/c:calendar-data", namespaces=NS)
        if data:
            inline[href] = data.encode()
    return truncated


class ListingMixin(DiscoveryMixin, ObjectsMixin):
    """`changes` and `changes_many`: sync-collection or ctag/ETag listing, multiget, the cursor."""

    def changes_many(self, requests_: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        return list(self._map(self.changes_or_error, requests_))

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        collection = self._collection(calendar)
        state = _Cursor.load(cursor) if cursor is not None else None
        if state is not None and state.window != window_key(window):
            state = None  # the window moved: expand every series again
        with self._lock:
            self._windows[collection] = window
        full = state is None
        if state is None or state.mode == "sync":
            listed = self._sync_listing(collection, state.token if state else None, full)
        else:
            listed = None
        if listed is None:  # no sync-collection on this server: ctag, then ETags
            return self._etag_changes(collection, state, window)
        token, changed, deleted, inline = listed
        old = {} if state is None else state.objects
        return self._apply(collection, window, "sync", token, None, old, changed, deleted, full, inline)

    def _sync_listing(self, collection: str, token: str | None, full: bool) -> _SyncListing | None:
        """(new token, changed href -> etag, deleted hrefs, bodies the report carried); None if
        the server has no sync-collection.

        The report asks for calendar-data too (RFC 6578 allows any property): servers that
        send it (Radicale) save the multiget; the others (Xandikos) answer 404 for it."""
        changed: dict[str, str] = {}
        deleted: set[str] = set()
        inline: dict[str, bytes] = {}
        for _ in range(MAX_SYNC_PAGES):
            body = ('<?xml version="1.0" encoding="utf-8"?>'
                    '<d:sync-collection xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                    f'<d:sync-token>{escape(token or "")}</d:sync-token><d:sync-level>1</d:sync-level>'
                    '<d:prop><d:getetag/><c:calendar-data/></d:prop></d:sync-collection>')
            answer = self._request("REPORT", collection, body=body, what="sync-collection", ok=range(100, 600),
                                   headers={"Content-Type": XML_TYPE, "Depth": "0"})
            if answer.status != 207:
                if token and precondition(answer.body, "valid-sync-token"):
                    raise CursorExpired("caldav: the sync token is no longer valid; listing again")
                unsupported = answer.status in (400, 405, 415, 422, 501) or (
                    answer.status == 403 and precondition(answer.body, "supported-report"))
                if full and unsupported:
                    return None
                raise self._translate(answer, "sync-collection")
            root = answer.xml()
            truncated = _read_sync_page(root, changed, deleted, inline)
            self._check_hrefs(collection, itertools.chain(changed, deleted), "sync-collection")
            token = root.findtext("d:sync-token", namespaces=NS) or token
            if not truncated:
                return token, changed, deleted, inline
        log.warning("caldav: %s: sync report still truncated after %d pages", collection, MAX_SYNC_PAGES)
        return token, changed, deleted, inline

    def _etag_changes(self, collection: str, state: _Cursor | None, window: SyncWindow) -> ChangeSet:
        ctag = self._ctag(collection)
        if state is not None and ctag is not None and state.ctag == ctag:
            return ChangeSet(cursor=state.dump())  # unchanged collection: nothing to list
        listing = self._etags(collection)
        old = {} if state is None else state.objects
        changed = {h: e for h, e in listing.items() if h not in old or old[h].etag != e}
        deleted = set(old) - set(listing)
        return self._apply(collection, window, "etag", None, ctag, old, changed, deleted, state is None)

    def _ctag(self, collection: str) -> str | None:
        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
                '<d:prop><cs:getctag/></d:prop></d:propfind>')
        answer = self._request("PROPFIND", collection, body=body, what="reading the ctag",
                               headers={"Content-Type": XML_TYPE, "Depth": "0"})
        value = answer.xml().findtext(".//cs:getctag", namespaces=NS)
        return value or None

    def _etags(self, collection: str) -> dict[str, str]:
        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                '<d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>')
        answer = self._request("PROPFIND", collection, body=body, what="listing ETags",
                               headers={"Content-Type": XML_TYPE, "Depth": "1"})
        found = {}
        for response in answer.xml().iterfind("d:response", NS):
            href = response.findtext("d:href", namespaces=NS) or ""
            etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS)
            if etag and not href.endswith("/"):
                found[href] = etag
        self._check_hrefs(collection, found, "listing ETags")
        return found

    def _multiget(self, collection: str, hrefs: Sequence[str]) -> Iterator[tuple[str, str, bytes | None]]:
        """(href, etag, body) of each href, in chunks of MULTIGET_CHUNK per REPORT; body None if gone."""
        for start in range(0, len(hrefs), MULTIGET_CHUNK):
            chunk = hrefs[start:start + MULTIGET_CHUNK]
            body = ('<?xml version="1.0" encoding="utf-8"?>'
                    '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
                    '<d:prop><d:getetag/><c:calendar-data/></d:prop>'
                    + "".join(f"<d:href>{escape(h)}</d:href>" for h in chunk) + "</c:calendar-multiget>")
            answer = self._request("REPORT", collection, body=body, what="calendar-multiget",
                                   headers={"Content-Type": XML_TYPE, "Depth": "1"})
            seen = set()
            for response in answer.xml().iterfind("d:response", NS):
                href = response.findtext("d:href", namespaces=NS) or ""
                self._resolve(collection, href, "calendar-multiget")
                seen.add(href)
                data = response.findtext("d:propstat/d:prop/c:calendar-data", namespaces=NS)
                etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS) or ""
                yield href, etag, data.encode() if data else None
            for href in chunk:
                if href not in seen and unquote(href) not in {unquote(s) for s in seen}:
                    yield href, "", None

    def _check_hrefs(self, collection: str, hrefs: Iterable[str], what: str) -> None:
        """`OffOrigin` if a listed href leaves the account's server: nothing is fetched there."""
        for href in hrefs:
            self._resolve(collection, href, what)

    def _apply(self, collection: str, window: SyncWindow, mode: str, token: str | None, ctag: str | None,
               old: dict[str, _Object], changed: dict[str, str], deleted: set[str], full: bool,
               inline: Mapping[str, bytes] | None = None) -> ChangeSet:
        """The change set and new cursor: ``deleted`` dropped, ``changed`` fetched and parsed."""
        objects = dict(old)
        events: list[RemoteEvent] = []
        removed: set[str] = set()
        for href in deleted:
            gone = objects.pop(href, None)
            if gone is not None:
                removed.update(gone.ids)
        fetch = [h for h in changed if h not in old or old[h].etag != changed[h] or full]
        carried = inline or {}
        fetched = [(h, changed[h], carried[h]) for h in fetch if h in carried]
        missing = [h for h in fetch if h not in carried]
        uids: dict[str, str] = {}
        for href, etag, data in itertools.chain(fetched, self._multiget(collection, missing)):
            before = objects.get(href)
            if data is None:  # deleted between the two reports
                if before is not None:
                    removed.update(before.ids)
                    objects.pop(href, None)
                continue
            parsed = self._parse(collection, href, data, etag or changed.get(href, ""), window)
            if parsed is None:  # unreadable: keep what it said until it parses again
                objects[href] = _Object(etag, before.ids if before else ())
                continue
            ids = [e.event_id for e in parsed.events]
            events.extend(parsed.events)
            for uid in parsed.uids:
                uids[uid] = href
            if before is not None:
                moved_away = set(before.ids) & set(parsed.outside)  # moved out of the window, not gone
                ids.extend(sorted(moved_away))
                removed.update(set(before.ids) - set(ids))
            objects[href] = _Object(etag or changed.get(href, ""), tuple(ids))
        with self._lock:
            known = self._hrefs.setdefault(collection, {})
            if full:
                known.clear()
            known.update(uids)
        current = {i for o in objects.values() for i in o.ids}
        unique: dict[str, RemoteEvent] = {}
        for event in events:
            unique.setdefault(event.event_id, event)
        cursor = _Cursor(mode, token, ctag, window_key(window), objects)
        return ChangeSet(events=list(unique.values()), removed=sorted(removed - current), cursor=cursor.dump(),
                         full=full)
