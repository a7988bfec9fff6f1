"""CalDAV calendars (Nextcloud, Fastmail, iCloud, SOGo, Zimbra, Radicale, Xandikos, ...).

Calendars
---------
A link's calendar is the collection's URL, or a calendar's display name (or the last
segment of its URL), found once through the account's principal and calendar home set with
the ``caldav`` library.

Reading
-------
A listing asks what changed with an RFC 6578 ``sync-collection`` REPORT (the cursor keeps
the server's sync token), then fetches every changed object in one ``calendar-multiget``
REPORT, never one GET per object; deletions come from the sync report. A server without
sync-collection is listed by its ``getctag`` (unchanged: nothing to do) and then an ETag
listing compared with the ETags the cursor remembers. An invalid or expired token
(Radicale answers 403, Xandikos 412, both with ``DAV:valid-sync-token``) is `CursorExpired`:
the caller lists again. The connector does this REPORT itself rather than through
``caldav``'s ``objects_by_sync_token``, which silently falls back to a full listing and
fetches objects one by one: here every listing knows the path it took.

The objects are read with the same iCalendar code as the ``local`` connector
(``connectors.ical``): OOO by ``X-MICROSOFT-CDO-BUSYSTATUS:OOF`` or the operator's rules,
recurring series expanded client-side inside the window (server-side ``expand`` shifts
occurrences after a DST change by an hour on Radicale), overrides, EXDATE, RDATE and
cancelled instances honoured, one broken object skipped with one log line. The cursor
remembers which event ids each object gave, so a deleted object removes exactly its events.

Writing
-------
A new block becomes its own object, ``syncd-<block id>.ics``, created with
``If-None-Match: *`` (a retried create finds the first one). Timed events are written in UTC
and all-day events as dates, so the object needs no VTIMEZONE and nothing the server does to
time zones can shift it. Edits of a person's event keep their other properties and go out
with ``If-Match``; a ``412`` is `PreconditionFailed`. Servers that rewrite an object on PUT
(new ETag, reordered properties, no ETag in the answer) are handled by reading the ETag
back; syncd compares what events mean, never their bytes, so a rewrite causes no update loop.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape

import requests
from lxml import etree

from connectors import ical
from connectors.base import CalendarConnector
from connectors.cursor import dump_cursor, load_cursor, window_key
from connectors.peruser import WorkerPool
from connectors.responses import read_body, retry_after, stale_connection
from syncd.core.calendars import ChangeSet, EventDraft, OooRules, PollRequest, RemoteEvent, SyncWindow
from syncd.core.errors import (
    AuthError,
    BadEventData,
    ConfigError,
    ConnectorError,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RateLimited,
    SyncdError,
    TransientError,
)
from syncd.core.time import zone

__all__ = ["CalDAVConnector"]

log = logging.getLogger("syncd.caldav")

DAV = "DAV:"
CAL = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
NS = {"d": DAV, "c": CAL, "cs": CS}
MULTIGET_CHUNK = 1000  # hrefs per calendar-multiget REPORT
MAX_SYNC_PAGES = 100  # a truncated sync report is continued this many times at most
# Safe for hostile servers: no entities, no DTD, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_blank_text=True)
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, OSError)


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


def _stem(href: str) -> str:
    name = unquote(href.rstrip("/").rsplit("/", 1)[-1])
    return name[: -len(".ics")] if name.endswith(".ics") else name


@dataclass
class _Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]

    def xml(self) -> Any:
        try:
            return etree.fromstring(self.body, parser=_PARSER)
        except etree.XMLSyntaxError as exc:
            raise TransientError(f"caldav: the server's answer is not valid XML ({exc}); will retry") from exc


def _etag_of(headers: Mapping[str, str]) -> str | None:
    value = headers.get("ETag") or headers.get("etag")
    return str(value) if value else None


def _precondition(body: bytes, name: str) -> bool:
    """Whether an error body names the DAV precondition ``name`` (e.g. valid-sync-token)."""
    return name.encode() in body


class CalDAVConnector(WorkerPool, CalendarConnector):
    """Thread-safe: one lock per connector; the daemon's poll workers share an instance.
    Many collections are listed side by side, ``workers`` at a time (one request each)."""

    provider = "caldav"

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 ca_bundle: str | None = None, rules: OooRules = OooRules(),  # noqa: B008 - frozen
                 max_occurrences: int = 1000, timeout: float = 30.0, account: str = "caldav",
                 workers: int = 8) -> None:
        super().__init__()
        self.workers = workers
        self.url = url if url.endswith("/") else url + "/"
        self.username = username
        self.password = password
        self.ca_bundle = ca_bundle
        self.rules = rules
        self.timeout = timeout
        self.account = account
        self.limits = ical.ExpansionLimits(max_occurrences=max_occurrences)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._collections: dict[str, str] = {}  # link calendar -> collection URL
        self._hrefs: dict[str, dict[str, str]] = {}  # collection URL -> UID -> href (from listings)
        self._windows: dict[str, SyncWindow] = {}  # collection URL -> last window listed
        self._reported: dict[tuple[str, str], str] = {}  # (collection, href) -> etag already logged as bad

    # -- HTTP ----------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our ca_bundle
            session.verify = self.ca_bundle or True
            if self.username is not None:
                session.auth = (self.username, self.password or "")
            with self._lock:
                self._sessions.append(session)
        return session

    def _request(self, method: str, url: str, *, body: bytes | str | None = None,
                 headers: Mapping[str, str] | None = None, what: str,
                 ok: Iterable[int] = (200, 201, 204, 207)) -> _Answer:
        data = body.encode() if isinstance(body, str) else body
        for attempt in range(2):
            try:
                response = self._session().request(method, url, data=data, headers=dict(headers or {}),
                                                   timeout=self.timeout, stream=True)
                break
            except requests.ConnectionError as exc:
                if attempt == 0 and not isinstance(exc, requests.ConnectTimeout) and stale_connection(exc):
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise TransientError(f"caldav: {what}: cannot reach the server ({type(exc).__name__}); "
                                     "will retry") from exc
            except _NETWORK_ERRORS as exc:
                raise TransientError(f"caldav: {what}: {type(exc).__name__}; will retry") from exc
        try:
            body = read_body(response, f"caldav: {what}")
        except (*_NETWORK_ERRORS, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientError(f"caldav: {what}: the answer was cut off ({type(exc).__name__}); will retry") from exc
        answer = _Answer(response.status_code, body, response.headers)
        if answer.status in ok:
            return answer
        raise self._translate(answer, what)

    def _translate(self, answer: _Answer, what: str) -> SyncdError:
        status = answer.status
        text = f"caldav: {what}: HTTP {status}"
        if status == 401:
            return AuthError(f"{text}: the server refused the username or password")
        if status == 403:
            return AuthError(f"{text}: access denied to this calendar")
        if status in (404, 410):
            return NotFound(f"{text}: not found")
        if status == 412:
            return PreconditionFailed(f"{text}: changed since it was read")
        if status in (429, 503):
            return RateLimited(f"{text}: the server asks to slow down", retry_after=retry_after(answer.headers))
        if status >= 500 or status == 408:
            return TransientError(f"{text}: the server is having trouble; will retry")
        return ConnectorError(f"{text}: request refused")

    # -- calendars -----------------------------------------------------------------------------
    def _collection(self, calendar: str) -> str:
        with self._lock:
            known = self._collections.get(calendar)
        if known is not None:
            return known
        if calendar.startswith(("http://", "https://")):
            found = calendar if calendar.endswith("/") else calendar + "/"
        elif calendar.startswith("/"):
            found = urljoin(self.url, calendar if calendar.endswith("/") else calendar + "/")
        else:
            found = self._discover(calendar)
        with self._lock:
            self._collections[calendar] = found
        return found

    def _discover(self, name: str) -> str:
        """A calendar by display name (or URL segment), through principal -> calendar home set."""
        from caldav.davclient import DAVClient
        from caldav.lib import error as caldav_error

        client = DAVClient(url=self.url, username=self.username, password=self.password,
                           ssl_verify_cert=self.ca_bundle or True, timeout=int(self.timeout))
        try:
            calendars = client.principal().calendars()  # type: ignore[no-untyped-call]
            names = []
            for cal in calendars:
                display = cal.get_display_name() or ""
                segment = _stem(str(cal.url))
                names.append(display or segment)
                if name.lower() in (display.lower(), segment.lower()):
                    return str(cal.url) if str(cal.url).endswith("/") else str(cal.url) + "/"
        except caldav_error.AuthorizationError as exc:
            raise AuthError(f"caldav: {self.url}: the server refused the username or password") from exc
        except (caldav_error.DAVError, requests.RequestException, OSError) as exc:
            raise TransientError(f"caldav: finding calendar {name!r} on {self.url} failed: {exc}") from exc
        finally:
            client.close()
        raise ConfigError(f"caldav: no calendar named {name!r} at {self.url} (found: {', '.join(names) or 'none'})")

    # -- reading -------------------------------------------------------------------------------
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

    def _sync_listing(self, collection: str, token: str | None,
                      full: bool) -> tuple[str | None, dict[str, str], set[str], dict[str, bytes]] | None:
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
                                   headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "0"})
            if answer.status != 207:
                if token and _precondition(answer.body, "valid-sync-token"):
                    raise CursorExpired("caldav: the sync token is no longer valid; listing again")
                unsupported = answer.status in (400, 405, 415, 422, 501) or (
                    answer.status == 403 and _precondition(answer.body, "supported-report"))
                if full and unsupported:
                    return None
                raise self._translate(answer, "sync-collection")
            root = answer.xml()
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
                               headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "0"})
        value = answer.xml().findtext(".//cs:getctag", namespaces=NS)
        return value or None

    def _etags(self, collection: str) -> dict[str, str]:
        body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                '<d:prop><d:getetag/><d:resourcetype/></d:prop></d:propfind>')
        answer = self._request("PROPFIND", collection, body=body, what="listing ETags",
                               headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "1"})
        found = {}
        for response in answer.xml().iterfind("d:response", NS):
            href = response.findtext("d:href", namespaces=NS) or ""
            etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS)
            if etag and not href.endswith("/"):
                found[href] = etag
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
                                   headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "1"})
            seen = set()
            for response in answer.xml().iterfind("d:response", NS):
                href = response.findtext("d:href", namespaces=NS) or ""
                seen.add(href)
                data = response.findtext("d:propstat/d:prop/c:calendar-data", namespaces=NS)
                etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS) or ""
                yield href, etag, data.encode() if data else None
            for href in chunk:
                if href not in seen and unquote(href) not in {unquote(s) for s in seen}:
                    yield href, "", None

    def _apply(self, collection: str, window: SyncWindow, mode: str, token: str | None, ctag: str | None,
               old: dict[str, _Object], changed: dict[str, str], deleted: set[str], full: bool,
               inline: Mapping[str, bytes] | None = None) -> ChangeSet:
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

    def _parse(self, collection: str, href: str, data: bytes, etag: str, window: SyncWindow,
               only_uid: str | None = None) -> ical.ParsedObject | None:
        try:
            parsed = ical.parse_ooo_events(data, window, self.rules, etag=etag, fallback_uid=_stem(href),
                                           limits=self.limits, only_uid=only_uid)
        except BadEventData as exc:
            self._report(collection, href, etag, f"skipped: {exc}")
            return None
        for problem in parsed.problems:
            self._report(collection, href, etag, problem)
        return parsed

    def _report(self, collection: str, href: str, etag: str, problem: str) -> None:
        """One log line per object version, not one per poll."""
        key = (collection, href)
        with self._lock:
            if self._reported.get(key) == etag + problem:
                return
            self._reported[key] = etag + problem
        log.warning("caldav: %s: %s", href, problem)

    # -- single objects ------------------------------------------------------------------------
    def _get_object(self, href: str) -> tuple[bytes, str] | None:
        try:
            answer = self._request("GET", href, what=f"reading {href}", ok=(200,))
        except NotFound:
            return None
        etag = _etag_of(answer.headers)
        if etag is None:  # some servers leave it out: ask for it
            etag = self._etags_of([href]).get(href, "")
        return answer.body, etag

    def _etags_of(self, hrefs: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for href in hrefs:
            body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                    '<d:prop><d:getetag/></d:prop></d:propfind>')
            try:
                answer = self._request("PROPFIND", href, body=body, what=f"reading the ETag of {href}",
                                       headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "0"})
            except NotFound:
                continue
            etag = answer.xml().findtext(".//d:getetag", namespaces=NS)
            if etag:
                found[href] = etag
        return found

    def _absolute(self, collection: str, href: str) -> str:
        return urljoin(collection, href)

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
                               headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "1"})
        for response in answer.xml().iterfind("d:response", NS):
            found = str(response.findtext("d:href", namespaces=NS) or "")
            if found and not found.endswith("/"):
                with self._lock:
                    self._hrefs.setdefault(collection, {})[uid] = found
                return found
        return None

    @staticmethod
    def _own_href(collection: str, uid: str) -> str:
        path = urlsplit(collection).path
        return f"{path}{quote(uid, safe='@')}.ics"

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

    def _window_for(self, collection: str, instant: str | None = None) -> SyncWindow:
        with self._lock:
            last = self._windows.get(collection)
        return ical.lookup_window(last, instant)

    def _everything(self, collection: str) -> SyncWindow:
        return ical.all_of_time(self._window_for(collection).timezone)

    def _event_in(self, collection: str, href: str, window: SyncWindow, uid: str,
                  match: Any) -> RemoteEvent | None:
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
                                   headers={"Content-Type": "application/xml; charset=utf-8", "Depth": "1"})
        except ConnectorError:
            return None  # a server without prop-filter support: our own object name was the way
        window = self._window_for(collection)
        for response in answer.xml().iterfind("d:response", NS):
            href = response.findtext("d:href", namespaces=NS) or ""
            data = response.findtext("d:propstat/d:prop/c:calendar-data", namespaces=NS)
            etag = response.findtext("d:propstat/d:prop/d:getetag", namespaces=NS) or ""
            if data:
                parsed = self._parse(collection, href, data.encode(), etag, window)
                for event in parsed.events if parsed else ():
                    if event.block_id == block_id:
                        return event
        return None

    # -- writing -------------------------------------------------------------------------------
    def _put(self, url: str, data: bytes, *, etag: str | None = None, new: bool = False, what: str) -> str:
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if new:
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        answer = self._request("PUT", url, body=data, headers=headers, what=what, ok=(200, 201, 204))
        written = _etag_of(answer.headers)
        if written is None:  # the server changed what we sent (allowed, RFC 4791 5.3.4): ask for the ETag
            written = self._etags_of([url]).get(url, "")
        return written

    def _written(self, collection: str, href: str, data: bytes, etag: str, event_id: str,
                 draft: EventDraft, instant: str | None) -> RemoteEvent:
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
            data = ical.replace_event(current, uid, draft, now, self.rules, fallback_uid=_stem(href))
        else:
            floating = zone(self._window_for(collection).timezone)
            data = ical.override_occurrence(current, uid, instant, draft, now, self.rules, floating,
                                            fallback_uid=_stem(href))
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
            data = ical.remove_event(current, uid, fallback_uid=_stem(href))
        else:
            floating = zone(self._window_for(collection).timezone)
            data = ical.exclude_occurrence(current, uid, instant, datetime.now(UTC), floating,
                                           fallback_uid=_stem(href))
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

    def close(self) -> None:
        self._close_pool()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

