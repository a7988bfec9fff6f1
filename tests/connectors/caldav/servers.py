"""Real CalDAV servers (Radicale, Xandikos) started on loopback for tests and benchmarks.

`radicale_server(tmp_dir)` and `xandikos_server(tmp_dir)` start the server installed in this
virtualenv as a subprocess bound to ``127.0.0.1`` on a free port, wait until it answers HTTP
(at most 20 s, else `RuntimeError` with the server's log) and stop it on exit (SIGTERM, then
SIGKILL). Each yields a `CalDAVServer`: a handle with the account (``base_url``,
``username``, ``password``), the discovered ``principal_url`` and ``home_url`` (the calendar
home set), and raw-HTTP helpers to make calendars and read and write objects the way another
client would (``make_calendar``, ``put_event``, ``get_event``, ``delete_event``,
``list_hrefs``, ``seed``, ``sync_collection``, ``properties``). `vevent` and `vcalendar`
render test data; `CalDAVPerson` is the contract suite's `Person` for a CalDAV calendar.

What each server needs
----------------------
Radicale 3.9: ``python -m radicale --config "" --server-hosts 127.0.0.1:PORT
--storage-filesystem-folder DIR --auth-type none --auth-delay 0 --logging-level warning``
(``--config ""`` keeps ``/etc/radicale/config`` and ``~/.config/radicale/config`` out; for
``--auth-delay`` see the sync-token quirk below). Auth ``none`` still
wants a Basic username: it becomes the user (any password), whose principal ``/alice/`` is
created on the first authenticated request and is also the calendar home set. The default
rights (``owner_only``) allow calendars directly under it only (``/alice/<name>/``). It
answers HTTP/1.0 (a connection per request) and logs warnings (each failed precondition,
each bad sync token) to its log file, ``tmp_dir/radicale.log``.

Xandikos 0.4.10: ``python -m xandikos serve -d DIR --defaults -l 127.0.0.1 -p PORT
--no-detect-systemd --state-dir DIR``. No authentication (a Basic header is ignored);
``--defaults`` creates the principal ``/user/``, the home set ``/user/calendars/`` and a
calendar ``/user/calendars/calendar/``. PROPFIND and REPORT bodies need an XML Content-Type
(``application/octet-stream`` or curl's form type gets 415). Storage is a git repository with
a working tree per collection: every write is a commit that reads and rewrites the git index,
so one PUT costs O(objects in the calendar) (~16 ms at 500). It writes an access log line per
request to ``tmp_dir/xandikos.log``.

Quirks, verified against the installed versions (``tests/connectors/caldav/test_servers.py`` pins them)
---------------------------------------------------------------------------------------------
- ``calendar-availability`` (RFC 7953): Xandikos keeps it on calendars (PROPPATCH, then
  PROPFIND), but setting it first turns the collection's ``.xandikos`` metadata file into a
  directory its git store then cannot read (the collection stops being a calendar) unless the
  metadata lives in the repository's config; a PROPFIND of it on the scheduling inbox fails
  with **500** (the inbox lacks the method behind it). Radicale answers 404 for the property.
- Invalid sync token in a ``sync-collection`` REPORT: Radicale answers **403** with the body
  ``<?xml version='1.0' encoding='utf-8'?>\n<error xmlns="DAV:"><valid-sync-token /></error>``
  (text/xml), for a malformed token (``bogus``) and for a well-formed one it never issued or
  has forgotten (its config drops tokens older than ``max_sync_token_age``, 30 days). Xandikos
  answers **412** with ``<ns0:error xmlns:ns0="DAV:"><ns0:valid-sync-token />
  <ns0:responsedescription>Requested sync token bogus is invalid</ns0:responsedescription>
  </ns0:error>``, also for both kinds. Treat 403 or 412 carrying ``DAV:valid-sync-token`` as
  "token expired: full resync". Radicale sleeps ``[auth] delay`` before every 401/403, this
  one included: 0.5-1.5 s with its default of 1 (``radicale_server`` sets 0, ``auth_delay=``
  to restore it), so a token-expiry round trip is slow against a stock Radicale.
- Both advertise and implement ``sync-collection`` (RFC 6578), ``calendar-multiget`` and
  ``calendar-query`` (and ``free-busy-query``, ``expand-property``); both serve ``CS:getctag``
  and ``DAV:sync-token`` by PROPFIND, and a token read by PROPFIND works in a later REPORT.
  Radicale's ctag is quoted (``"<sha256>"``) and its token a URL
  (``http://radicale.org/ns/sync/<sha256>``); Xandikos uses the git tree id for both, unquoted
  and identical. In a sync answer a deleted member is a ``<response>`` with a 404 status and
  no propstat; Radicale puts ``<sync-token>`` first, Xandikos last.
- Hrefs: Radicale percent-encodes them (``/alice/c/abc%40example.com.ics``), Xandikos does
  not (``/user/calendars/c/abc@example.com.ics``): compare unquoted paths.
- Both rewrite an object on PUT: a GET returns the server's re-serialisation, not the bytes
  sent. Radicale (vobject) reorders properties (DTSTAMP after DTEND, PRODID after CALSCALE)
  and refolds lines; Xandikos (icalendar ``to_ical()``) puts SUMMARY first and UID after
  DTSTAMP and refolds at exactly 75 octets. The ETag returned by the PUT is the stored body's
  (a GET returns the same one), and the rewrite is idempotent: PUTting back the server's own
  body keeps the ETag. So compare content, never bytes, to avoid update loops.
- Radicale keeps only the first value of a multi-valued ``RDATE:a,b`` line in a VTIMEZONE
  (separate RDATE lines survive); Xandikos keeps it. (Radicale's server-side
  ``expand`` and time-range filter are off by an hour after a DST change: expand client-side.)
- Preconditions: both answer 412 to ``If-Match`` with a stale ETag (PUT and DELETE) and to
  ``If-None-Match: *`` on an existing object; both answer 404 to DELETE of a missing object.
  A PUT of a UID that already lives at another href is refused with
  ``<C:no-uid-conflict/>``: Radicale **409**, Xandikos **412** (so a 412 on create is not
  always "someone else changed it": look at the body).
- Whole-collection upload: Radicale accepts a PUT of one VCALENDAR to the collection URL and
  *replaces* the collection with one object per UID (``<uid>.ics``; a series and its
  overrides stay one object). That path differs from a per-item PUT: each object gets
  Radicale's PRODID (CALSCALE dropped) and VTIMEZONEs regenerated from vobject's parsed zone
  (different DTSTART/RRULE lines); the collection's properties are replaced (its displayname
  survives only as ``X-WR-CALNAME`` in the upload, which `seed` adds); and its sync-token
  history goes, so tokens issued before the seed get 403. A GET of a Radicale collection
  returns the whole calendar as one text/calendar body. Xandikos cannot take a whole
  VCALENDAR: PUT to a collection is 405, and a multi-UID VCALENDAR PUT to an object URL or
  POSTed to the collection (RFC 5995 add-member: 200, ``Location: //user/...``) is stored as
  ONE object (Radicale answers 400 to a multi-UID PUT to an object URL, 405 to POST on a
  collection). So `seed` splits the VCALENDAR and uses concurrent per-item PUTs there (the
  server serialises them; 500 events take ~8 s, against ~0.5 s for Radicale's single PUT).
  A GET of a Xandikos collection returns an HTML page.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
import icalendar

from syncd.core.ooo import OooContent
from tests.support import free_port

__all__ = [
    "CALDAV",
    "CS",
    "DAV",
    "OOF_LINE",
    "CalDAVError",
    "CalDAVPerson",
    "CalDAVServer",
    "ServerKind",
    "radicale_server",
    "run_server",
    "server",
    "split_by_uid",
    "vcalendar",
    "vevent",
    "xandikos_server",
]

ServerKind = Literal["radicale", "xandikos"]

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
OOF_LINE = "X-MICROSOFT-CDO-BUSYSTATUS:OOF"
PRODID = "-//syncd tests//CalDAV person//EN"

START_TIMEOUT = 20.0  # seconds until a server must answer HTTP
REQUEST_TIMEOUT = 60.0
SEED_TIMEOUT = 600.0  # one PUT of a large VCALENDAR
SEED_WORKERS = 8  # concurrent PUTs where a server cannot take a whole VCALENDAR
_MARKER_PREFIXES = ("X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS")


def _clark(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class CalDAVError(Exception):
    """An unexpected HTTP status from the server (``status``, ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:500]}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


class CalDAVServer:
    """A running CalDAV server and an HTTP client for it (see the module docstring)."""

    def __init__(self, kind: ServerKind, base_url: str, username: str, password: str) -> None:
        self.kind: ServerKind = kind
        self.base_url = base_url
        self.username = username
        self.password = password
        self.principal_url = ""
        self.home_url = ""
        # trust_env=False: loopback only, never through an HTTP(S)_PROXY from the environment
        self.client = httpx.Client(auth=(username, password), timeout=REQUEST_TIMEOUT, trust_env=False)
        self.requests_made = 0  # by `request` (and so by every helper), for "one request" checks
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CalDAVServer({self.kind!r}, {self.base_url!r})"

    def close(self) -> None:
        self.client.close()

    # -- raw HTTP ----------------------------------------------------------------------------
    def url(self, href: str) -> str:
        """The absolute URL of ``href`` (a path on this server, or already absolute)."""
        return urljoin(self.base_url, href)

    def request(self, method: str, url: str, *, body: str | bytes | None = None,
                headers: Mapping[str, str] | None = None, expect: Iterable[int] | None = None,
                timeout: float = REQUEST_TIMEOUT) -> httpx.Response:
        """One request; raises `CalDAVError` unless the status is in ``expect`` (default: 2xx)."""
        content = body.encode("utf-8") if isinstance(body, str) else body
        with self._count_lock:
            self.requests_made += 1
        response = self.client.request(method, self.url(url), content=content, headers=dict(headers or {}),
                                       timeout=timeout)
        ok = response.status_code in set(expect) if expect is not None else response.is_success
        if not ok:
            raise CalDAVError(method, str(response.url), response.status_code, response.text)
        return response

    def _xml(self, method: str, url: str, body: str, depth: str | None,
             expect: Iterable[int] = (207,)) -> ET.Element:
        headers = {"Content-Type": "application/xml; charset=utf-8"}
        if depth is not None:
            headers["Depth"] = depth
        return ET.fromstring(self.request(method, url, body=body, headers=headers, expect=expect).content)

    def propfind(self, url: str, props: Iterable[tuple[str, str]],
                 depth: str = "0") -> dict[str, dict[str, ET.Element]]:
        """PROPFIND ``props`` (``(namespace, name)`` pairs) -> {href: {clark name: element}},
        found (200) properties only."""
        prop_xml = "".join(f'<x:{name} xmlns:x="{ns}"/>' for ns, name in props)
        root = self._xml("PROPFIND", url, f'<?xml version="1.0" encoding="utf-8"?>'
                         f'<d:propfind xmlns:d="DAV:"><d:prop>{prop_xml}</d:prop></d:propfind>', depth)
        found: dict[str, dict[str, ET.Element]] = {}
        for response in root.iter(_clark(DAV, "response")):
            href = (response.findtext(_clark(DAV, "href")) or "").strip()
            values = found.setdefault(href, {})
            for propstat in response.iter(_clark(DAV, "propstat")):
                if " 200 " not in (propstat.findtext(_clark(DAV, "status")) or ""):
                    continue
                prop = propstat.find(_clark(DAV, "prop"))
                for element in prop if prop is not None else ():
                    values[element.tag] = element
        return found

    def properties(self, url: str, *props: tuple[str, str]) -> dict[str, ET.Element]:
        """The found properties of ``url`` itself (depth 0)."""
        return next(iter(self.propfind(url, props).values()), {})

    def _href_property(self, url: str, namespace: str, name: str) -> str:
        element = self.properties(url, (namespace, name)).get(_clark(namespace, name))
        href = element.findtext(_clark(DAV, "href")) if element is not None else None
        if not href:
            raise RuntimeError(f"{self.kind}: no {name} on {url}")
        return self.url(href.strip())

    def discover(self) -> None:
        """Set ``principal_url`` and ``home_url`` from current-user-principal and calendar-home-set."""
        self.principal_url = self._href_property(self.base_url, DAV, "current-user-principal")
        self.home_url = self._href_property(self.principal_url, CALDAV, "calendar-home-set")

    def report(self, url: str, body: str, depth: str = "1",
               expect: Iterable[int] | None = None) -> httpx.Response:
        """A REPORT; returns the response (``expect`` defaults to 2xx)."""
        return self.request("REPORT", url, body=body, expect=expect,
                            headers={"Content-Type": "application/xml; charset=utf-8", "Depth": depth})

    def sync_collection(self, calendar_url: str, token: str = "",
                        expect: Iterable[int] | None = None) -> httpx.Response:
        """An RFC 6578 sync-collection REPORT (hrefs and ETags only) from ``token`` ("" = initial)."""
        body = ('<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
                f"<d:sync-token>{_xml_escape(token)}</d:sync-token><d:sync-level>1</d:sync-level>"
                "<d:prop><d:getetag/></d:prop></d:sync-collection>")
        return self.report(calendar_url, body, depth="0", expect=expect)

    def sync_token(self, calendar_url: str) -> str:
        return self.properties(calendar_url, (DAV, "sync-token"))[_clark(DAV, "sync-token")].text or ""

    def ctag(self, calendar_url: str) -> str:
        return self.properties(calendar_url, (CS, "getctag"))[_clark(CS, "getctag")].text or ""

    def set_availability(self, url: str, ics: str) -> None:
        """PROPPATCH ``calendar-availability`` (RFC 7953) of a calendar or scheduling inbox."""
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<d:propertyupdate xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
                f"<c:calendar-availability>{_xml_escape(ics)}</c:calendar-availability>"
                "</d:prop></d:set></d:propertyupdate>")
        self._xml("PROPPATCH", url, body, None)

    # -- calendars and objects ---------------------------------------------------------------
    def make_calendar(self, name: str) -> str:
        """MKCALENDAR ``<home>/<name>/`` (display name ``name``); returns its absolute URL."""
        url = urljoin(self.home_url, quote(name, safe="") + "/")
        body = ('<?xml version="1.0" encoding="utf-8"?>'
                '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
                f"<d:displayname>{_xml_escape(name)}</d:displayname>"
                '<c:supported-calendar-component-set><c:comp name="VEVENT"/></c:supported-calendar-component-set>'
                "</d:prop></d:set></c:mkcalendar>")
        self.request("MKCALENDAR", url, body=body, headers={"Content-Type": "application/xml; charset=utf-8"},
                     expect=(201,))
        return url

    @staticmethod
    def event_url(calendar_url: str, uid: str) -> str:
        return urljoin(calendar_url, quote(uid, safe="@") + ".ics")

    def put_event(self, calendar_url: str, uid: str, ics_text: str, etag: str | None = None, *,
                  create_only: bool = False) -> str:
        """PUT ``<calendar_url><uid>.ics``; returns the new ETag. ``etag`` sends If-Match,
        ``create_only`` If-None-Match: * (a failed precondition raises `CalDAVError` 412)."""
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if etag is not None:
            headers["If-Match"] = etag
        if create_only:
            headers["If-None-Match"] = "*"
        response = self.request("PUT", self.event_url(calendar_url, uid), body=ics_text, headers=headers)
        new_etag: str | None = response.headers.get("ETag")
        if new_etag is None:  # neither server omits it; a GET is the fallback for others
            found = self.get_event(calendar_url, uid)
            assert found is not None, uid
            new_etag = found[1]
        return new_etag

    def get_event(self, calendar_url: str, uid: str) -> tuple[str, str] | None:
        """(body, ETag) of ``<uid>.ics``, None when there is none."""
        response = self.request("GET", self.event_url(calendar_url, uid), expect=(200, 404))
        if response.status_code == 404:
            return None
        return response.text, response.headers["ETag"]

    def delete_event(self, calendar_url: str, href_or_uid: str, etag: str | None = None) -> None:
        """DELETE an object by href (``/...`` or ``http...``) or by UID; ``etag`` sends If-Match."""
        if href_or_uid.startswith(("/", "http://", "https://")):
            url = self.url(href_or_uid)
        else:
            url = self.event_url(calendar_url, href_or_uid)
        self.request("DELETE", url, headers={"If-Match": etag} if etag is not None else None)

    def list_hrefs(self, calendar_url: str) -> dict[str, str]:
        """{href: ETag} of every object in the calendar (PROPFIND depth 1); hrefs as the server
        writes them (absolute paths)."""
        own_path = urlsplit(calendar_url).path
        found = self.propfind(calendar_url, [(DAV, "getetag")], depth="1")
        return {href: element.text or "" for href, props in found.items()
                if (element := props.get(_clark(DAV, "getetag"))) is not None
                and urlsplit(href).path.rstrip("/") != own_path.rstrip("/")}

    def seed(self, calendar_url: str, ics_text: str) -> None:
        """Replace the calendar's objects with those of one whole VCALENDAR: one object per UID.

        Radicale: ONE PUT of the VCALENDAR to the collection URL (the server splits it by UID;
        the displayname is kept by sending it as ``X-WR-CALNAME``; sync tokens issued earlier
        become invalid). Xandikos cannot take a whole VCALENDAR (PUT to a collection is 405 and
        a multi-UID object stays one object), so the VCALENDAR is split here and uploaded with
        concurrent per-item PUTs (``SEED_WORKERS`` at a time), and objects not in it deleted.
        Use it on a fresh calendar from `make_calendar` for the same result on both servers.
        """
        if self.kind == "radicale":
            self._seed_whole(calendar_url, ics_text)
        else:
            self._seed_per_item(calendar_url, ics_text)

    def _seed_whole(self, calendar_url: str, ics_text: str) -> None:
        name = self.properties(calendar_url, (DAV, "displayname")).get(_clark(DAV, "displayname"))
        if name is not None and name.text and "\nX-WR-CALNAME" not in ics_text.replace("\r\n", "\n"):
            lines = _unfold(ics_text)
            lines.insert(1, _fold(f"X-WR-CALNAME:{_escape_text(name.text)}"))
            ics_text = "\r\n".join(lines) + "\r\n"
        self.request("PUT", calendar_url, body=ics_text, headers={"Content-Type": "text/calendar; charset=utf-8"},
                     timeout=SEED_TIMEOUT)

    def _seed_per_item(self, calendar_url: str, ics_text: str) -> None:
        objects = split_by_uid(ics_text)
        keep = {unquote(urlsplit(self.event_url(calendar_url, uid)).path) for uid in objects}
        stale = [href for href in self.list_hrefs(calendar_url) if unquote(urlsplit(href).path) not in keep]
        with ThreadPoolExecutor(SEED_WORKERS) as pool:
            puts = [pool.submit(self.put_event, calendar_url, uid, text) for uid, text in objects.items()]
            deletes = [pool.submit(self.delete_event, calendar_url, href) for href in stale]
            for put in puts:
                put.result()
            for delete in deletes:
                delete.result()


# -- test data ---------------------------------------------------------------------------------
def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_text(text: str) -> str:
    """An iCalendar TEXT value (RFC 5545 3.3.11)."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def _fold(line: str) -> str:
    """Fold a content line at 75 octets (RFC 5545 3.1), never inside a UTF-8 sequence."""
    parts: list[str] = []
    current, size, limit = "", 0, 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            parts.append(current)
            current, size, limit = " ", 1, 75
        current += char
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def _format_time(value: datetime | date, name: str) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} {value.isoformat()} is naive; pass an aware datetime or a date")
        return f"{name}:{value.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    return f"{name};VALUE=DATE:{value:%Y%m%d}"


def vevent(uid: str, start: datetime | date, end: datetime | date, *, summary: str = "Out of office",
           ooo: bool = True, extra_lines: Iterable[str] = ()) -> str:
    """A complete VCALENDAR with one VEVENT.

    Aware datetimes are written in UTC (``DTSTART:20261224T090000Z``), dates as all-day
    (``DTSTART;VALUE=DATE:20261224``). ``ooo`` adds ``X-MICROSOFT-CDO-BUSYSTATUS:OOF``;
    ``TRANSP:OPAQUE`` is written unless ``extra_lines`` (unfolded content lines, added last)
    has a TRANSP of its own.
    """
    extra = list(extra_lines)
    lines = [
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{datetime.now(UTC):%Y%m%dT%H%M%SZ}",
        _format_time(start, "DTSTART"),
        _format_time(end, "DTEND"),
        f"SUMMARY:{_escape_text(summary)}",
    ]
    if not any(line.upper().startswith("TRANSP") for line in extra):
        lines.append("TRANSP:OPAQUE")
    if ooo:
        lines.append(OOF_LINE)
    lines += [*extra, "END:VEVENT"]
    return _calendar_text(lines)


def _calendar_text(body: list[str]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN", *body, "END:VCALENDAR"]
    return "".join(_fold(line) + "\r\n" for line in lines)


_CALENDAR_PROPERTIES = ("VERSION:", "PRODID:", "CALSCALE:", "METHOD:")


def vcalendar(events: list[str]) -> str:
    """One VCALENDAR holding the components of ``events`` (`vevent` results, other VCALENDAR
    texts, or bare ``BEGIN:VEVENT``...``END:VEVENT`` blocks); VTIMEZONEs are kept once per TZID."""
    body: list[str] = []
    timezones: set[str] = set()
    for text in events:
        depth = 0
        component: list[str] = []
        for line in _unfold(text):
            upper = line.upper()
            if upper in ("BEGIN:VCALENDAR", "END:VCALENDAR"):
                continue
            if upper.startswith("BEGIN:"):
                depth += 1
            if depth == 0:
                if not upper.startswith(_CALENDAR_PROPERTIES):
                    raise ValueError(f"unexpected calendar property {line!r} outside a component")
                continue
            component.append(line)
            if upper.startswith("END:"):
                depth -= 1
                if depth == 0:
                    if component[0].upper() == "BEGIN:VTIMEZONE":
                        tzid = next((c for c in component if c.upper().startswith("TZID")), "")
                        if tzid not in timezones:
                            timezones.add(tzid)
                            body[:0] = component
                    else:
                        body += component
                    component = []
    return _calendar_text(body)


def split_by_uid(ics_text: str) -> dict[str, str]:
    """{UID: VCALENDAR text with that UID's components and every VTIMEZONE} of one VCALENDAR."""
    calendar = icalendar.Calendar.from_ical(ics_text)
    timezones = [c for c in calendar.subcomponents if c.name == "VTIMEZONE"]
    grouped: dict[str, list[icalendar.cal.Component]] = {}
    for component in calendar.subcomponents:
        if component.name != "VTIMEZONE":
            if "UID" not in component:
                raise ValueError(f"a {component.name} without UID cannot be seeded")
            grouped.setdefault(str(component["UID"]), []).append(component)
    texts: dict[str, str] = {}
    for uid, components in grouped.items():
        single = icalendar.Calendar()
        for key in ("VERSION", "PRODID", "CALSCALE"):
            if key in calendar:
                single[key] = calendar[key]
        for component in [*timezones, *components]:
            single.add_component(component)
        texts[uid] = single.to_ical().decode("utf-8")
    return texts


# -- people ------------------------------------------------------------------------------------
class CalDAVPerson:
    """Somebody editing a CalDAV calendar in their own app (the contract suite's `Person`).

    Events are plain VEVENTs at ``<calendar_url><uid>.ics``; the event id is the UID (the id
    syncd's connector uses for a non-recurring event). Writes use If-Match with the ETag the
    app last saw (a GET before each edit). ``tz_name`` is the zone of the person's app; all-day
    events carry dates only (``VALUE=DATE``), timed ones UTC instants.
    """

    def __init__(self, server: CalDAVServer, calendar_url: str, tz_name: str) -> None:
        self.server = server
        self.calendar_url = calendar_url
        self.tz_name = tz_name
        self.ooo: dict[str, bool] = {}
        self.sequence: dict[str, int] = {}

    def _render(self, uid: str, content: OooContent, ooo: bool) -> str:
        start: datetime | date = content.start
        end: datetime | date = content.end
        if content.all_day:
            assert content.start_date is not None and content.end_date is not None
            start, end = content.start_date, content.end_date
        extra = [f"SEQUENCE:{self.sequence.get(uid, 0)}", "DESCRIPTION:Back soon", "CATEGORIES:Personal"]
        return vevent(uid, start, end, summary=content.title, ooo=ooo, extra_lines=extra)

    def _current_etag(self, uid: str) -> str:
        found = self.server.get_event(self.calendar_url, uid)
        if found is None:
            raise KeyError(f"no event {uid} in {self.calendar_url}")
        return found[1]

    def add(self, content: OooContent, ooo: bool = True) -> str:
        uid = f"{uuid.uuid4()}@example.com"
        self.server.put_event(self.calendar_url, uid, self._render(uid, content, ooo), create_only=True)
        self.ooo[uid] = ooo
        self.sequence[uid] = 0
        return uid

    def edit(self, event_id: str, content: OooContent) -> None:
        etag = self._current_etag(event_id)
        self.sequence[event_id] = self.sequence.get(event_id, 0) + 1
        text = self._render(event_id, content, self.ooo.get(event_id, True))
        self.server.put_event(self.calendar_url, event_id, text, etag=etag)

    def remove(self, event_id: str) -> None:
        self.server.delete_event(self.calendar_url, event_id, etag=self._current_etag(event_id))
        self.ooo.pop(event_id, None)

    def unmark_ooo(self, event_id: str) -> None:
        """Turn the event into an ordinary busy one: the stored body without the OOF marker."""
        found = self.server.get_event(self.calendar_url, event_id)
        if found is None:
            raise KeyError(f"no event {event_id} in {self.calendar_url}")
        body, etag = found
        lines = [line for line in _unfold(body) if not line.upper().startswith(_MARKER_PREFIXES)]
        self.server.put_event(self.calendar_url, event_id, "".join(_fold(line) + "\r\n" for line in lines), etag=etag)
        self.ooo[event_id] = False


# -- servers -----------------------------------------------------------------------------------
def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RADICALE_CONFIG", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(name, None)
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _log_tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:] or "(empty log)"


@contextlib.contextmanager
def run_server(kind: ServerKind, command: list[str], tmp_dir: Path, port: int, username: str,
               password: str) -> Iterator[CalDAVServer]:
    """Run ``command`` (a server that will listen on 127.0.0.1:``port``) with its output in
    ``tmp_dir/<kind>.log``; yield its discovered handle once it answers HTTP; stop it on exit."""
    log_path = tmp_dir / f"{kind}.log"
    handle = CalDAVServer(kind, f"http://127.0.0.1:{port}/", username, password)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=_child_env(), cwd=tmp_dir)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{kind} exited with status {process.returncode} before answering "
                                       f"HTTP on port {port}; its log:\n{_log_tail(log_path)}")
                try:
                    handle.client.get(handle.base_url, timeout=0.5)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{kind} did not answer HTTP on 127.0.0.1:{port} within "
                                           f"{START_TIMEOUT:.0f} s; its log:\n{_log_tail(log_path)}") from None
                    time.sleep(0.05)
            handle.discover()
            yield handle
        finally:
            handle.close()
            _stop(process)


@contextlib.contextmanager
def radicale_server(tmp_dir: Path, *, auth_delay: float = 0.0) -> Iterator[CalDAVServer]:
    """Radicale with auth ``none`` (user "alice"), storage in ``tmp_dir/radicale``.

    ``auth_delay`` is Radicale's ``[auth] delay``: how long it sleeps before answering any 401
    or 403, an invalid sync token included (its default, 1, sleeps 0.5-1.5 s; 0 here).
    """
    port = free_port()
    command = [sys.executable, "-m", "radicale", "--config", "",
               "--server-hosts", f"127.0.0.1:{port}",
               "--storage-filesystem-folder", str(tmp_dir / "radicale"),
               "--auth-type", "none", "--auth-delay", str(auth_delay), "--logging-level", "warning"]
    with run_server("radicale", command, tmp_dir, port, "alice", "alice-password") as handle:
        yield handle


@contextlib.contextmanager
def xandikos_server(tmp_dir: Path) -> Iterator[CalDAVServer]:
    """Xandikos with ``--defaults`` (principal /user/, no auth), storage in ``tmp_dir/xandikos``."""
    port = free_port()
    command = [sys.executable, "-m", "xandikos", "serve", "-d", str(tmp_dir / "xandikos"), "--defaults",
               "-l", "127.0.0.1", "-p", str(port), "--no-detect-systemd",
               "--state-dir", str(tmp_dir / "xandikos-state")]
    with run_server("xandikos", command, tmp_dir, port, "user", "unused") as handle:
        yield handle


def server(kind: ServerKind, tmp_dir: Path) -> contextlib.AbstractContextManager[CalDAVServer]:
    """`radicale_server` or `xandikos_server` by name."""
    return radicale_server(tmp_dir) if kind == "radicale" else xandikos_server(tmp_dir)
