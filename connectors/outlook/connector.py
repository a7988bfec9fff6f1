"""Microsoft 365 / Outlook calendars through Microsoft Graph v1.0, signing in with msal.

Calendars
---------
A link's calendar is addressed as ``<user email>/<calendar id>`` (`address`); ``primary`` is
the mailbox's default calendar. App-only sign-in (client credentials: a secret or a
certificate) reaches every mailbox of the tenant; ``auth = "delegated"`` uses each user's own
refresh token instead (kept encrypted by syncd; Entra ID rotates it on every use, and the new
one is stored at once).

Reading
-------
OOO is ``showAs == "oof"``. Changes come from ``calendarView/delta`` over the sync window,
following ``@odata.nextLink`` to ``@odata.deltaLink``, which is the cursor. A delta round is
bound to the span it started with, so the span asked for is the window widened to whole weeks:
a new round (a full listing) starts once a week, not every day. Delta items never carry
extended properties, so our events are recognised through syncd's stored links. ``@removed``
items and events that stop being OOO are removals, but Graph also reports an event *moved*
out of the span as ``@removed``; the connector therefore only reports ids it listed before, and
reads each of them once more to tell a move from a deletion. An expired
cursor (``410``, ``syncStateNotFound``, ``resyncRequired``) means a full listing. Recurring
series arrive as their occurrences and exceptions, each with its own id.

The mailbox's scheduled automatic replies can be a second, read-only source
(``automatic_replies = true``): while they are scheduled, they are one OOO event with the id
``automatic-replies``.

Writing
-------
Events syncd writes say ``showAs: oof``, ``isReminderOn: false``, carry the block id in a
single-value extended property and a ``transactionId`` derived from it, so a POST retried
after a crash does not make a second event; before a POST the connector also looks for an
earlier one with a ``$filter`` on the extended property. All-day blocks are all-day events in
the user's zone. Updates and deletes send ``If-Match``.

Scale
-----
With app-only sign-in, the first delta page of many mailboxes goes in JSON ``$batch``
requests (20 each); a request throttled inside a batch is retried alone. At most 4 requests
run against one mailbox at once, as Exchange Online allows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import msal
import requests

from connectors import ical
from connectors.base import RefreshTokens
from connectors.cursor import dump_cursor, load_cursor
from connectors.outlook.options import MAX_BATCH, OutlookOptions
from connectors.peruser import PerUserConnector
from connectors.responses import read_body, retry_after, stale_connection
from syncd.core.calendars import ChangeSet, EventDraft, PollRequest, RemoteEvent, SyncWindow, Watch
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
from syncd.core.time import format_utc, zone

__all__ = ["AUTOMATIC_REPLIES", "BLOCK_PROPERTY", "OutlookConnector", "event_content", "transaction_id"]

log = logging.getLogger("syncd.outlook")

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
DELEGATED_SCOPES = ("https://graph.microsoft.com/Calendars.ReadWrite", "https://graph.microsoft.com/MailboxSettings.Read")
# A fixed GUID names syncd's property set; "Name SyncdBlockId" is the property in it.
BLOCK_PROPERTY = "String {5b1c7f6e-3a2d-4c8e-9f41-2d6b8e0a7c35} Name SyncdBlockId"
AUTOMATIC_REPLIES = "automatic-replies"
MAILBOX_CONCURRENCY = 4  # Exchange Online: at most 4 concurrent requests per mailbox
MAX_PAGES = 500
PAGE_SIZE = 100
SHORT_RETRY = 2.0  # seconds: a throttled batch part waiting no longer than this is retried in the same pass
_EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, OSError)


def transaction_id(block_id: str) -> str:
    """The POST's transactionId: Graph answers a retried POST with the event it made first."""
    return "syncd-" + hashlib.sha256(block_id.encode()).hexdigest()[:32]


# -- cursors ---------------------------------------------------------------------------------


def _span(window: SyncWindow) -> tuple[datetime, datetime]:
    """The window widened to whole weeks (Monday 00:00 UTC), so a delta round lasts a week."""
    start = window.start.astimezone(UTC)
    first = datetime.combine(start.date() - timedelta(days=start.weekday()), datetime.min.time(), tzinfo=UTC)
    end = window.end.astimezone(UTC)
    last = datetime.combine(end.date() + timedelta(days=7 - end.weekday()), datetime.min.time(), tzinfo=UTC)
    return first, last


@dataclass(slots=True)
class _Cursor:
    delta: str
    span: str  # the span the round started with, and the zone asked for
    known: list[str] = field(default_factory=list)  # OOO event ids reported so far
    replies: str | None = None  # fingerprint of the automatic replies reported, if any

    def dump(self) -> str:
        return dump_cursor({"d": self.delta, "s": self.span, "k": self.known, "a": self.replies})

    @classmethod
    def load(cls, text: str) -> _Cursor:
        def read(raw: dict[str, Any]) -> _Cursor:
            if not isinstance(raw["d"], str):
                raise ValueError("no delta link")
            return cls(raw["d"], str(raw["s"]), [str(i) for i in raw["k"]], raw.get("a"))
        return load_cursor(text, "outlook", read)


def _span_key(window: SyncWindow) -> str:
    first, last = _span(window)
    return f"{first.date()}/{last.date()}/{window.timezone}"


# -- Graph events <-> OOO content --------------------------------------------------------------


def _instant(point: Mapping[str, Any] | None, what: str) -> datetime:
    if not isinstance(point, Mapping) or not point.get("dateTime"):
        raise BadEventData(f"event has no {what}")
    text = str(point["dateTime"]).replace("Z", "")
    head, dot, fraction = text.partition(".")
    value = datetime.fromisoformat(head + (dot + fraction[:6] if dot else ""))
    tz_name = str(point.get("timeZone") or "UTC")
    tz = ical.resolve_tzid(tz_name)
    if tz is None:
        raise BadEventData(f"event {what} has an unknown time zone {tz_name!r}")
    return value.replace(tzinfo=tz)


def event_content(event: Mapping[str, Any], tz_name: str) -> OooContent:
    """A Graph event as OOO content, in the user's zone ``tz_name`` (all-day dates live there)."""
    title = str(event.get("subject") or "").strip() or None
    start, end = _instant(event.get("start"), "start"), _instant(event.get("end"), "end")
    if event.get("isAllDay"):
        tz = zone(tz_name)
        first, last = start.astimezone(tz), end.astimezone(tz)
        if first.time() == last.time() == datetime.min.time() and last.date() > first.date():
            return all_day_content(first.date(), last.date(), tz_name, title)
    return timed_content(start, end, title)


def _updated(event: Mapping[str, Any]) -> datetime | None:
    text = str(event.get("lastModifiedDateTime") or "").replace("Z", "")
    if not text:
        return None
    head, dot, fraction = text.partition(".")  # Graph writes seven fractional digits
    try:
        return datetime.fromisoformat(head + (dot + fraction[:6] if dot else "")).replace(tzinfo=UTC)
    except ValueError:
        return None


def _etag(event: Mapping[str, Any]) -> str:
    return str(event.get("@odata.etag") or event.get("changeKey") or "")


def _block_id(event: Mapping[str, Any]) -> str | None:
    for prop in event.get("singleValueExtendedProperties") or ():
        if str(prop.get("id", "")).lower() == BLOCK_PROPERTY.lower():
            return str(prop.get("value") or "") or None
    return None


def _is_ooo(event: Mapping[str, Any]) -> bool:
    return str(event.get("showAs", "")).lower() == "oof" and not event.get("isCancelled") \
        and "@removed" not in event


def _remote(event: Mapping[str, Any], tz_name: str) -> RemoteEvent:
    return RemoteEvent(event_id=str(event["id"]), etag=_etag(event), content=event_content(event, tz_name),
                       block_id=_block_id(event), updated=_updated(event),
                       series_id=str(event["seriesMasterId"]) if event.get("seriesMasterId") else None)


def _graph_times(content: OooContent, tz_name: str) -> dict[str, Any]:
    tz = zone(tz_name)
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        return {"isAllDay": True,
                "start": {"dateTime": f"{content.start_date.isoformat()}T00:00:00", "timeZone": tz_name},
                "end": {"dateTime": f"{content.end_date.isoformat()}T00:00:00", "timeZone": tz_name}}
    return {"isAllDay": False,
            "start": {"dateTime": content.start.astimezone(tz).replace(tzinfo=None).isoformat(), "timeZone": tz_name},
            "end": {"dateTime": content.end.astimezone(tz).replace(tzinfo=None).isoformat(), "timeZone": tz_name}}


def replies_content(setting: Mapping[str, Any], tz_name: str) -> OooContent | None:
    """Scheduled automatic replies as OOO content (status compared case-insensitively)."""
    if str(setting.get("status", "")).lower() != "scheduled":
        return None
    try:
        start = _instant(setting.get("scheduledStartDateTime"), "scheduled start")
        end = _instant(setting.get("scheduledEndDateTime"), "scheduled end")
    except (BadEventData, ValueError):
        return None
    if end <= start:
        return None
    tz = zone(tz_name)
    first, last = start.astimezone(tz), end.astimezone(tz)
    if first.time() == last.time() == datetime.min.time():
        return all_day_content(first.date(), last.date(), tz_name, "Automatic replies")
    return timed_content(start, end, "Automatic replies")


# -- errors ------------------------------------------------------------------------------------


def _error_code(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("code") or "")
        if isinstance(error, str):
            return error
    return ""


def translate(status: int, body: Any, headers: Mapping[str, Any], what: str) -> SyncdError:
    code = _error_code(body)
    text = f"outlook: {what}: HTTP {status}{f' {code}' if code else ''}"
    if status in (429, 503) or code in ("TooManyRequests", "ApplicationThrottled", "MailboxConcurrency"):
        return RateLimited(f"{text} (throttled)", retry_after=retry_after(headers))
    if status == 410 or code in _EXPIRED_CODES:
        return CursorExpired(f"{text}: delta link expired; listing again")
    if status == 401:
        return AuthError(f"{text}: the token was refused; check the app registration's permissions")
    if status == 403:
        return AuthError(f"{text}: access denied; grant the app Calendars.ReadWrite (application) or check the "
                         "mailbox's access policy")
    if status == 404:
        return NotFound(f"{text}: not found")
    if status == 412:
        return PreconditionFailed(f"{text}: the event changed since it was read")
    if status >= 500 or status == 408:
        return TransientError(f"{text}: Microsoft Graph is having trouble; will retry")
    message = body.get("error", {}).get("message") if isinstance(body, Mapping) and isinstance(
        body.get("error"), Mapping) else None
    return ConnectorError(f"{text}: {message or 'request refused'}")


def _token_failure(result: Mapping[str, Any], who: str) -> SyncdError:
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "").splitlines()[0][:200]
    if error in ("temporarily_unavailable", "server_error") or error.startswith("http_"):
        return TransientError(f"outlook: token for {who}: {error}; will retry")
    return AuthError(f"outlook: {who} cannot sign in ({error}: {description}); "
                     + ("store a new refresh token with `syncd credentials set`" if who != "the app" else
                        "check tenant_id, client_id and the client secret or certificate"))


@dataclass
class _Answer:
    status: int
    body: Any
    headers: Mapping[str, Any]


@dataclass
class _Listing:
    request: PollRequest
    owner: str
    calendar_id: str
    cursor: _Cursor | None
    next_url: str
    items: list[dict[str, Any]] = field(default_factory=list)
    delta: str | None = None
    pages: int = 0


class OutlookConnector(PerUserConnector):
    """Thread-safe: the daemon's poll workers share one instance per account."""

    provider = "outlook"
    push_kind = "outlook"

    def __init__(self, options: OutlookOptions, *, refresh_tokens: RefreshTokens | None = None,
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        if not options.tenant_id and not options.authority:
            raise ConfigError(f"accounts.{options.account}: tenant_id is missing")
        if not options.client_id:
            raise ConfigError(f"accounts.{options.account}: client_id is missing")
        if options.auth == "app" and not (options.client_secret or options.certificate_file):
            raise ConfigError(f"accounts.{options.account}: give client_secret (or client_secret_env) or "
                              "certificate_file for app-only sign-in")
        self.options = options
        self.refresh_tokens = refresh_tokens
        self.graph = options.graph_url.rstrip("/")
        self._session_factory = session_factory or self._new_session
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._mailboxes: dict[str, threading.BoundedSemaphore] = {}
        self._zones: dict[str, str] = {}
        self._user_tokens: dict[str, tuple[str, float]] = {}  # delegated: email -> (token, expires)
        self._user_locks: dict[str, threading.Lock] = {}
        super().__init__()
        self.workers, self.account = options.workers, options.account
        self._app_session = self._session_factory()
        self._sessions.append(self._app_session)
        authority = options.authority or DEFAULT_AUTHORITY.format(tenant=options.tenant_id)
        try:
            self._app = msal.ConfidentialClientApplication(
                options.client_id, client_credential=self._credential(), authority=authority,
                http_client=self._app_session, instance_discovery=False)
        except ValueError as exc:
            raise ConfigError(f"accounts.{options.account}: the authority {authority} refused the tenant "
                              f"({str(exc).splitlines()[0]})") from exc
        except requests.RequestException as exc:
            raise TransientError(f"outlook: cannot reach {authority}: {exc}") from exc

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        # REQUESTS_CA_BUNDLE and friends would silently replace our CA bundle: take only proxies.
        session.trust_env = False
        session.proxies.update(urllib.request.getproxies())
        session.verify = self.options.ca_bundle or True
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=MAILBOX_CONCURRENCY * 4)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def _credential(self) -> Any:
        if self.options.auth == "app" and self.options.certificate_file:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            try:
                with open(self.options.certificate_file, "rb") as fh:
                    pem = fh.read()
                cert = x509.load_pem_x509_certificate(pem)
                serialization.load_pem_private_key(pem, password=None)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"accounts.{self.options.account}: certificate_file must hold the PEM "
                                  f"certificate and its unencrypted private key ({exc})") from exc
            return {"private_key": pem.decode(), "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}  # noqa: S303
        return self.options.client_secret

    # -- addresses -----------------------------------------------------------------------------
    def _events_path(self, owner: str, calendar_id: str) -> str:
        user = f"/users/{quote(owner)}"
        return f"{user}/events" if calendar_id == "primary" else f"{user}/calendars/{quote(calendar_id)}/events"

    def _view_path(self, owner: str, calendar_id: str) -> str:
        user = f"/users/{quote(owner)}"
        return (f"{user}/calendarView/delta" if calendar_id == "primary"
                else f"{user}/calendars/{quote(calendar_id)}/calendarView/delta")

    def _prefer(self, tz_name: str, *, page: bool = False) -> str:
        parts = [f'outlook.timezone="{tz_name}"']
        if page:
            parts.append(f"odata.maxpagesize={PAGE_SIZE}")
        return ", ".join(parts)

    # -- reading -------------------------------------------------------------------------------
    def changes_many(self, requests_: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        results: list[ChangeSet | Exception | None] = [None] * len(requests_)
        listings: list[tuple[int, _Listing]] = []
        for i, request in enumerate(requests_):
            try:
                listings.append((i, self._start(request)))
            except SyncdError as exc:
                results[i] = exc
        if self.options.auth == "app" and self.options.batch_size > 1 and len(listings) > 1:
            size = min(self.options.batch_size, MAX_BATCH)
            batches = [listings[k:k + size] for k in range(0, len(listings), size)]
            for done in self._map(self._first_pages, batches):
                for i, outcome in done:
                    results[i] = outcome
        pending = [(i, listing) for i, listing in listings if results[i] is None]
        for (i, _), outcome in zip(pending, self._map(self._finish, [lst for _, lst in pending]), strict=True):
            results[i] = outcome
        return [r if r is not None else TransientError("outlook: listing did not finish") for r in results]

    def _start(self, request: PollRequest) -> _Listing:
        owner, calendar_id = self._split(request.calendar)
        self._zones[request.calendar] = request.window.timezone
        state = _Cursor.load(request.cursor) if request.cursor is not None else None
        if state is not None and state.span != _span_key(request.window):
            state = None  # a new week: a new delta round over the moved span
        if state is not None:
            return _Listing(request, owner, calendar_id, state, state.delta)
        first, last = _span(request.window)
        query = urlencode({"startDateTime": format_utc(first), "endDateTime": format_utc(last)})
        return _Listing(request, owner, calendar_id, None, f"{self._view_path(owner, calendar_id)}?{query}")

    def _relative(self, url: str) -> str:
        """Graph's next and delta links are absolute; $batch wants them relative to the version."""
        if url.startswith(self.graph):
            return url[len(self.graph):]
        parts = urlsplit(url)
        if parts.scheme:
            version = urlsplit(self.graph).path
            path = parts.path[len(version):] if parts.path.startswith(version) else parts.path
            return f"{path}?{parts.query}" if parts.query else path
        return url

    def _first_pages(self, batch: Sequence[tuple[int, _Listing]]) -> list[tuple[int, ChangeSet | Exception]]:
        out: list[tuple[int, ChangeSet | Exception]] = []
        todo = {str(i): listing for i, listing in batch}
        for _attempt in range(3):
            if not todo:
                break
            body = {"requests": [{"id": key, "method": "GET", "url": self._relative(listing.next_url),
                                  "headers": {"Prefer": self._prefer(listing.request.window.timezone, page=True)}}
                                 for key, listing in todo.items()]}
            try:
                answer = self._call("POST", "/$batch", json_body=body, what="a batch of delta listings")
            except SyncdError as exc:
                return out + [(int(key), exc) for key in todo]
            wait = 0.0
            retry: dict[str, _Listing] = {}
            for part in answer.body.get("responses") or ():
                key = str(part.get("id"))
                listing = todo.get(key)
                if listing is None:
                    continue
                status = int(part.get("status") or 0)
                headers = part.get("headers") or {}
                if status == 200:
                    self._take_page(listing, part.get("body") or {})
                    continue
                failure = translate(status, part.get("body"), headers, f"listing {listing.request.calendar}")
                if (status == 429 and isinstance(failure, RateLimited) and failure.retry_after is not None
                        and failure.retry_after <= SHORT_RETRY):
                    retry[key] = listing  # throttled alone, briefly: only this request is sent again
                    wait = max(wait, failure.retry_after)
                elif status == 401:
                    continue  # `_finish` asks alone, with a fresh token
                else:
                    out.append((int(key), failure))
            todo = retry
            if todo:
                time.sleep(wait)
        return out  # what is still in `todo` after three tries is asked again alone in `_finish`

    def _finish(self, listing: _Listing) -> ChangeSet | Exception:
        try:
            while listing.delta is None:
                listing.pages += 1
                if listing.pages > MAX_PAGES:
                    raise BadEventData(f"outlook: {listing.request.calendar}: more than {MAX_PAGES} delta pages")
                answer = self._call("GET", listing.next_url, owner=listing.owner,
                                    headers={"Prefer": self._prefer(listing.request.window.timezone, page=True)},
                                    what=f"listing {listing.request.calendar}")
                self._take_page(listing, answer.body)
            return self._change_set(listing)
        except SyncdError as exc:
            return exc

    def _take_page(self, listing: _Listing, page: Mapping[str, Any]) -> None:
        listing.items.extend(i for i in page.get("value") or () if isinstance(i, dict))
        if page.get("@odata.deltaLink"):
            listing.delta = str(page["@odata.deltaLink"])
        elif page.get("@odata.nextLink"):
            listing.next_url = str(page["@odata.nextLink"])
        else:
            raise TransientError(f"outlook: {listing.request.calendar}: a delta page with neither a next nor "
                                 "a delta link; will retry")

    def _change_set(self, listing: _Listing) -> ChangeSet:
        window = listing.request.window
        tz_name = window.timezone
        full = listing.cursor is None
        known = set() if full or listing.cursor is None else set(listing.cursor.known)
        out = ChangeSet(full=full)
        gone: list[str] = []
        for item in listing.items:
            event_id = str(item.get("id") or "")
            if not event_id:
                continue
            if not _is_ooo(item):
                if event_id in known:
                    gone.append(event_id)  # deleted, moved out of the span, or no longer OOO
                continue
            try:
                event = _remote(item, tz_name)
            except (BadEventData, ValueError, SyncdError) as exc:
                log.warning("outlook: %s: event %s skipped: %s", listing.request.calendar, event_id, exc)
                continue
            if full and not window.overlaps(event.content.start, event.content.end):
                continue
            out.events.append(event)
        # Graph reports an event moved out of the span as removed: read each before believing it.
        for event_id, still in zip(gone, [self.get(listing.request.calendar, e) for e in gone], strict=True):
            if still is None:
                out.removed.append(event_id)
            else:
                out.events.append(still)
        reported = (known - set(out.removed)) | {e.event_id for e in out.events}
        replies: str | None = listing.cursor.replies if listing.cursor is not None else None
        if self.options.automatic_replies:
            replies = self._replies(listing, out, replies)
        cursor = _Cursor(listing.delta or "", _span_key(window), sorted(reported - {AUTOMATIC_REPLIES}), replies)
        out.cursor = cursor.dump()
        return out

    def _replies(self, listing: _Listing, out: ChangeSet, previous: str | None) -> str | None:
        answer = self._call("GET", f"/users/{quote(listing.owner)}/mailboxSettings/automaticRepliesSetting",
                            owner=listing.owner, headers={"Prefer": self._prefer(listing.request.window.timezone)},
                            what=f"reading {listing.owner}'s automatic replies")
        content = replies_content(answer.body, listing.request.window.timezone)
        if content is None:
            if previous is not None:
                out.removed.append(AUTOMATIC_REPLIES)
            return None
        fingerprint = content.fingerprint()
        if previous != fingerprint or out.full:
            out.events.append(RemoteEvent(AUTOMATIC_REPLIES, fingerprint, content, read_only=True))
        return fingerprint

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        tz_name = self._zones.get(calendar, "UTC")
        if event_id == AUTOMATIC_REPLIES:
            answer = self._call("GET", f"/users/{quote(owner)}/mailboxSettings/automaticRepliesSetting",
                                owner=owner, headers={"Prefer": self._prefer(tz_name)},
                                what=f"reading {owner}'s automatic replies")
            content = replies_content(answer.body, tz_name)
            return None if content is None else RemoteEvent(AUTOMATIC_REPLIES, content.fingerprint(), content,
                                                            read_only=True)
        try:
            answer = self._call("GET", f"{self._events_path(owner, calendar_id)}/{quote(event_id)}", owner=owner,
                                params={"$expand": f"singleValueExtendedProperties($filter=id eq '{BLOCK_PROPERTY}')"},
                                headers={"Prefer": self._prefer(tz_name)}, what=f"reading event {event_id}")
        except NotFound:
            return None
        return _remote(answer.body, tz_name) if _is_ooo(answer.body) else None

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        tz_name = self._zones.get(calendar, "UTC")
        quoted = block_id.replace("'", "''")
        answer = self._call("GET", self._events_path(owner, calendar_id), owner=owner, params={
            "$filter": f"singleValueExtendedProperties/any(ep: ep/id eq '{BLOCK_PROPERTY}' and ep/value eq '{quoted}')",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{BLOCK_PROPERTY}')",
            "$top": "5"}, headers={"Prefer": self._prefer(tz_name)}, what=f"finding the event of block {block_id}")
        for item in answer.body.get("value") or ():
            if _is_ooo(item) and _block_id(item) == block_id:
                return _remote(item, tz_name)
        return None

    # -- writing -------------------------------------------------------------------------------
    def _body(self, draft: EventDraft) -> dict[str, Any]:
        return {"subject": draft.content.title or self.options.summary, "showAs": "oof", "isReminderOn": False,
                **_graph_times(draft.content, draft.timezone),
                "singleValueExtendedProperties": [{"id": BLOCK_PROPERTY, "value": draft.block_id}]}

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        self._zones.setdefault(calendar, draft.timezone)
        earlier = self.find_by_block_id(calendar, draft.block_id)  # a POST made just before a crash
        if earlier is not None:
            return earlier
        answer = self._call("POST", self._events_path(owner, calendar_id), owner=owner,
                            json_body={**self._body(draft), "transactionId": transaction_id(draft.block_id)},
                            headers={"Prefer": self._prefer(draft.timezone)},
                            what=f"creating the event of block {draft.block_id}")
        return replace(_remote(answer.body, draft.timezone), block_id=draft.block_id)

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        if event_id == AUTOMATIC_REPLIES:
            raise PreconditionFailed("outlook: the automatic replies are read-only; their schedule wins")
        body = self._body(draft)
        # Our own events carry the property since their creation, and an occurrence of a
        # person's series cannot take one: a PATCH never sends it.
        body.pop("singleValueExtendedProperties")
        answer = self._call("PATCH", f"{self._events_path(owner, calendar_id)}/{quote(event_id)}", owner=owner,
                            json_body=body, headers={"Prefer": self._prefer(draft.timezone),
                                                     **({"If-Match": etag} if etag else {})},
                            what=f"updating event {event_id}")
        return replace(_remote(answer.body, draft.timezone), block_id=draft.block_id)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        owner, calendar_id = self._split(calendar)
        if event_id == AUTOMATIC_REPLIES:
            return  # read-only: the mailbox's schedule stays; syncd forgets the pairing
        try:
            self._call("DELETE", f"{self._events_path(owner, calendar_id)}/{quote(event_id)}", owner=owner,
                       headers={"If-Match": etag} if etag else {}, what=f"deleting event {event_id}")
        except NotFound:
            return

    # -- change notifications ------------------------------------------------------------------
    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        owner, calendar_id = self._split(calendar)
        # Graph keeps event subscriptions for at most 10,080 minutes (7 days).
        expires = datetime.now(UTC) + min(ttl, timedelta(minutes=10_070))
        resource = self._events_path(owner, calendar_id).lstrip("/")
        answer = self._call("POST", "/subscriptions", owner=owner, json_body={
            "changeType": "created,updated,deleted", "notificationUrl": address,
            "lifecycleNotificationUrl": address, "resource": resource,
            "expirationDateTime": format_utc(expires), "clientState": token},
            what=f"subscribing to {calendar}")
        granted = answer.body.get("expirationDateTime")
        expires_at = datetime.fromisoformat(str(granted).replace("Z", "+00:00")) if granted else expires
        return Watch(str(answer.body["id"]), str(answer.body.get("resource") or resource), expires_at)

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:
        owner, _calendar_id = self._split(calendar)
        try:
            self._call("DELETE", f"/subscriptions/{quote(channel_id)}", owner=owner,
                       what=f"removing subscription {channel_id}")
        except NotFound:
            return

    # -- transport and auth --------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
            with self._lock:
                self._sessions.append(session)
        return session

    def _mailbox(self, owner: str) -> threading.BoundedSemaphore:
        with self._lock:
            gate = self._mailboxes.get(owner)
            if gate is None:
                gate = self._mailboxes[owner] = threading.BoundedSemaphore(MAILBOX_CONCURRENCY)
            return gate

    def _token(self, owner: str | None, *, renew: bool = False) -> str:
        if self.options.auth == "app" or owner is None:
            if renew:
                self._app.remove_tokens_for_client()
            try:
                result = self._app.acquire_token_for_client([self.options.scope])
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise TransientError(f"outlook: token endpoint unreachable: {str(exc).splitlines()[0]}") from exc
            if "access_token" not in result:
                raise _token_failure(result, "the app")
            return str(result["access_token"])
        return self._user_token(owner, renew=renew)

    def _user_token(self, owner: str, *, renew: bool) -> str:
        with self._lock:
            lock = self._user_locks.setdefault(owner, threading.Lock())
        with lock:
            cached = self._user_tokens.get(owner)
            if cached is not None and not renew and cached[1] > time.monotonic() + 60:
                return cached[0]
            stored = self.refresh_tokens.refresh_token(self.options.account, owner) if self.refresh_tokens else None
            if not stored:
                raise AuthError(f"outlook: no refresh token stored for {owner}; add one with "
                                f"`syncd credentials set {self.options.account} {owner}`")
            try:
                result = self._app.acquire_token_by_refresh_token(stored, list(DELEGATED_SCOPES))
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise TransientError(f"outlook: token endpoint unreachable: {str(exc).splitlines()[0]}") from exc
            if "access_token" not in result:
                self._user_tokens.pop(owner, None)
                raise _token_failure(result, owner)
            if result.get("refresh_token") and result["refresh_token"] != stored and self.refresh_tokens:
                # Entra ID rotates refresh tokens: keep the new one, or the next sign-in fails.
                self.refresh_tokens.replace_refresh_token(self.options.account, owner, str(result["refresh_token"]))
            token = str(result["access_token"])
            self._user_tokens[owner] = (token, time.monotonic() + float(result.get("expires_in") or 3600))
            return token

    def _call(self, method: str, url: str, *, owner: str | None = None, params: Mapping[str, str] | None = None,
              json_body: Any = None, headers: Mapping[str, str] | None = None, what: str) -> _Answer:
        """One Graph request: the mailbox's concurrency gate, a token, one retry with a fresh
        token after a 401, and errors translated."""
        target = url if url.startswith(("https://", "http://")) else f"{self.graph}{url}"
        gate = self._mailbox(owner) if owner else None
        for attempt in range(2):
            token = self._token(owner, renew=attempt > 0)
            sent = {"Authorization": f"Bearer {token}", **(headers or {})}
            if gate is not None:
                gate.acquire()
            try:
                response = self._send(method, target, params, json_body, sent)
            except _NETWORK_ERRORS as exc:
                raise TransientError(f"outlook: {what}: {type(exc).__name__}; will retry") from exc
            finally:
                if gate is not None:
                    gate.release()
            body: Any = None
            try:
                raw = read_body(response, f"outlook: {what}")
            except (*_NETWORK_ERRORS, requests.exceptions.ChunkedEncodingError) as exc:
                raise TransientError(f"outlook: {what}: the answer was cut off; will retry") from exc
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                    if response.ok:
                        raise TransientError(f"outlook: {what}: the answer is not JSON; will retry") from None
            if response.status_code == 401 and attempt == 0:
                continue
            if response.ok:
                return _Answer(response.status_code, body if body is not None else {}, response.headers)
            raise translate(response.status_code, body, response.headers, what)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, params: Mapping[str, str] | None, json_body: Any,
              headers: Mapping[str, str]) -> requests.Response:
        """One HTTP request; once more on a new connection if a kept-alive one was closed by the
        server meanwhile. Replays are safe: a POST carries its transactionId, PATCH and DELETE
        an etag, and the rest only read."""
        for attempt in range(2):
            try:
                return self._session().request(method, url, params=params, json=json_body, headers=headers, stream=True,
                                               timeout=self.options.timeout)
            except requests.ConnectionError as exc:
                if attempt or isinstance(exc, requests.ConnectTimeout) or not stale_connection(exc):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._close_pool()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

