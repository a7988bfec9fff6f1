"""Google Calendar (API v3) through google-api-python-client and google-auth.

Calendars
---------
A link's calendar is addressed as ``<user email>/<calendar id>`` (`address`): the email
picks the credentials (the user impersonated by a service account with domain-wide
delegation, or the user whose refresh token is stored), the calendar id is ``primary`` or
any id the user can write to.

Reading
-------
OOO is ``eventType == "outOfOffice"``. A full listing pages through every event of the
calendar and keeps ``nextSyncToken``; later listings send only the ``syncToken`` (Google
refuses ``timeMin``/``timeMax``/``q``/``privateExtendedProperty`` with it). ``eventTypes``
narrows both; if Google refuses it together with a sync token, the connector lists
everything and filters itself from then on. A ``410`` means the token expired: the caller
lists again from scratch.

Recurring OOO events come as a master (``recurrence`` lines) plus exceptions
(``recurringEventId``/``originalStartTime``; cancelled instances are exceptions too).
They are expanded here, inside the sync window, with the same iCalendar code as the local
and CalDAV connectors; an occurrence's event id is Google's instance id
``<master id>_<original start>``, which the API accepts for get, patch and delete. The
cursor remembers the occurrences of each series it reported, so an occurrence that
disappears is reported removed, and the series are expanded again when the window moves.

Writing
-------
Events syncd writes are OOO events carrying the block id in ``extendedProperties.private``.
Google refuses all-day OOO events, so an all-day block is written from local midnight to
local midnight in the user's zone, and read back as all-day. Inserts use an event id derived
from the block id: a retried insert after a crash answers ``409`` and the existing event is
used, never a second one. Updates and deletes send ``If-Match``.

Scale
-----
`changes_many` lists many calendars in ``multipart/mixed`` batches from a small worker
pool; every request (a batch part counts as one) first takes a token from the project's
and the user's budget (`connectors.quota.Quota`), and carries ``quotaUser``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import httplib2
import requests
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from google_auth_httplib2 import Request as AuthRequest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from connectors import ical
from connectors.base import RefreshTokens
from connectors.cursor import dump_cursor, load_cursor, window_key
from connectors.google.options import GoogleOptions
from connectors.peruser import PerUserConnector
from connectors.quota import Quota
from connectors.responses import read_body, retry_after, stale_connection
from syncd.core.calendars import ChangeSet, EventDraft, OooRules, PollRequest, RemoteEvent, SyncWindow, Watch
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
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import format_utc, local_midnight, zone

__all__ = ["BLOCK_PROPERTY", "GoogleConnector", "event_content", "event_id_for_block"]

log = logging.getLogger("syncd.google")

SCOPES = ("https://www.googleapis.com/auth/calendar.events",)
BLOCK_PROPERTY = "syncdBlock"  # extendedProperties.private key holding our block id
OOO = "outOfOffice"
PAGE_SIZE = 2500  # the most events.list returns per page
MAX_PAGES = 200  # 500,000 events: a calendar bigger than that is not a person's
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
_NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, httplib2.HttpLib2Error, TimeoutError,
                   requests.RequestException)


class _Transport:
    """What google-api-python-client and google-auth-httplib2 call (httplib2's ``request``),
    over a requests session: bodies are streamed and refused past `MAX_BODY` (a hostile
    answer cannot take the daemon's memory), and the CA bundle is ours, not the environment's.
    One per thread, like httplib2.Http."""

    def __init__(self, timeout: float, ca_bundle: str | None) -> None:
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our ca_bundle: take only proxies
        self.session.proxies.update(urllib.request.getproxies())
        self.session.verify = ca_bundle or True

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                redirections: int = 5, connection_type: Any = None, **_kwargs: Any) -> tuple[httplib2.Response, bytes]:
        response = self.session.request(method, uri, data=body, headers=dict(headers or {}), timeout=self.timeout,
                                        stream=True, allow_redirects=redirections > 0)
        content = read_body(response, f"google: {method} {urlsplit(uri).path}")
        info = {key.lower(): value for key, value in response.headers.items()}
        info["status"] = str(response.status_code)
        return httplib2.Response(info), content

    def close(self) -> None:
        self.session.close()


# -- ids and cursors -----------------------------------------------------------------------


def event_id_for_block(block_id: str, attempt: int = 0) -> str:
    """The client-supplied event id for a block (base32hex, as Google requires).

    Google keeps a deleted event's id reserved, so the n-th re-creation of a block after its
    event was deleted in the calendar uses the n-th id of the same deterministic sequence."""
    seed = block_id if attempt == 0 else f"{block_id}#{attempt}"
    digest = hashlib.sha256(seed.encode()).digest()[:20]
    return "sd" + base64.b32hexencode(digest).decode().lower().rstrip("=")


def split_instance_id(event_id: str) -> tuple[str, str | None]:
    """``master_20261224T090000Z`` -> (master, instant); a plain id -> (id, None)."""
    master, sep, instant = event_id.rpartition("_")
    if sep and master and (len(instant) == 8 or (len(instant) == 16 and instant.endswith("Z"))) \
            and instant[:8].isdigit():
        return master, instant
    return event_id, None


@dataclass(slots=True)
class _Cursor:
    token: str | None = None
    filtered: bool = True  # the token came from a listing with eventTypes=outOfOffice
    window: str = ""  # the window the series below were expanded in
    series: dict[str, list[str]] = field(default_factory=dict)  # master id -> instants reported
    # OOO events beyond the window's end when listed: reported once the window reaches them
    later: dict[str, str] = field(default_factory=dict)  # event id -> start (UTC, ISO)

    def dump(self) -> str:
        return dump_cursor({"t": self.token, "f": int(self.filtered), "w": self.window, "s": self.series,
                            "l": self.later})

    @classmethod
    def load(cls, text: str) -> _Cursor:
        def read(raw: dict[str, Any]) -> _Cursor:
            if not isinstance(raw["t"], str):
                raise ValueError("no token")
            series = {str(k): [str(i) for i in v] for k, v in raw["s"].items()}
            later = {str(k): str(v) for k, v in raw.get("l", {}).items()}
            return cls(raw["t"], bool(raw["f"]), str(raw["w"]), series, later)
        return load_cursor(text, "google", read)


# -- Google events <-> OOO content -----------------------------------------------------------


def _point(point: Mapping[str, Any] | None, what: str) -> date | datetime:
    if not isinstance(point, Mapping):
        raise BadEventData(f"event has no {what}")
    if point.get("dateTime"):
        value = datetime.fromisoformat(str(point["dateTime"]).replace("Z", "+00:00"))
        if value.tzinfo is None:
            name = point.get("timeZone") or "UTC"
            value = value.replace(tzinfo=zone(str(name)))
        return value
    if point.get("date"):
        return date.fromisoformat(str(point["date"]))
    raise BadEventData(f"event {what} has neither date nor dateTime")


def event_content(event: Mapping[str, Any], tz_name: str) -> OooContent:
    """What a Google event says as OOO content, read in the user's zone ``tz_name``.

    A timed event from local midnight to local midnight is an all-day period: that is how
    all-day OOO has to be written to Google (and how syncd writes it)."""
    title = str(event.get("summary") or "").strip() or None
    start = _point(event.get("start"), "start")
    end = _point(event.get("end"), "end")
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise BadEventData("event mixes a date and a date-time")
    if not isinstance(start, datetime) or not isinstance(end, datetime):
        return all_day_content(start, end, tz_name, title)
    tz = zone(tz_name)
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    if last > first and start == local_midnight(first, tz) and end == local_midnight(last, tz):
        return all_day_content(first, last, tz_name, title)
    return timed_content(start, end, title)


def _updated(event: Mapping[str, Any]) -> datetime | None:
    text = event.get("updated")
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _block_id(event: Mapping[str, Any]) -> str | None:
    value = ((event.get("extendedProperties") or {}).get("private") or {}).get(BLOCK_PROPERTY)
    return str(value) if value else None


def _remote(event: Mapping[str, Any], tz_name: str) -> RemoteEvent:
    return RemoteEvent(event_id=str(event["id"]), etag=str(event.get("etag") or ""),
                       content=event_content(event, tz_name), block_id=_block_id(event), updated=_updated(event))


def _is_ooo(event: Mapping[str, Any]) -> bool:
    return event.get("eventType") == OOO and event.get("status") != "cancelled"


def _times(content: OooContent, tz_name: str) -> dict[str, Any]:
    tz = zone(tz_name)
    start, end = content.start, content.end
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        start, end = local_midnight(content.start_date, tz), local_midnight(content.end_date, tz)
    return {
        "start": {"dateTime": start.astimezone(tz).isoformat(), "timeZone": tz_name},
        "end": {"dateTime": end.astimezone(tz).isoformat(), "timeZone": tz_name},
    }


# -- recurring series --------------------------------------------------------------------------


def _ical_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _ical_point(name: str, point: Mapping[str, Any]) -> str:
    value = _point(point, name.lower())
    if not isinstance(value, datetime):
        return f"{name};VALUE=DATE:{value:%Y%m%d}"
    tz_name = point.get("timeZone")
    if tz_name:
        return f"{name};TZID={tz_name}:{value.astimezone(zone(str(tz_name))):%Y%m%dT%H%M%S}"
    return f"{name}:{value.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def series_calendar(master: Mapping[str, Any], exceptions: Iterable[Mapping[str, Any]]) -> bytes:
    """A Google recurring event and its exceptions as one iCalendar object (UID = master id)."""
    uid = str(master["id"])
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{ical.PRODID}", "BEGIN:VEVENT", f"UID:{uid}",
             _ical_point("DTSTART", master["start"]), _ical_point("DTEND", master["end"]),
             f"SUMMARY:{_ical_text(str(master.get('summary') or ''))}", "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]
    lines += [str(rule) for rule in master.get("recurrence") or () if str(rule).split(":")[0].split(";")[0]
              in ("RRULE", "EXRULE", "RDATE", "EXDATE")]
    overrides: list[str] = []
    for exc in exceptions:
        original = exc.get("originalStartTime")
        if not isinstance(original, Mapping):
            continue
        if exc.get("status") == "cancelled":
            lines.append(_ical_point("EXDATE", original))
            continue
        overrides += ["BEGIN:VEVENT", f"UID:{uid}", _ical_point("RECURRENCE-ID", original),
                      _ical_point("DTSTART", exc["start"]), _ical_point("DTEND", exc["end"]),
                      f"SUMMARY:{_ical_text(str(exc.get('summary') or ''))}", "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
                      "END:VEVENT"]
    lines += ["END:VEVENT", *overrides, "END:VCALENDAR", ""]
    return "\r\n".join(lines).encode()


@dataclass(slots=True)
class _Series:
    master: dict[str, Any] | None = None
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    gone: bool = False  # the master was deleted


def _original_instant(exception: Mapping[str, Any]) -> str | None:
    original = exception.get("originalStartTime")
    if not isinstance(original, Mapping):
        return split_instance_id(str(exception.get("id", "")))[1]
    value = _point(original, "original start")
    return ical.format_instant(value)


def expand_series(series: _Series, window: SyncWindow, limits: ical.ExpansionLimits) -> list[RemoteEvent]:
    """The OOO occurrences of a series inside the window, with Google instance ids."""
    master = series.master
    if master is None or series.gone or not _is_ooo(master):
        return []
    parsed = ical.parse_ooo_events(series_calendar(master, series.exceptions), window, OooRules(all_events=True),
                                   etag=str(master.get("etag") or ""), fallback_updated=_updated(master),
                                   limits=limits)
    for problem in parsed.problems:
        log.warning("google event %s: %s", master.get("id"), problem)
    own = {_original_instant(e): e for e in series.exceptions}
    events = []
    for event in parsed.events:
        uid, instant = ical.split_event_id(event.event_id)
        if instant is None:  # a series whose rule yields only its first date
            instant = ical.format_instant(_point(master["start"], "start"))
        exception = own.get(instant)
        source = exception or master
        events.append(replace(event, event_id=f"{uid}_{instant}", etag=str(source.get("etag") or ""),
                              updated=_updated(source), series_id=uid, block_id=None))
    return events


# -- errors ----------------------------------------------------------------------------------


def _reason(err: HttpError) -> str:
    try:
        body = json.loads(err.content or b"{}")
        errors = body.get("error", {}).get("errors") or [{}]
        return str(errors[0].get("reason") or body.get("error", {}).get("status") or "")
    except (ValueError, AttributeError):
        return ""


def translate(err: HttpError, what: str) -> SyncdError:
    """A Google API error as one of ours (the message names the call and Google's reason)."""
    status = int(err.resp.status)
    reason = _reason(err)
    text = f"google: {what}: HTTP {status}{f' {reason}' if reason else ''}"
    if status == 429 or (status == 403 and reason in _RATE_REASONS):
        return RateLimited(f"{text} (rate limited)", retry_after=retry_after(err.resp))
    if status == 401:
        return AuthError(f"{text}: credentials rejected; check the service account's delegation or the "
                         "user's refresh token")
    if status == 403:
        return AuthError(f"{text}: access denied; the calendar is not shared with this account or the "
                         "domain-wide delegation lacks the calendar scope")
    if status == 404:
        return NotFound(f"{text}: not found")
    if status == 410 and reason in ("fullSyncRequired", "updatedMinTooLongAgo"):
        return CursorExpired(f"{text}: sync token expired; listing again")
    if status == 410:
        return NotFound(f"{text}: deleted")
    if status == 412:
        return PreconditionFailed(f"{text}: the event changed since it was read")
    if status >= 500 or status == 408:
        return TransientError(f"{text}: Google is having trouble; will retry")
    return ConnectorError(f"{text}: {err.reason or 'request refused'}")


def _auth_failure(exc: google.auth.exceptions.GoogleAuthError, who: str) -> SyncdError:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, google.auth.exceptions.TransportError) or getattr(exc, "retryable", False):
        return TransientError(f"google: getting a token for {who} failed: {text}; will retry")
    return AuthError(f"google: {who} cannot sign in ({text}); the user must authorise syncd again "
                     "(or fix the service account's domain-wide delegation)")


# -- the connector ---------------------------------------------------------------------------


@dataclass
class _Listing:
    """One calendar's listing in progress (first page possibly fetched in a batch)."""

    request: PollRequest
    owner: str
    calendar_id: str
    cursor: _Cursor | None  # None: full listing
    filtered: bool
    items: list[dict[str, Any]] = field(default_factory=list)
    page_token: str | None = None
    next_token: str | None = None
    done: bool = False


class GoogleConnector(PerUserConnector):
    """Thread-safe: the daemon's poll workers share one instance per account."""

    provider = "google"
    push_kind = "google"

    def __init__(self, options: GoogleOptions, *, refresh_tokens: RefreshTokens | None = None,
                 quota: Quota | None = None) -> None:
        self.options = options
        self.refresh_tokens = refresh_tokens
        self.quota = quota or Quota(options.project_quota, options.user_quota)
        self.limits = ical.ExpansionLimits(max_occurrences=options.max_occurrences)
        self._local = threading.local()  # a transport per thread
        self._https: list[_Transport] = []
        self._lock = threading.Lock()
        self._credentials: dict[str, BaseCredentials] = {}
        self._owner_locks: dict[str, threading.Lock] = {}
        self._zones: dict[str, str] = {}  # address -> the user's zone seen in the last listing
        self._filter_types = True  # False once Google refused eventTypes with a sync token
        self._service_account: service_account.Credentials | None = None
        super().__init__()
        self.workers, self.account = options.workers, options.account
        self._service = build("calendar", "v3", http=httplib2.Http(), static_discovery=True, cache_discovery=False,
                              client_options={"api_endpoint": options.api_endpoint})
        # Made once: each `events()` call builds every method and its docstring again (~4 ms).
        self._events = self._service.events()
        self._channels = self._service.channels()
        if options.service_account_file:
            try:
                self._service_account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    options.service_account_file, scopes=list(SCOPES))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"accounts.{options.account}: service_account_file: cannot be used "
                                  f"({str(exc).splitlines()[0]}); download the key JSON again") from exc
        elif not (options.client_id and options.client_secret):
            raise ConfigError(f"accounts.{options.account}: set service_account_file (domain-wide delegation) or "
                              "client_id and client_secret (per-user refresh tokens)")

    # -- addresses ---------------------------------------------------------------------------
    def _zone(self, address: str, fallback: str = "UTC") -> str:
        return self._zones.get(address, fallback)

    # -- reading -----------------------------------------------------------------------------
    def changes_many(self, requests: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        results: list[ChangeSet | Exception | None] = [None] * len(requests)
        listings: list[tuple[int, _Listing]] = []
        for i, request in enumerate(requests):
            try:
                listings.append((i, self._start(request)))
            except SyncdError as exc:
                results[i] = exc
        # Tokens first, from the pool: a cold start signs in thousands of users, one HTTP call each.
        owners = sorted({listing.owner for _, listing in listings})
        failed_owners = {owner: error for owner, error in zip(owners, self._map(self._warm, owners), strict=True)
                         if error is not None}
        for i, listing in listings:
            if listing.owner in failed_owners:
                results[i] = failed_owners[listing.owner]
        listings = [(i, listing) for i, listing in listings if results[i] is None]
        # First pages of every calendar, many to a batch request; the rest per calendar.
        batches = [listings[k:k + self.options.batch_size] for k in range(0, len(listings), self.options.batch_size)]
        for done in self._map(self._first_pages, batches):
            for i, outcome in done:
                results[i] = outcome
        pending = [(i, listing) for i, listing in listings if results[i] is None]
        for i, outcome in zip([i for i, _ in pending], self._map(self._finish, [lst for _, lst in pending]),
                              strict=True):
            results[i] = outcome
        return [r if r is not None else TransientError("google: listing did not finish") for r in results]

    def _warm(self, owner: str) -> SyncdError | None:
        try:
            self._token(owner)
            return None
        except SyncdError as exc:
            return exc

    def _start(self, request: PollRequest) -> _Listing:
        owner, calendar_id = self._split(request.calendar)
        self._zones[request.calendar] = request.window.timezone
        state = _Cursor.load(request.cursor) if request.cursor is not None else None
        if state is not None and state.series and state.window != window_key(request.window):
            state = None  # the window moved: expand every series again, from a full listing
        filtered = state.filtered if state is not None else self._filter_types
        return _Listing(request, owner, calendar_id, state, filtered)

    def _list_request(self, listing: _Listing) -> HttpRequest:
        params: dict[str, Any] = {"calendarId": listing.calendar_id, "maxResults": PAGE_SIZE,
                                  "quotaUser": listing.owner}
        if listing.cursor is not None:
            params["syncToken"] = listing.cursor.token
        if listing.filtered:
            params["eventTypes"] = [OOO]
        if listing.page_token:
            params["pageToken"] = listing.page_token
        return self._events.list(**params)

    def _first_pages(self, batch: Sequence[tuple[int, _Listing]]) -> list[tuple[int, ChangeSet | Exception]]:
        """One batch request carrying the first page of each listing; results for those that
        are complete or failed (the rest continue in `_finish`)."""
        out: list[tuple[int, ChangeSet | Exception]] = []
        if self.options.batch_size <= 1 or len(batch) == 1:
            return out  # nothing to gain: `_finish` lists them one by one
        todo: list[tuple[int, _Listing, HttpRequest]] = []
        for i, listing in batch:
            try:
                self.quota.acquire(listing.owner)
                todo.append((i, listing, self._authorised(self._list_request(listing), listing.owner)))
            except SyncdError as exc:
                out.append((i, exc))
        if not todo:
            return out
        answers: dict[str, tuple[Any, HttpError | None]] = {}

        def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[request_id] = (response, exception)
        batch_request = BatchHttpRequest(callback=collect, batch_uri=self.options.batch_uri)
        for i, _listing, request in todo:
            batch_request.add(request, request_id=str(i))
        try:
            self._send(lambda: batch_request.execute(http=self._http()))
        except HttpError as err:
            failure = translate(err, "batch request")
            return out + [(i, failure) for i, _, _ in todo]
        except _NETWORK_ERRORS as exc:
            failure = TransientError(f"google: batch request failed: {exc}; will retry")
            return out + [(i, failure) for i, _, _ in todo]
        for i, listing, _request in todo:
            response, error = answers.get(str(i), (None, None))
            if error is not None:
                if int(error.resp.status) in (401, 400):
                    continue  # retried alone: a fresh token / without eventTypes (see `_page`)
                out.append((i, translate(error, f"listing {listing.request.calendar}")))
                continue
            if response is None:
                continue  # no answer for this part: list it alone
            self._take_page(listing, response)
        return out

    def _finish(self, listing: _Listing) -> ChangeSet | Exception:
        try:
            pages = 0
            while not listing.done:
                pages += 1
                if pages > MAX_PAGES:
                    raise BadEventData(f"google: {listing.request.calendar} has more than "
                                       f"{MAX_PAGES * PAGE_SIZE} events; not listed")
                self._take_page(listing, self._page(listing))
            return self._change_set(listing)
        except SyncdError as exc:
            return exc

    def _page(self, listing: _Listing) -> dict[str, Any]:
        try:
            return self._execute(lambda: self._list_request(listing), listing.owner,
                                 f"listing {listing.request.calendar}")
        except ConnectorError as exc:
            refused = "HTTP 400" in str(exc) and listing.filtered and listing.cursor is not None
            if not refused:
                raise
        # Google refused eventTypes with a sync token: list everything and filter here.
        log.warning("google: %s: eventTypes refused with a sync token; filtering out-of-office events locally",
                    listing.request.calendar)
        self._filter_types = False
        raise CursorExpired("google: eventTypes refused with a sync token; listing again without it")

    def _take_page(self, listing: _Listing, page: Mapping[str, Any]) -> None:
        listing.items.extend(item for item in page.get("items") or () if isinstance(item, dict))
        listing.page_token = page.get("nextPageToken")
        if listing.page_token is None:
            listing.next_token = page.get("nextSyncToken")
            listing.done = True

    def _change_set(self, listing: _Listing) -> ChangeSet:
        window = listing.request.window
        tz_name = window.timezone
        full = listing.cursor is None
        previous = {} if full or listing.cursor is None else listing.cursor.series
        later = {} if full or listing.cursor is None else dict(listing.cursor.later)
        out = ChangeSet(full=full)
        series: dict[str, _Series] = {}
        for item in listing.items:
            event_id = str(item.get("id") or "")
            if not event_id:
                continue
            cancelled = item.get("status") == "cancelled"
            instance_of = item.get("recurringEventId") or (cancelled and split_instance_id(event_id)[1]
                                                          and split_instance_id(event_id)[0])
            if item.get("recurrence") or (cancelled and event_id in previous):
                entry = series.setdefault(event_id, _Series())
                entry.master, entry.gone = item, cancelled
                continue
            if instance_of:
                if item.get("eventType", OOO) != OOO and str(instance_of) not in previous:
                    continue  # an instance of somebody's recurring meeting (unfiltered listings)
                series.setdefault(str(instance_of), _Series()).exceptions.append(item)
                continue
            later.pop(event_id, None)  # listed now: reported (or removed) below
            if item.get("status") == "cancelled":
                if not full:
                    out.removed.append(event_id)
                continue
            if not _is_ooo(item):
                continue
            try:
                event = _remote(item, tz_name)
            except (BadEventData, ValueError, SyncdError) as exc:
                log.warning("google: %s: event %s skipped: %s", listing.request.calendar, event_id, exc)
                continue
            if full and event.content.end <= window.start:
                continue  # long over
            if full and event.content.start >= window.end:
                later[event.event_id] = format_utc(event.content.start) or ""
                continue
            # An incremental listing reports every change, also one moved outside the window:
            # a block follows its event wherever it goes.
            out.events.append(event)
        for event_id, start in sorted(later.items()):
            if datetime.fromisoformat(start) < window.end:  # the window has reached it
                del later[event_id]
                arrived = self.get(listing.request.calendar, event_id)
                if arrived is not None:
                    out.events.append(arrived)
        reported: dict[str, list[str]] = dict(previous)
        for master_id, entry in series.items():
            if not full:
                entry = self._whole_series(listing, master_id, entry)
            occurrences = expand_series(entry, window, self.limits)
            out.events.extend(occurrences)
            now_ids = [split_instance_id(e.event_id)[1] or "" for e in occurrences]
            gone = set(previous.get(master_id, ())) - set(now_ids)
            out.removed.extend(f"{master_id}_{instant}" for instant in sorted(gone))
            if occurrences:
                reported[master_id] = now_ids
            else:
                reported.pop(master_id, None)
        cursor = _Cursor(listing.next_token, listing.filtered, window_key(window), reported, later)
        out.cursor = cursor.dump() if listing.next_token else None
        if out.cursor is None:
            raise TransientError(f"google: {listing.request.calendar}: listing ended without a sync token; will retry")
        return out

    def _whole_series(self, listing: _Listing, master_id: str, entry: _Series) -> _Series:
        """An incremental listing shows only what changed in a series: read all of it."""
        if entry.gone:
            return entry
        master = entry.master
        if master is None or not master.get("iCalUID"):
            try:
                master = self._execute(lambda: self._events.get(
                    calendarId=listing.calendar_id, eventId=master_id, quotaUser=listing.owner),
                    listing.owner, f"reading series {master_id}")
            except NotFound:
                return _Series(gone=True)
        if master.get("status") == "cancelled":
            return _Series(gone=True)
        params: dict[str, Any] = {"calendarId": listing.calendar_id, "iCalUID": master["iCalUID"],
                                  "showDeleted": True, "maxResults": PAGE_SIZE, "quotaUser": listing.owner}
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            query = {**params, **({"pageToken": page_token} if page_token else {})}
            page = self._execute(lambda q=query: self._events.list(**q),  # type: ignore[misc]
                                 listing.owner, f"reading series {master_id}")
            items.extend(i for i in page.get("items") or () if isinstance(i, dict))
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        whole = _Series()
        for item in items:
            if str(item.get("id")) == master_id:
                whole.master = item
                whole.gone = item.get("status") == "cancelled"
            elif item.get("recurringEventId") == master_id:
                whole.exceptions.append(item)
        if whole.master is None:
            whole.master = master
        return whole

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        try:
            item = self._execute(lambda: self._events.get(
                calendarId=calendar_id, eventId=event_id, quotaUser=owner), owner, f"reading event {event_id}")
        except NotFound:
            return None
        if not _is_ooo(item):
            return None
        event = _remote(item, self._zone(calendar, self._event_zone(item)))
        if item.get("recurringEventId"):
            event = replace(event, series_id=str(item["recurringEventId"]), block_id=None)
        return event

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        page = self._execute(lambda: self._events.list(
            calendarId=calendar_id, privateExtendedProperty=f"{BLOCK_PROPERTY}={block_id}", maxResults=10,
            quotaUser=owner), owner, f"finding the event of block {block_id}")
        for item in page.get("items") or ():
            if _is_ooo(item) and _block_id(item) == block_id:
                return _remote(item, self._zone(calendar, self._event_zone(item)))
        return None

    @staticmethod
    def _event_zone(item: Mapping[str, Any]) -> str:
        return str((item.get("start") or {}).get("timeZone") or "UTC")

    # -- writing -----------------------------------------------------------------------------
    def _body(self, draft: EventDraft) -> dict[str, Any]:
        properties: dict[str, Any] = {"autoDeclineMode": self.options.auto_decline}
        if self.options.decline_message:
            properties["declineMessage"] = self.options.decline_message
        return {
            "summary": draft.content.title or self.options.summary,
            **_times(draft.content, draft.timezone),
            "transparency": "opaque",
            "outOfOfficeProperties": properties,
            "extendedProperties": {"private": {BLOCK_PROPERTY: draft.block_id}},
        }

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        self._zones.setdefault(calendar, draft.timezone)
        body = {**self._body(draft), "eventType": OOO}
        for attempt in range(16):
            event_id = event_id_for_block(draft.block_id, attempt)
            try:
                item = self._execute(lambda eid=event_id: self._events.insert(  # type: ignore[misc]
                    calendarId=calendar_id, body={**body, "id": eid}, quotaUser=owner),
                    owner, f"creating the event of block {draft.block_id}", conflict_ok=True)
            except _Duplicate:
                # Written before (a crash before its link was saved), or deleted since: Google
                # keeps a deleted event's id, so the next id of the sequence is tried.
                try:
                    existing = self._execute(lambda eid=event_id: self._events.get(  # type: ignore[misc]
                        calendarId=calendar_id, eventId=eid, quotaUser=owner), owner, f"reading event {event_id}")
                except NotFound:
                    continue
                if existing.get("status") == "cancelled":
                    continue
                return _remote(existing, draft.timezone)
            return _remote(item, draft.timezone)
        raise ConnectorError(f"google: block {draft.block_id}: 16 events were created and deleted for it; "
                             "not creating another")

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        body = self._body(draft)
        if split_instance_id(event_id)[1] is not None:
            body.pop("extendedProperties")  # an occurrence of someone's series is not our event
        item = self._execute(lambda: self._events.patch(
            calendarId=calendar_id, eventId=event_id, body=body, quotaUser=owner), owner,
            f"updating event {event_id}", etag=etag or None)
        event = _remote(item, draft.timezone)
        if item.get("recurringEventId"):
            event = replace(event, series_id=str(item["recurringEventId"]), block_id=None)
        return event

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        owner, calendar_id = self._split(calendar)
        try:
            self._execute(lambda: self._events.delete(
                calendarId=calendar_id, eventId=event_id, quotaUser=owner), owner,
                f"deleting event {event_id}", etag=etag or None)
        except NotFound:
            return  # already gone (404 / 410 deleted): what we wanted

    # -- push notifications ------------------------------------------------------------------
    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        owner, calendar_id = self._split(calendar)
        expires = datetime.now(UTC) + ttl
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "expiration": str(int(expires.timestamp() * 1000)), "params": {"ttl": str(int(ttl.total_seconds()))}}
        answer = self._execute(lambda: self._events.watch(
            calendarId=calendar_id, body=body, eventTypes=[OOO] if self._filter_types else None,
            quotaUser=owner), owner, f"opening a push channel for {calendar}")
        granted = answer.get("expiration")  # Google may shorten it
        expires_at = datetime.fromtimestamp(int(granted) / 1000, UTC) if granted else expires
        return Watch(str(answer.get("id") or channel_id), str(answer.get("resourceId") or ""), expires_at)

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:
        owner, _calendar_id = self._split(calendar)
        try:
            self._execute(lambda: self._channels.stop(
                body={"id": channel_id, "resourceId": resource_id}), owner, f"stopping push channel {channel_id}")
        except NotFound:
            return

    # -- transport and auth ------------------------------------------------------------------
    def _http(self) -> Any:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = _Transport(self.options.timeout, self.options.ca_bundle)
            with self._lock:
                self._https.append(http)
        return http

    def _send(self, call: Callable[[], Any]) -> Any:
        """Run ``call``; if a kept-alive connection turns out closed by the server (idle
        timeout), once more on a new connection. Replays are safe: inserts carry
        deterministic ids, updates and deletes an etag, listings change nothing."""
        try:
            return call()
        except requests.ConnectionError as exc:
            if not stale_connection(exc):
                raise
            return call()

    def _owner_lock(self, owner: str) -> threading.Lock:
        with self._lock:
            lock = self._owner_locks.get(owner)
            if lock is None:
                lock = self._owner_locks[owner] = threading.Lock()
            return lock

    def _credentials_for(self, owner: str) -> BaseCredentials:
        creds = self._credentials.get(owner)
        if creds is not None:
            return creds
        options = self.options
        if self._service_account is not None:
            domain = options.subject_domain
            if domain and not owner.lower().endswith("@" + domain.lower().lstrip("@")):
                raise ConfigError(f"accounts.{options.account}: {owner} is outside subject_domain {domain}; "
                                  "the service account may not act as this user")
            creds = self._service_account.with_subject(owner)  # type: ignore[no-untyped-call]
        else:
            token = self.refresh_tokens.refresh_token(options.account, owner) if self.refresh_tokens else None
            if not token:
                raise AuthError(f"google: no refresh token stored for {owner}; add one with "
                                f"`syncd credentials set {options.account} {owner}`")
            creds = user_credentials.Credentials(None, refresh_token=token, client_id=options.client_id,  # type: ignore[no-untyped-call]
                                                 client_secret=options.client_secret, token_uri=options.token_uri,
                                                 scopes=list(SCOPES))
        self._credentials[owner] = creds
        return creds

    def forget_credentials(self, owner: str) -> None:
        """Drop cached credentials (a new refresh token was stored for the user)."""
        with self._lock:
            self._credentials.pop(owner, None)

    def _token(self, owner: str, *, renew: bool = False) -> str:
        with self._owner_lock(owner):
            creds = self._credentials_for(owner)
            if renew or not creds.valid:
                try:
                    creds.refresh(AuthRequest(self._http()))  # type: ignore[no-untyped-call]
                except google.auth.exceptions.GoogleAuthError as exc:
                    if not getattr(exc, "retryable", False):
                        self._credentials.pop(owner, None)  # a new refresh token may be stored meanwhile
                    raise _auth_failure(exc, owner) from exc
                except _NETWORK_ERRORS as exc:
                    raise TransientError(f"google: token endpoint unreachable for {owner}: {exc}") from exc
            return str(creds.token)

    def _authorised(self, request: HttpRequest, owner: str, *, renew: bool = False) -> HttpRequest:
        request.headers["authorization"] = f"Bearer {self._token(owner, renew=renew)}"
        return request

    def _execute(self, make: Callable[[], HttpRequest], owner: str, what: str, *, etag: str | None = None,
                 conflict_ok: bool = False) -> dict[str, Any]:
        """One API call: quota, token, and a single retry with a fresh token after a 401."""
        for attempt in range(2):
            self.quota.acquire(owner)
            request = self._authorised(make(), owner, renew=attempt > 0)
            if etag:
                request.headers["If-Match"] = etag
            try:
                answer = self._send(lambda r=request: r.execute(http=self._http()))  # type: ignore[misc]
            except HttpError as err:
                status = int(err.resp.status)
                if status == 401 and attempt == 0:
                    continue
                if status == 409 and conflict_ok:
                    raise _Duplicate(what) from err
                raise translate(err, what) from err
            except _NETWORK_ERRORS as exc:
                raise TransientError(f"google: {what}: {type(exc).__name__}: {exc}; will retry") from exc
            return answer if isinstance(answer, dict) else {}
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._close_pool()
        with self._lock:
            https, self._https = self._https, []
        for connection in https:
            connection.close()


class _Duplicate(ConnectorError):
    """409: the client-supplied id is taken."""
