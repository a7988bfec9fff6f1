"""Where a calendar client sends requests, and what it sends along.

- A link's calendar is checked before anything is fetched (`Provider.check_calendar`): a
  CalDAV calendar stays on the account's origin and under its URL's path; a Google or
  Microsoft Graph calendar id is one path segment.
- Ids are percent-encoded as exactly one path segment wherever they enter a request URL,
  also ids stored before the check existed; an id that cannot be one (``.``, ``..``, empty)
  is refused before any request.
- A CalDAV server cannot send the client elsewhere: a multistatus href, a redirect, a
  principal or calendar home set on another origin fails that link with one line, and the
  other origin never hears from the client (so never sees its credentials).
- Secrets do not show in the options' ``repr``.
- Every client goes through ``HTTP(S)_PROXY`` from the environment and honours ``NO_PROXY``.

Two kinds of loopback servers stand in for the network: `Scripted` (an HTTP server answering
as a test says, recording every request) and `Proxy` (a forward proxy that relays plain
requests and tunnels ``CONNECT``, recording both).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from connectors.caldav.connector import CalDAVConnector
from connectors.google.connector import GoogleConnector
from connectors.google.options import GoogleOptions
from connectors.outlook.connector import OutlookConnector
from connectors.outlook.options import OutlookOptions
from connectors.registry import PROVIDERS
from syncd.core.calendars import EventDraft, SyncWindow
from syncd.core.errors import ConfigError, ConnectorError, NotFound, SyncdError
from syncd.core.ooo import timed_content
from syncd.core.options import OptionError
from tests.connectors.google.support import service_account_file
from tests.connectors.outlook.support import options_for
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph

TZ = "Europe/Stockholm"
USER, PASSWORD = "alice", "s3cret-dav-password"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "REPORT", "MKCALENDAR")


def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


def draft() -> EventDraft:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    return EventDraft("b1", timed_content(start, start + timedelta(hours=2), "Away"), TZ)


# -- loopback servers ----------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request a loopback server received."""

    method: str
    target: str  # the request target as sent: a path, an absolute URL (to a proxy), host:port (CONNECT)
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path if "://" in self.target else self.target.split("?")[0]


Answer = tuple[int, dict[str, str], bytes]


class Scripted:
    """A loopback HTTP server answering every request with ``answer(seen)``."""

    def __init__(self, answer: Callable[[Seen], Answer], host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.host = host
        self.requests: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length) if length else b"")
                outer.requests.append(seen)
                status, headers, body = outer.answer(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        for method in METHODS:
            setattr(Handler, f"do_{method}", Handler.handle_any)
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def scripted(answer: Callable[[Seen], Answer], host: str = "127.0.0.1") -> Iterator[Scripted]:
    server = Scripted(answer, host)
    try:
        yield server
    finally:
        server.close()


def not_found(_seen: Seen) -> Answer:
    body = {"error": {"code": 404, "message": "Not Found", "errors": [{"reason": "notFound"}]}}
    return 404, {"Content-Type": "application/json"}, json.dumps(body).encode()


def refused_or_none(call: Callable[[], object]) -> Exception | None:
    """What ``call`` raised, if anything (checked after what reached the other origin)."""
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - judged by `assert_one_line_refusal`
        return exc
    return None


def assert_one_line_refusal(refused: Exception | None) -> None:
    assert refused is not None, "the link's sync should have failed"
    assert isinstance(refused, ConnectorError | ConfigError) and not isinstance(refused, NotFound), repr(refused)
    assert "\n" not in str(refused) and PASSWORD not in str(refused)


def other_host() -> str:
    """Another loopback address where the system has one (Linux), so "another origin" is
    another host; else the same address on another port."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return "127.0.0.1"
    return "127.0.0.2"


def elsewhere(seen: Seen) -> Answer:
    """Another origin: asks for credentials (a client that would send them does), then has nothing."""
    if "authorization" not in seen.headers:
        return 401, {"WWW-Authenticate": 'Basic realm="elsewhere"'}, b""
    return 207, {"Content-Type": "application/xml"}, b'<d:multistatus xmlns:d="DAV:"/>'


class Proxy:
    """A loopback forward proxy: relays absolute-URI requests and tunnels CONNECT; records both."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's signature
                pass

            def relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
                target = urlsplit(self.path)
                upstream = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("proxy-connection", "proxy-authorization", "connection")}
                    path = target.path + (f"?{target.query}" if target.query else "")
                    upstream.request(self.command, path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for name, value in response.getheaders():
                        if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    upstream.close()
                self.close_connection = True

            def do_CONNECT(self) -> None:  # noqa: N802 - stdlib's naming
                outer.requests.append(Seen("CONNECT", self.path, dict(self.headers.items()), b""))
                host, _, port = self.path.rpartition(":")
                with socket.create_connection((host, int(port)), timeout=30) as upstream:
                    self.send_response(200, "Connection established")
                    self.end_headers()
                    self.wfile.flush()
                    client = self.connection
                    sockets = [client, upstream]
                    while True:
                        ready, _, _ = select.select(sockets, [], [], 30)
                        if not ready:
                            break
                        done = False
                        for sock in ready:
                            data = sock.recv(65536)
                            if not data:
                                done = True
                                break
                            (upstream if sock is client else client).sendall(data)
                        if done:
                            break
                self.close_connection = True

        for method in METHODS:
            setattr(Handler, f"do_{method}", Handler.relay)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy()
    try:
        yield running
    finally:
        running.close()


def use_proxy(monkeypatch: pytest.MonkeyPatch, proxy: Proxy, *, no_proxy: str | None) -> None:
    """The environment of a host behind a proxy; ``no_proxy`` the hosts reached directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)  # urllib ignores HTTP_PROXY in a CGI
    for name in ("http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url)
        monkeypatch.setenv(name.upper(), proxy.url)
    if no_proxy is not None:
        monkeypatch.setenv("no_proxy", no_proxy)
        monkeypatch.setenv("NO_PROXY", no_proxy)


@pytest.fixture
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


# -- 1. a link's calendar, checked before anything is fetched --------------------------------------------

DAV_ACCOUNT = {"url": "https://dav.example/dav/", "username": USER, "password": PASSWORD}


@pytest.mark.parametrize("calendar", [
    "http://169.254.169.254/latest/",
    "https://evil.example/dav/",
    "https://evil.example/dav/calendars/alice/ooo/",
    "https://dav.example:8443/dav/calendars/alice/ooo/",  # another port
    "http://dav.example/dav/calendars/alice/ooo/",  # another scheme
    "https://dav.example/other/ooo/",  # not under the account's path
    "https://dav.example/dav2/ooo/",  # a prefix of the path is not "under" it
    "https://dav.example/dav/../admin/",
    "https://dav.example/dav/calendars/../../admin/",
    "/dav/../admin/",
    "/dav/%2e%2e/admin/",  # an encoded dot segment, decoded by the server
    "/dav/calendars/..%2f..%2fadmin/",  # an encoded slash
    "/admin/",
    "//evil.example/x",  # scheme-relative
    "//dav.example/dav/ooo/",
    "https://dav.example@evil.example/dav/",  # userinfo
    "https://alice:pw@dav.example/dav/ooo/",
    "ftp://dav.example/dav/ooo/",
    "file:///etc/passwd",
    "HTTP://169.254.169.254/latest/",
    "/dav/ooo/\r\nX-Injected: 1",
    "Out of office\n",
    "ooo\x00",
    "\\\\evil.example\\x",
    "/dav\\..\\admin/",
    "",
    "https://dav.example/dav/ooo/?x=1",
    "https://dav.example:notaport/dav/",
])
def test_caldav_refuses_a_calendar_outside_the_account(calendar: str) -> None:
    with pytest.raises(OptionError) as refused:
        PROVIDERS["caldav"].check_calendar(DAV_ACCOUNT, calendar)
    assert refused.value.key == "calendar"
    assert "\n" not in str(refused.value) and "\r" not in str(refused.value)


@pytest.mark.parametrize("calendar", [
    "Out of office",
    "ooo",
    "Team: holidays",
    "Ferien/Urlaub",  # a display name may hold a slash: it is only compared with the names found
    "/dav/calendars/alice/ooo/",
    "/dav/calendars/alice/ooo",
    "/dav/calendars/alice/x/../ooo/",  # stays under the account's path once normalised
    "https://dav.example/dav/calendars/alice/ooo/",
    "https://DAV.example:443/dav/calendars/alice/ooo",
    "/dav/calendars/alice/abc%40example.com/",
])
def test_caldav_accepts_names_paths_and_urls_of_the_account(calendar: str) -> None:
    PROVIDERS["caldav"].check_calendar(DAV_ACCOUNT, calendar)
    PROVIDERS["caldav"].check_calendar({"url": "https://dav.example/dav"}, calendar)  # no trailing slash


def test_caldav_on_a_server_root_takes_any_path_of_that_server() -> None:
    check = PROVIDERS["caldav"].check_calendar
    check({"url": "http://127.0.0.1:5232/"}, "/alice/ooo/")
    check({"url": "http://127.0.0.1:5232"}, "http://127.0.0.1:5232/alice/ooo/")
    with pytest.raises(OptionError):
        check({"url": "http://127.0.0.1:5232/"}, "http://127.0.0.1:5233/alice/ooo/")


BAD_IDS = ["../../groups/x", "a/b", "..", ".", "a\\b", "a?b", "a#b", "a\x00b", "a\nb", "a\rb", "\x7f", ""]


@pytest.mark.parametrize("provider", ["google", "outlook"])
@pytest.mark.parametrize("calendar", BAD_IDS)
def test_a_calendar_id_must_be_one_path_segment(provider: str, calendar: str) -> None:
    with pytest.raises(OptionError) as refused:
        PROVIDERS[provider].check_calendar({}, calendar)
    assert refused.value.key == "calendar"
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("provider,calendar", [
    ("google", "primary"), ("google", "c_0123abc@group.calendar.google.com"), ("google", "alice@example.com"),
    ("outlook", "primary"), ("outlook", "AAMkAGI2TG93AAA="), ("outlook", "AQMkAD-_x=="),
])
def test_ordinary_calendar_ids_are_accepted(provider: str, calendar: str) -> None:
    PROVIDERS[provider].check_calendar({}, calendar)


def test_the_other_providers_accept_any_calendar() -> None:
    for name in ("local", "memory"):
        PROVIDERS[name].check_calendar({}, "anything at all")


# -- 1. ids in request URLs: one segment each, also ids stored before the check ------------------------


@pytest.fixture
def recorder() -> Iterator[Scripted]:
    with scripted(not_found) as server:
        yield server


@pytest.fixture
def google(recorder: Scripted, tmp_path: Path, no_proxies: None) -> Iterator[GoogleConnector]:
    """A Google connector signing in at the fake Google, and calling the API at ``recorder``."""
    with FakeGoogleCalendar() as fake:
        connector = GoogleConnector(GoogleOptions(
            api_endpoint=f"{recorder.url}/calendar/v3/", batch_uri=f"{recorder.url}/batch/calendar/v3",
            service_account_file=str(service_account_file(tmp_path, fake))))
        try:
            yield connector
        finally:
            connector.close()


GOOGLE_ALICE = "alice@example.com"


def test_google_sends_ids_as_one_segment_each(google: GoogleConnector, recorder: Scripted) -> None:
    assert google.get(f"{GOOGLE_ALICE}/a/b?c#d", "x/y?z") is None
    assert [(s.method, s.path) for s in recorder.requests] == [
        ("GET", "/calendar/v3/calendars/a%2Fb%3Fc%23d/events/x%2Fy%3Fz")]


def unencodable(with_event: tuple[str, ...], without_event: tuple[str, ...],
                event_ids: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(operation, calendar id, event id) with an id no encoding makes one path segment."""
    return ([(operation, "primary", event_id) for operation in with_event for event_id in event_ids]
            + [(operation, calendar, "e1") for operation in with_event + without_event for calendar in ("..", ".")])


@pytest.mark.parametrize("operation,calendar,event_id", unencodable(
    ("get", "update", "delete"), ("changes", "watch", "create", "find"), ("..", ".")))
def test_google_refuses_an_id_that_cannot_be_a_segment(google: GoogleConnector, recorder: Scripted, operation: str,
                                                      calendar: str, event_id: str) -> None:
    address = f"{GOOGLE_ALICE}/{calendar}"
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: google.get(address, event_id),
        "update": lambda: google.update(address, event_id, draft(), '"1"'),
        "delete": lambda: google.delete(address, event_id, '"1"'),
        "changes": lambda: google.changes(address, None, window()),
        "watch": lambda: google.watch(address, "ch1", "tok", "https://syncd.example/v1/hooks/google",
                                      timedelta(hours=1)),
        "create": lambda: google.create(address, draft()),
        "find": lambda: google.find_by_block_id(address, "b1"),
    }
    with pytest.raises(SyncdError) as refused:
        calls[operation]()
    assert [(s.method, s.path) for s in recorder.requests] == []  # e.g. DELETE /calendar/v3/calendars/primary
    assert not isinstance(refused.value, NotFound)
    assert isinstance(refused.value, ConfigError | ConnectorError)


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


@pytest.fixture
def outlook(graph: FakeGraph, recorder: Scripted, no_proxies: None) -> Iterator[OutlookConnector]:
    """An Outlook connector signing in at the fake Microsoft identity platform, and calling
    Graph at ``recorder``."""
    connector = OutlookConnector(OutlookOptions(**options_for(graph, graph_url=f"{recorder.url}/v1.0")))
    try:
        yield connector
    finally:
        connector.close()


OUTLOOK_ALICE = "alice@contoso.com"
MAILBOX = "/v1.0/users/alice%40contoso.com"


def test_outlook_sends_a_calendar_id_as_one_segment(outlook: OutlookConnector, recorder: Scripted) -> None:
    assert outlook.get(f"{OUTLOOK_ALICE}/../../groups/x", "e1") is None
    assert [(s.method, s.path) for s in recorder.requests] == [
        ("GET", f"{MAILBOX}/calendars/..%2F..%2Fgroups%2Fx/events/e1")]  # not /v1.0/users/groups/x/events/e1


def test_outlook_sends_an_event_id_as_one_segment(outlook: OutlookConnector, recorder: Scripted) -> None:
    outlook.delete(f"{OUTLOOK_ALICE}/primary", "../../../groups/x", '"1"')
    with pytest.raises(NotFound):
        outlook.update(f"{OUTLOOK_ALICE}/primary", "a/b?c#d", draft(), '"1"')
    assert outlook.get(f"{OUTLOOK_ALICE}/cal%2F1", "e%2F1") is None
    assert [(s.method, s.path) for s in recorder.requests] == [
        ("DELETE", f"{MAILBOX}/events/..%2F..%2F..%2Fgroups%2Fx"),  # not DELETE /v1.0/groups/x
        ("PATCH", f"{MAILBOX}/events/a%2Fb%3Fc%23d"),
        ("GET", f"{MAILBOX}/calendars/cal%252F1/events/e%252F1"),
    ]


def test_outlook_lists_and_subscribes_with_one_segment_ids(outlook: OutlookConnector, recorder: Scripted) -> None:
    with pytest.raises(NotFound):
        outlook.changes(f"{OUTLOOK_ALICE}/a/b", None, window())
    with pytest.raises(NotFound):
        outlook.watch(f"{OUTLOOK_ALICE}/a/b", "ch1", "tok", "https://syncd.example/v1/hooks/outlook",
                      timedelta(hours=1))
    listing, subscribing = recorder.requests
    assert listing.path == f"{MAILBOX}/calendars/a%2Fb/calendarView/delta"
    assert subscribing.path == "/v1.0/subscriptions"
    assert json.loads(subscribing.body)["resource"] == "users/alice%40contoso.com/calendars/a%2Fb/events"


@pytest.mark.parametrize("operation,calendar,event_id", unencodable(
    ("get", "update", "delete"), ("changes", "watch", "create"), ("..", ".", "")))
def test_outlook_refuses_an_id_that_cannot_be_a_segment(outlook: OutlookConnector, recorder: Scripted,
                                                       operation: str, calendar: str, event_id: str) -> None:
    address = f"{OUTLOOK_ALICE}/{calendar}"
    calls: dict[str, Callable[[], object]] = {
        "get": lambda: outlook.get(address, event_id),
        "update": lambda: outlook.update(address, event_id, draft(), '"1"'),
        "delete": lambda: outlook.delete(address, event_id, '"1"'),
        "changes": lambda: outlook.changes(address, None, window()),
        "watch": lambda: outlook.watch(address, "ch1", "tok", "https://syncd.example/v1/hooks/outlook",
                                       timedelta(hours=1)),
        "create": lambda: outlook.create(address, draft()),
    }
    with pytest.raises(SyncdError) as refused:
        calls[operation]()
    assert [(s.method, s.path) for s in recorder.requests] == []
    assert not isinstance(refused.value, NotFound)
    assert isinstance(refused.value, ConfigError | ConnectorError)


def test_outlook_follows_no_link_to_another_origin(graph: FakeGraph, no_proxies: None) -> None:
    """A delta page's next link elsewhere: the bearer token does not go there."""
    with scripted(elsewhere, other_host()) as evil:
        def delta(seen: Seen) -> Answer:
            page = {"value": [], "@odata.nextLink": f"{evil.url}/v1.0/users/alice/calendarView/delta?$skiptoken=1"}
            return 200, {"Content-Type": "application/json"}, json.dumps(page).encode()
        with scripted(delta) as api:
            connector = OutlookConnector(OutlookOptions(**options_for(graph, graph_url=f"{api.url}/v1.0")))
            try:
                refused = refused_or_none(lambda: connector.changes(f"{OUTLOOK_ALICE}/primary", None, window()))
            finally:
                connector.close()
        assert [(s.method, s.path, "authorization" in s.headers) for s in evil.requests] == []
        assert_one_line_refusal(refused)


# -- 2. a CalDAV server cannot send the client elsewhere -------------------------------------------------

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:uid1\r\n"
       "DTSTAMP:20260101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:Away\r\n"
       "X-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def ics() -> str:
    start = datetime.now(UTC) + timedelta(days=3)
    return ICS.format(start=f"{start:%Y%m%dT090000Z}", end=f"{start:%Y%m%dT170000Z}")


def multistatus(*responses: str, token: str | None = None) -> Answer:
    body = ('<?xml version="1.0" encoding="utf-8"?><d:multistatus xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav">' + "".join(responses)
            + (f"<d:sync-token>{token}</d:sync-token>" if token else "") + "</d:multistatus>")
    return 207, {"Content-Type": "application/xml; charset=utf-8"}, body.encode()


def member(href: str, *props: str) -> str:
    return (f"<d:response><d:href>{href}</d:href><d:propstat><d:prop>{''.join(props)}</d:prop>"
            "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")


def with_data(href: str) -> str:
    return member(href, '<d:getetag>"1"</d:getetag>', f"<c:calendar-data>{ics()}</c:calendar-data>")


@pytest.fixture
def evil() -> Iterator[Scripted]:
    with scripted(elsewhere, other_host()) as server:
        yield server


def caldav(url: str) -> CalDAVConnector:
    return CalDAVConnector(url, USER, PASSWORD)


def test_a_listed_href_on_another_origin_is_refused(evil: Scripted, no_proxies: None) -> None:
    def server(seen: Seen) -> Answer:
        if seen.method == "REPORT" and b"sync-collection" in seen.body:
            return multistatus(with_data(f"{evil.url}/cal/uid1.ics"), token="t1")
        return 404, {}, b""
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            calendar = f"{dav.url}/cal/"
            refused = refused_or_none(lambda: (connector.changes(calendar, None, window()),
                                               connector.delete(calendar, "uid1", None)))
        finally:
            connector.close()
    assert evil.requests == []
    assert_one_line_refusal(refused)


def test_a_found_href_on_another_origin_is_refused(evil: Scripted, no_proxies: None) -> None:
    def server(seen: Seen) -> Answer:
        if seen.method == "REPORT" and b"calendar-query" in seen.body:
            return multistatus(member(f"{evil.url}/cal/uid1.ics", '<d:getetag>"1"</d:getetag>'))
        return 404, {}, b""
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            refused = refused_or_none(lambda: connector.get(f"{dav.url}/cal/", "uid1"))
        finally:
            connector.close()
    assert [(s.method, s.path, "authorization" in s.headers) for s in evil.requests] == []
    assert_one_line_refusal(refused)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed(evil: Scripted, status: int, no_proxies: None) -> None:
    def server(seen: Seen) -> Answer:
        return status, {"Location": f"{evil.url}{seen.path}"}, b""
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            refused = refused_or_none(lambda: connector.changes(f"{dav.url}/cal/", None, window()))
        finally:
            connector.close()
    assert [(s.method, s.path, "authorization" in s.headers) for s in evil.requests] == []
    assert_one_line_refusal(refused)


def test_a_redirect_on_the_same_origin_is_followed(no_proxies: None) -> None:
    def server(seen: Seen) -> Answer:
        if seen.path == "/old/":
            return 301, {"Location": "/cal/"}, b""
        if seen.method == "REPORT" and seen.path == "/cal/" and "authorization" in seen.headers:
            return multistatus(with_data("/cal/uid1.ics"), token="t1")
        return 404, {}, b""
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            listed = connector.changes(f"{dav.url}/old/", None, window())
        finally:
            connector.close()
    assert [e.event_id for e in listed.events] == ["uid1"]


@pytest.mark.parametrize("hostile", ["principal", "home", "calendar"])
def test_discovery_stays_on_the_account_origin(evil: Scripted, hostile: str, no_proxies: None) -> None:
    """A display name is looked up through the principal and the calendar home set: none of
    the hrefs on the way may lead to another origin."""
    def server(seen: Seen) -> Answer:
        base = evil.url if hostile == "principal" else ""
        home = evil.url if hostile == "home" else ""
        calendar = evil.url if hostile == "calendar" else ""
        props = [f"<d:current-user-principal><d:href>{base}/principals/alice/</d:href></d:current-user-principal>",
                 f"<c:calendar-home-set><d:href>{home}/home/</d:href></c:calendar-home-set>",
                 "<d:resourcetype><d:collection/></d:resourcetype>"]
        if seen.method != "PROPFIND":
            return 404, {}, b""
        if seen.path == "/home/" and seen.headers.get("depth") == "1":
            return multistatus(member("/home/", *props), member(
                f"{calendar}/home/ooo/", "<d:displayname>OOO</d:displayname>",
                "<d:resourcetype><d:collection/><c:calendar/></d:resourcetype>"))
        if seen.path == "/home/ooo/":
            return multistatus(member("/home/ooo/", "<d:displayname>OOO</d:displayname>",
                                      "<d:resourcetype><d:collection/><c:calendar/></d:resourcetype>"))
        return multistatus(member(seen.path, *props))
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            refused = refused_or_none(lambda: connector.changes("OOO", None, window()))
        finally:
            connector.close()
    assert [(s.method, s.path, "authorization" in s.headers) for s in evil.requests] == []
    assert_one_line_refusal(refused)


def test_discovery_finds_a_calendar_by_its_display_name(no_proxies: None) -> None:
    def server(seen: Seen) -> Answer:
        props = ["<d:current-user-principal><d:href>/principals/alice/</d:href></d:current-user-principal>",
                 "<c:calendar-home-set><d:href>/home/</d:href></c:calendar-home-set>",
                 "<d:resourcetype><d:collection/></d:resourcetype>"]
        if seen.method == "REPORT" and seen.path == "/home/ooo/":
            return multistatus(with_data("/home/ooo/uid1.ics"), token="t1")
        if seen.method != "PROPFIND":
            return 404, {}, b""
        if seen.path == "/home/" and seen.headers.get("depth") == "1":
            return multistatus(member("/home/", *props), member(
                "/home/ooo/", "<d:displayname>OOO</d:displayname>",
                "<d:resourcetype><d:collection/><c:calendar/></d:resourcetype>"))
        if seen.path == "/home/ooo/":
            return multistatus(member("/home/ooo/", "<d:displayname>OOO</d:displayname>",
                                      "<d:resourcetype><d:collection/><c:calendar/></d:resourcetype>"))
        return multistatus(member(seen.path, *props))
    with scripted(server) as dav:
        connector = caldav(dav.url)
        try:
            listed = connector.changes("ooo", None, window())
        finally:
            connector.close()
    assert [e.event_id for e in listed.events] == ["uid1"]


@pytest.mark.parametrize("calendar", ["{evil}/cal/", "//{host}:{port}/cal/"])
def test_a_stored_calendar_on_another_origin_is_refused(evil: Scripted, calendar: str, no_proxies: None) -> None:
    """A link stored before `check_calendar` existed: refused when used, before any request."""
    with scripted(not_found) as dav:
        connector = caldav(dav.url)
        try:
            target = calendar.format(evil=evil.url, host=evil.host, port=evil.port)
            refused = refused_or_none(lambda: connector.changes(target, None, window()))
        finally:
            connector.close()
        assert dav.requests == []
    assert evil.requests == []
    assert isinstance(refused, ConfigError)
    assert_one_line_refusal(refused)


# -- 3. secrets stay out of repr ---------------------------------------------------------------------------


def test_secrets_do_not_show_in_the_options_repr() -> None:
    google = GoogleOptions(client_id="the-client", client_secret="g-s3cret")
    outlook = OutlookOptions(tenant_id="t", client_id="the-client", client_secret="o-s3cret")
    assert "the-client" in repr(google) and "g-s3cret" not in repr(google) and "g-s3cret" not in str(google)
    assert "the-client" in repr(outlook) and "o-s3cret" not in repr(outlook) and "o-s3cret" not in str(outlook)
    assert google.client_secret == "g-s3cret" and outlook.client_secret == "o-s3cret"  # still there to use


def test_the_caldav_password_does_not_show_in_the_connectors_repr() -> None:
    connector = CalDAVConnector("https://dav.example/dav/", USER, PASSWORD)
    try:
        assert PASSWORD not in repr(connector) and PASSWORD not in str(connector)
    finally:
        connector.close()


# -- 4. proxies from the environment, and NO_PROXY ---------------------------------------------------------


def sync_answer(seen: Seen) -> Answer:
    if seen.method == "REPORT":
        return multistatus(with_data("/cal/uid1.ics"), token="t1")
    return 404, {}, b""


def test_caldav_goes_through_the_environments_proxy(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    use_proxy(monkeypatch, proxy, no_proxy=None)
    with scripted(sync_answer) as dav:
        connector = caldav(dav.url)
        try:
            listed = connector.changes(f"{dav.url}/cal/", None, window())
        finally:
            connector.close()
    assert [e.event_id for e in listed.events] == ["uid1"]
    assert [(s.method, s.target) for s in proxy.requests] == [("REPORT", f"{dav.url}/cal/")]


def test_caldav_reaches_a_no_proxy_host_directly(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    use_proxy(monkeypatch, proxy, no_proxy="localhost,127.0.0.1")
    with scripted(sync_answer) as dav:
        connector = caldav(dav.url)
        try:
            listed = connector.changes(f"{dav.url}/cal/", None, window())
        finally:
            connector.close()
        assert [s.method for s in dav.requests] == ["REPORT"]
    assert [e.event_id for e in listed.events] == ["uid1"]
    assert proxy.requests == []


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1", "localhost, 127.0.0.0/8"])
def test_google_honours_the_proxy_and_no_proxy(proxy: Proxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               no_proxy: str | None) -> None:
    use_proxy(monkeypatch, proxy, no_proxy=no_proxy)
    with FakeGoogleCalendar() as fake:
        connector = GoogleConnector(GoogleOptions(api_endpoint=fake.api_endpoint, batch_uri=fake.batch_uri,
                                                  service_account_file=str(service_account_file(tmp_path, fake))))
        try:
            assert connector.get(f"{GOOGLE_ALICE}/primary", "nope") is None
        finally:
            connector.close()
        through_proxy = [urlsplit(s.target).path for s in proxy.requests]
        if no_proxy is None:
            assert through_proxy == ["/token", "/calendar/v3/calendars/primary/events/nope"]
        else:
            assert through_proxy == []


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1", "localhost,127.0.0.1:1,127.0.0.0/8"])
def test_outlook_honours_the_proxy_and_no_proxy(proxy: Proxy, monkeypatch: pytest.MonkeyPatch,
                                                no_proxy: str | None) -> None:
    use_proxy(monkeypatch, proxy, no_proxy=no_proxy)
    with FakeGraph() as fake:
        connector = OutlookConnector(OutlookOptions(**options_for(fake)))
        try:
            assert connector.get(f"{OUTLOOK_ALICE}/primary", "nope") is None
        finally:
            connector.close()
        origin = urlsplit(fake.base_url).netloc
        tunnels = {(s.method, s.target) for s in proxy.requests}
        assert tunnels == ({("CONNECT", origin)} if no_proxy is None else set())
