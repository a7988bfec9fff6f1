"""The CalDAV connector against real Radicale and Xandikos servers on loopback."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from connectors.caldav.connector import CalDAVConnector
from syncd.core.calendars import EventDraft, SyncWindow
from syncd.core.errors import AuthError, CursorExpired, PreconditionFailed, SyncdError, TransientError
from syncd.core.ooo import OooContent
from tests.connectors.caldav.servers import CalDAVPerson, CalDAVServer, server, vcalendar, vevent
from tests.connectors.contract import TZ, ConnectorContract, timed


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def caldav(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    with server(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


@pytest.fixture
def calendar(caldav: CalDAVServer, request: pytest.FixtureRequest) -> str:
    return caldav.make_calendar(f"c{abs(hash(request.node.nodeid)) % 10**9}")


@pytest.fixture
def connector(caldav: CalDAVServer) -> Iterator[CalDAVConnector]:
    connector = CalDAVConnector(caldav.base_url, caldav.username, caldav.password)
    yield connector
    connector.close()


@pytest.fixture
def person(caldav: CalDAVServer, calendar: str) -> CalDAVPerson:
    return CalDAVPerson(caldav, calendar, TZ)


@pytest.fixture
def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


class TestCalDAVConnectorContract(ConnectorContract):
    """Fixtures above: each real server, a fresh calendar per test, the person's own client."""


def draft(block_id: str, content: OooContent) -> EventDraft:
    return EventDraft(block_id, content, TZ)


# -- listings -----------------------------------------------------------------------------------


def test_invalid_sync_token_means_a_full_listing(connector: CalDAVConnector, calendar: str,
                                                 person: CalDAVPerson, window: SyncWindow) -> None:
    person.add(timed(3))
    first = connector.changes(calendar, None, window)
    assert first.cursor
    stale = json.loads(first.cursor)
    stale["t"] = stale["t"] + "0"  # a token the server never issued (Radicale: 403, Xandikos: 412)
    with pytest.raises(CursorExpired):
        connector.changes(calendar, json.dumps(stale), window)


def test_weekly_ooo_across_a_dst_change_with_an_exdate_and_a_moved_instance(
        connector: CalDAVConnector, calendar: str, caldav: CalDAVServer) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # Mondays 09:00-12:00 Berlin time from 12 Oct 2026; summer time ends on 25 Oct.
    lines = ["RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Berlin:20261026T090000",
             "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]
    master = vevent("course", datetime(2026, 10, 12, 9, tzinfo=berlin), datetime(2026, 10, 12, 12, tzinfo=berlin),
                    summary="Course", ooo=False, extra_lines=lines)
    master = master.replace("DTSTART:20261012T070000Z", "DTSTART;TZID=Europe/Berlin:20261012T090000").replace(
        "DTEND:20261012T100000Z", "DTEND;TZID=Europe/Berlin:20261012T120000")
    moved = ("BEGIN:VEVENT\r\nUID:course\r\nDTSTAMP:20260101T000000Z\r\n"
             "RECURRENCE-ID;TZID=Europe/Berlin:20261102T090000\r\n"
             "DTSTART;TZID=Europe/Berlin:20261103T140000\r\nDTEND;TZID=Europe/Berlin:20261103T170000\r\n"
             "SUMMARY:Course (moved)\r\nX-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\n")
    caldav.put_event(calendar, "course", master.replace("END:VCALENDAR", moved + "END:VCALENDAR"))
    window = SyncWindow(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC), TZ)
    events = sorted(connector.changes(calendar, None, window).events, key=lambda e: e.content.start)
    local = [(e.content.start.astimezone(berlin), e.content.end.astimezone(berlin)) for e in events]
    assert local == [
        (datetime(2026, 10, 12, 9, tzinfo=berlin), datetime(2026, 10, 12, 12, tzinfo=berlin)),
        (datetime(2026, 10, 19, 9, tzinfo=berlin), datetime(2026, 10, 19, 12, tzinfo=berlin)),
        (datetime(2026, 11, 3, 14, tzinfo=berlin), datetime(2026, 11, 3, 17, tzinfo=berlin)),  # moved
        (datetime(2026, 11, 9, 9, tzinfo=berlin), datetime(2026, 11, 9, 12, tzinfo=berlin)),  # after the DST change
    ]
    assert events[0].content.start == datetime(2026, 10, 12, 7, tzinfo=UTC)
    assert events[3].content.start == datetime(2026, 11, 9, 8, tzinfo=UTC)
    assert [e.event_id for e in events][2] == "course/20261102T080000Z"  # the id keeps the original instant


def test_an_event_with_a_broken_period_is_skipped_with_one_log_line(
        connector: CalDAVConnector, calendar: str, caldav: CalDAVServer, person: CalDAVPerson,
        window: SyncWindow, caplog: pytest.LogCaptureFixture) -> None:
    good = person.add(timed(3))
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    caldav.put_event(calendar, "broken", vevent("broken", start, start - timedelta(hours=2)))  # ends before it starts
    with caplog.at_level(logging.WARNING, logger="connectors.caldav"):
        first = connector.changes(calendar, None, window)
        connector.changes(calendar, None, window)
    assert [e.event_id for e in first.events] == [good]
    lines = [r for r in caplog.records if r.name.startswith("connectors.caldav") and "broken" in r.getMessage()]
    assert len(lines) == 1


def test_a_server_rewrite_changes_nothing_syncd_cares_about(connector: CalDAVConnector, calendar: str,
                                                          caldav: CalDAVServer, window: SyncWindow) -> None:
    created = connector.create(calendar, draft("b1", timed(3)))
    body, etag = caldav.get_event(calendar, "syncd-b1") or ("", "")
    assert "X-SYNCD-BLOCK-ID:b1" in body.replace("\r\n ", "")
    assert etag == created.etag  # the ETag of what the server stored, not of what was sent
    listed = connector.changes(calendar, None, window)
    assert [(e.event_id, e.etag, e.content) for e in listed.events] == [(created.event_id, created.etag,
                                                                         created.content)]


def test_a_concurrent_edit_gets_412(connector: CalDAVConnector, calendar: str, person: CalDAVPerson,
                                    window: SyncWindow) -> None:
    event_id = person.add(timed(3))
    seen = connector.changes(calendar, None, window).events[0]
    person.edit(event_id, timed(3, hours=1))
    with pytest.raises(PreconditionFailed):
        connector.update(calendar, event_id, draft("b1", timed(4)), seen.etag)
    with pytest.raises(PreconditionFailed):
        connector.delete(calendar, event_id, seen.etag)


def test_a_calendar_is_found_by_its_display_name(caldav: CalDAVServer, connector: CalDAVConnector,
                                                 window: SyncWindow) -> None:
    url = caldav.make_calendar("Team OOO")
    CalDAVPerson(caldav, url, TZ).add(timed(2))
    assert len(connector.changes("Team OOO", None, window).events) == 1
    with pytest.raises(Exception, match="no calendar named 'Nope'"):
        connector.changes("Nope", None, window)


# -- a server in front: no sync-collection, refusals, failures -------------------------------------


class Gate:
    """An HTTP front for a real server: passes requests through, or answers for it (``mode``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"  # pass | no-sync (501 for sync-collection) | 401 | 500 | hostile
        self.hostile = b""  # what a hostile server answers every REPORT with
        self.seen: list[str] = []  # "METHOD path" of every request
        self.client = httpx.Client(timeout=30)
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, data = gate.answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_DELETE = do_REPORT = do_PROPFIND = do_MKCALENDAR = do_OPTIONS = _any

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hangs up on a huge answer is the point of that test

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.seen.append(f"{method} {path}")
        if self.mode == "401":
            return 401, {"WWW-Authenticate": 'Basic realm="x"'}, b""
        if self.mode == "500":
            return 500, {}, b"down"
        if self.mode == "hostile" and method == "REPORT":
            return 207, {"Content-Type": "application/xml"}, self.hostile
        if self.mode == "huge" and method == "REPORT":
            return 207, {"Content-Type": "application/xml"}, b"<d:multistatus xmlns:d='DAV:'>" + b" " * (200 << 20)
        if self.mode == "no-sync" and method == "REPORT" and b"sync-collection" in body:
            return 501, {}, b"not implemented"
        forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
        reply = self.client.request(method, self.upstream + path, headers=forwarded, content=body)
        return reply.status_code, dict(reply.headers), reply.content

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.client.close()


@pytest.fixture
def gate(caldav: CalDAVServer) -> Iterator[Gate]:
    front = Gate(caldav.base_url)
    yield front
    front.close()


def test_a_server_without_sync_collection_is_listed_by_ctag_and_etags(
        gate: Gate, caldav: CalDAVServer, calendar: str, person: CalDAVPerson, window: SyncWindow) -> None:
    gate.mode = "no-sync"
    path = calendar.split("/", 3)[3]
    connector = CalDAVConnector(gate.url, caldav.username, caldav.password)
    try:
        kept = person.add(timed(3))
        gone = person.add(timed(4))
        first = connector.changes(gate.url + path, None, window)
        assert first.full and json.loads(first.cursor or "{}")["m"] == "etag"
        quiet = connector.changes(gate.url + path, first.cursor, window)
        assert quiet.events == [] and quiet.removed == []
        person.edit(kept, timed(3, hours=2))
        person.remove(gone)
        changed = connector.changes(gate.url + path, quiet.cursor, window)
        assert [e.event_id for e in changed.events] == [kept] and changed.removed == [gone]
    finally:
        connector.close()


def test_refused_credentials_and_server_errors(gate: Gate, caldav: CalDAVServer, calendar: str,
                                               window: SyncWindow) -> None:
    path = calendar.split("/", 3)[3]
    connector = CalDAVConnector(gate.url, caldav.username, "wrong")
    try:
        gate.mode = "401"
        with pytest.raises(AuthError, match="refused the username or password"):
            connector.changes(gate.url + path, None, window)
        gate.mode = "500"
        with pytest.raises(TransientError):
            connector.changes(gate.url + path, None, window)
    finally:
        connector.close()


def test_all_day_events_stay_whole_days(connector: CalDAVConnector, calendar: str, window: SyncWindow) -> None:
    first = datetime.now(UTC).date() + timedelta(days=10)
    content = OooContent(datetime.combine(first, time(0), ZoneInfo(TZ)).astimezone(UTC),
                         datetime.combine(first + timedelta(days=2), time(0), ZoneInfo(TZ)).astimezone(UTC),
                         all_day=True, start_date=first, end_date=first + timedelta(days=2), timezone=TZ,
                         title="Holiday")
    created = connector.create(calendar, draft("b-day", content))
    assert created.content == content
    [listed] = connector.changes(calendar, None, window).events
    assert listed.content == content


def test_a_listing_fetches_changed_objects_in_one_report(gate: Gate, caldav: CalDAVServer, calendar: str,
                                                         window: SyncWindow) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    caldav.seed(calendar, vcalendar([vevent(f"e{n}", now + timedelta(days=n), now + timedelta(days=n, hours=3))
                                     for n in range(60)]))
    path = calendar.split("/", 3)[3]
    connector = CalDAVConnector(gate.url, caldav.username, caldav.password)
    try:
        first = connector.changes(gate.url + path, None, window)
        assert len(first.events) == 60
        for n in range(5):
            caldav.put_event(calendar, f"e{n}", vevent(f"e{n}", now + timedelta(days=n, hours=1),
                                                       now + timedelta(days=n, hours=2)))
        gate.seen.clear()
        changes = connector.changes(gate.url + path, first.cursor, window)
    finally:
        connector.close()
    assert {e.event_id for e in changes.events} == {f"e{n}" for n in range(5)}
    # the sync report, and one multiget where the report does not carry the bodies: never a GET each
    assert all(request.startswith("REPORT ") for request in gate.seen)
    assert len(gate.seen) == (1 if caldav.kind == "radicale" else 2)


_XXE = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<d:multistatus xmlns:d="DAV:"><d:sync-token>&x;</d:sync-token><d:response><d:href>/e.ics</d:href>'
        b'<d:propstat><d:prop><d:getetag>"1"</d:getetag></d:prop></d:propstat></d:response></d:multistatus>')
_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
           + b"".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">'.encode()
                      for p, c in zip("bcdefgh", "cdefghi", strict=True))
           + b']><d:multistatus xmlns:d="DAV:"><d:sync-token>&i;</d:sync-token></d:multistatus>')


@pytest.mark.parametrize("body", [_XXE, _LAUGHS], ids=["external-entity", "billion-laughs"])
def test_hostile_xml_is_not_expanded(gate: Gate, caldav: CalDAVServer, calendar: str, window: SyncWindow,
                                     body: bytes) -> None:
    gate.mode, gate.hostile = "hostile", body
    path = calendar.split("/", 3)[3]
    connector = CalDAVConnector(gate.url, caldav.username, caldav.password)
    try:
        try:
            changes = connector.changes(gate.url + path, None, window)
        except Exception as exc:  # noqa: BLE001 - failing is fine, as long as it is ours and says why
            assert isinstance(exc, SyncdError), repr(exc)
            return
    finally:
        connector.close()
    cursor = changes.cursor or ""
    assert "root:" not in cursor and "lollollol" not in cursor  # nothing was read or expanded
    assert len(cursor) < 10_000


def test_a_200_mb_answer_is_refused_not_read(gate: Gate, caldav: CalDAVServer, calendar: str,
                                            window: SyncWindow) -> None:
    gate.mode = "huge"
    path = calendar.split("/", 3)[3]
    connector = CalDAVConnector(gate.url, caldav.username, caldav.password)
    try:
        with pytest.raises(SyncdError, match="MB"):
            connector.changes(gate.url + path, None, window)
    finally:
        connector.close()


def test_a_million_recurrences_are_bounded_and_the_rest_syncs(connector: CalDAVConnector, calendar: str,
                                                              caldav: CalDAVServer, person: CalDAVPerson,
                                                              window: SyncWindow) -> None:
    if caldav.kind == "radicale":
        pytest.skip("Radicale refuses to store such a series (400), so it cannot serve one")
    good = person.add(timed(3))
    start = datetime.now(UTC).replace(microsecond=0)
    caldav.put_event(calendar, "flood", vevent("flood", start, start + timedelta(seconds=1),
                                               extra_lines=["RRULE:FREQ=SECONDLY;COUNT=1000000"]))
    listed = connector.changes(calendar, None, window)
    flood = [e for e in listed.events if e.event_id.startswith("flood/")]
    assert good in {e.event_id for e in listed.events}
    assert 0 < len(flood) <= 1000  # max_occurrences per series
