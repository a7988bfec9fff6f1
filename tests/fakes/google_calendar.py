"""A local fake of the Google Calendar API v3 (plus its OAuth2 token endpoint).

Written from Google's public documentation so that the *real* client stack
(``googleapiclient`` + ``google-auth`` + ``httplib2``) can talk to it over HTTP on
127.0.0.1.  Point the client at it with::

    build("calendar", "v3", credentials=creds, static_discovery=True,
          client_options={"api_endpoint": fake.api_endpoint})

and give the credentials ``token_uri=fake.token_uri``.

Modelled (see the docs for events.list/insert/get/patch/update/delete/watch,
channels.stop, batch requests, recurring events, push notifications, and the
"Handle API errors" guide):

* per (user, calendar) event stores; ``primary`` means the token's user;
* events.list with paging, sync tokens (410 ``fullSyncRequired`` when expired),
  ``showDeleted``, ``eventTypes``, ``privateExtendedProperty``, ``q``, ``iCalUID``,
  ``timeMin``/``timeMax``/``updatedMin``, ``orderBy=updated``;
* insert with client ids (base32hex, 5-1024 chars), 409 ``duplicate``; a client
  ``iCalUID`` is kept on insert; out-of-office events must be timed (not all-day);
* get/patch/update/delete with ``If-Match`` (412 ``conditionNotMet``), 410
  ``deleted`` for deleted events, 404 ``notFound``;
* recurring events as Google stores them: a master with ``recurrence``
  (RRULE/RDATE/EXDATE, timed series need ``timeZone``) and exceptions.  An instance
  id is ``{masterId}_{YYYYMMDDTHHMMSSZ}`` (original start in UTC) or
  ``{masterId}_{YYYYMMDD}`` (all-day); get/patch/update/delete on an occurrence of
  the master (checked with dateutil; rules dateutil cannot check accept any
  instant) works before any exception exists: it reads as a copy of the master
  with ``recurringEventId``/``originalStartTime`` and the master's etag, and a
  write stores the exception (delete stores a ``cancelled`` one); instances of a
  deleted master are 410 ``deleted``, non-occurrences 404.  Full listings
  (``singleEvents=false``) include cancelled exceptions even without
  ``showDeleted``, as the docs say; they read as tombstones (id,
  ``recurringEventId``, ``originalStartTime``);
* events.watch / channels.stop (recorded in ``channels``) and push notifications:
  a ``sync`` message when a channel is made, then an ``exists`` message to every
  live channel of a calendar on each insert/patch/update/delete (API or hook),
  POSTed from a background thread with the ``X-Goog-*`` headers and recorded in
  ``notifications`` (``wait_notifications`` waits for them; ``expire_channel``
  ends a channel; bulk ``add_events`` sends one message per calendar);
* ``multipart/mixed`` batch at ``/batch/calendar/v3`` (max 1000 parts; each part is its own request for quota);
* ``/token`` for the JWT-bearer (service account, ``sub`` = impersonated user)
  and ``refresh_token`` grants;
* injected faults on API and batch requests (never /token): ``fail_next``,
  ``slow_next``, ``drop_next`` (connection closed without a response), and a
  global ``latency``;
* a control namespace ``POST /_fake/<command>`` (JSON object in and out; no
  auth, latency or faults; not counted in ``requests``) so a fake in another
  process can be driven: ``add_refresh_token``, ``issue_access_token``,
  ``add_calendar``, ``add_event``, ``add_events`` (``{"items": [[user, calendar,
  body], ...]}``), ``edit_event``, ``delete_event``, ``events``,
  ``expire_sync_tokens``, ``set_latency``, ``fail_next``, ``slow_next``,
  ``drop_next``, ``request_counts``, ``reset_counts``, ``notifications``; and
  ``python -m tests.fakes.google_calendar --port 0 --latency 0.05``, which
  prints ``READY <base_url>`` once serving and stops on SIGTERM/SIGINT (see
  ``serve_in_subprocess`` and ``call_control``).

Not modelled: recurrence expansion (``singleEvents=true`` over a recurring event
is rejected with 400 ``notImplementedInFake``; events.instances is absent),
changes to a master (its times, rule or deletion) reaching its exceptions,
attendees/invitations, colours, ``sharedExtendedProperty``, notification
coalescing and retries, HTTPS for notification addresses (only plain
``http://`` loopback addresses get deliveries; others are recorded as
undeliverable), watch channels on anything but events, quotas other than those
injected by ``fail_next``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import email.message
import email.parser
import email.policy
import email.utils
import http.client
import itertools
import json
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr

from tests.fakes.http_support import (
    CONTROL_PREFIX,
    BackgroundServer,
    Courier,
    FakeRequestHandler,
    Fault,
    FaultQueues,
    LoopbackServer,
    RequestRecord,
    Response,
    call_control,
    count_requests,
    handler_for,
    json_object,
    ready_subprocess,
    reason_phrase,
    serve_until_signalled,
)
from tests.fakes.http_support import ControlError as ControlError  # re-exported: raised by call_control
from tests.known_secrets import register

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_BATCH_PARTS = 1000  # "You're limited to 1000 calls in a single batch request" (Calendar batch guide)
_CLIENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
# an occurrence of a recurring event: master id (base32hex, so no "_"), then the original start
_INSTANCE_ID_RE = re.compile(r"^(?P<master>[^_]+)_(?P<stamp>\d{8}(?:T\d{6}Z)?)$")
_RECURRENCE_PREFIXES = ("RRULE:", "EXRULE:", "RDATE", "EXDATE")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NOTIFICATION_TIMEOUT = 5.0  # seconds the delivery thread waits on a receiver
_SYNC_INCOMPATIBLE = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
_REASON_DOMAIN = {
    "rateLimitExceeded": "usageLimits",
    "userRateLimitExceeded": "usageLimits",
    "quotaExceeded": "usageLimits",
    "dailyLimitExceeded": "usageLimits",
    "timeRangeEmpty": "calendar",
    "eventTypeRestriction": "calendar",
    "fullSyncRequired": "calendar",
}


class ApiError(Exception):
    """An error answered in Google's JSON error format."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain or _REASON_DOMAIN.get(reason, "global")
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        err = {"domain": self.domain, "reason": self.reason, "message": self.message, **self.extra}
        return {"error": {"errors": [err], "code": self.status, "message": self.message}}


@dataclass
class NotificationRecord:
    """One push notification the fake tried to deliver to a channel's address."""

    channel_id: str
    resource_state: str  # "sync" or "exists"
    message_number: int
    status: int | None  # the receiver's HTTP status, None when it was not reached
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Delivery:
    address: str
    channel_id: str
    resource_state: str
    message_number: int
    headers: dict[str, str]


class _Response(Response):
    json_content_type = "application/json; charset=UTF-8"


@dataclass
class _Calendar:
    owner: str
    calendar_id: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    min_sync_seq: int = 0  # sync tokens below this sequence are expired


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def _parse_time(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _point_time(point: dict[str, Any]) -> datetime:
    """An event's dateTime; without an offset it is read in the point's timeZone (as Google does)."""
    dt = datetime.fromisoformat(str(point["dateTime"]).replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone(point) or UTC)
    return dt


def _edge(point: dict[str, Any] | None) -> datetime | None:
    if not point:
        return None
    if "dateTime" in point:
        return _point_time(point)
    if "date" in point:
        return datetime.fromisoformat(point["date"]).replace(tzinfo=UTC)
    return None


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: objects merge recursively, arrays and scalars replace, null clears."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _zone(point: dict[str, Any]) -> ZoneInfo | None:
    name = point.get("timeZone")
    return ZoneInfo(name) if name else None


def _is_occurrence(recurrence: list[str], dtstart: datetime, candidate: datetime) -> bool:
    """Whether ``candidate`` is an occurrence of the series (RFC 5545: DTSTART always is one).

    Rules that dateutil cannot evaluate (e.g. a floating UNTIL on a zoned series,
    or mixed naive/aware EXDATEs) accept any instant, as the fake's contract says.
    """
    try:
        rules = rrulestr("\n".join(recurrence), dtstart=dtstart, forceset=True, unfold=True)
        rules.rdate(dtstart)
        hit = rules.after(candidate, inc=True)
    except (ValueError, TypeError, OverflowError):
        return True
    return bool(hit == candidate)


def _occurrence(master: dict[str, Any], stamp: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (start, end) of the occurrence of ``master`` named by an instance-id suffix, if real."""
    start, end = master["start"], master["end"]
    if "date" in start:
        if len(stamp) != 8:
            return None
        try:
            day = date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
        except ValueError:
            return None
        first = date.fromisoformat(start["date"])
        # all-day series recur on floating dates (RFC 5545 DATE values), so naive on purpose
        floating_first = datetime(first.year, first.month, first.day)  # noqa: DTZ001
        floating_day = datetime(day.year, day.month, day.day)  # noqa: DTZ001
        if not _is_occurrence(master["recurrence"], floating_first, floating_day):
            return None
        length = date.fromisoformat(end["date"]) - first
        return {"date": day.isoformat()}, {"date": (day + length).isoformat()}
    if len(stamp) == 8:
        return None
    try:
        instant = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    zone = _zone(start)
    dtstart = _point_time(start)
    local_zone = zone or dtstart.tzinfo or UTC
    if not _is_occurrence(master["recurrence"], dtstart.astimezone(local_zone), instant):
        return None
    duration: timedelta = _point_time(end) - dtstart
    end_zone = _zone(end) or local_zone
    new_start: dict[str, Any] = {"dateTime": _rfc3339(instant.astimezone(local_zone))}
    new_end: dict[str, Any] = {"dateTime": _rfc3339((instant + duration).astimezone(end_zone))}
    if "timeZone" in start:
        new_start["timeZone"] = start["timeZone"]
    if "timeZone" in end:
        new_end["timeZone"] = end["timeZone"]
    return new_start, new_end


def _post_notification(delivery: _Delivery, timeout: float) -> tuple[int | None, str | None]:
    """POST one notification; only plain-HTTP loopback receivers are ever contacted."""
    target = urlsplit(delivery.address)
    if target.scheme != "http" or target.hostname not in _LOOPBACK_HOSTS:
        return None, f"undeliverable: the fake only posts to http:// loopback addresses, not {delivery.address!r}"
    conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)
    try:
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        conn.request("POST", path, body=b"", headers={**delivery.headers, "Content-Length": "0"})
        response = conn.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class _Endpoints:
    """The URLs a client is configured with, derived from the fake's ``base_url``."""

    base_url: str

    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}/calendar/v3/"

    @property
    def batch_uri(self) -> str:
        return f"{self.base_url}/batch/calendar/v3"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"


class FakeGoogleCalendar(_Endpoints):
    """Google Calendar v3 over HTTP on 127.0.0.1, with hooks for tests."""

    #: fields that clients may not set/alter
    _READ_ONLY = ("kind", "etag", "created", "updated", "htmlLink", "iCalUID", "creator", "organizer")

    def __init__(self, *, latency: float = 0.0, token_lifetime: int = 3600) -> None:
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.batch_limit = MAX_BATCH_PARTS
        # Google's docs do not promise that eventTypes may be combined with syncToken; a test
        # sets this to see the client cope when it is refused.
        self.refuse_event_types_with_sync_token = False
        self.requests: list[RequestRecord] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._calendars: dict[tuple[str, str], _Calendar] = {}
        self._access_tokens: dict[str, str] = {}  # token -> user
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._revoked_refresh: set[str] = set()
        self._denied_subjects: set[str] = set()
        self._faults = FaultQueues()  # API requests only, never /token
        self.notification_timeout = NOTIFICATION_TIMEOUT
        self._courier: Courier[_Delivery, NotificationRecord] = Courier(self._deliver, "fake-google-push")
        self.notifications = self._courier.records
        self._closing = threading.Event()  # set by stop(): wakes injected sleeps, skips deliveries
        self._serving: BackgroundServer | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int = 0) -> FakeGoogleCalendar:
        self._closing.clear()
        self._serving = BackgroundServer(LoopbackServer(port, handler_for(_Handler, self)), "fake-google-calendar")
        self.base_url = f"http://127.0.0.1:{self._serving.port}"
        self._courier.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self._courier.stop(timeout=self.notification_timeout + 1)

    def __enter__(self) -> FakeGoogleCalendar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test hooks: auth
    def add_refresh_token(self, refresh_token: str, user: str) -> None:
        """Register a refresh token (as issued by an OAuth consent) for ``user``."""
        with self._lock:
            self._refresh_tokens[refresh_token] = user
            self._revoked_refresh.discard(refresh_token)

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            self._revoked_refresh.add(refresh_token)
            for token, user in list(self._access_tokens.items()):
                if user == self._refresh_tokens.get(refresh_token):
                    del self._access_tokens[token]

    def deny_subject(self, user: str) -> None:
        """Service-account impersonation of ``user`` now fails with ``invalid_grant``."""
        with self._lock:
            self._denied_subjects.add(user)

    def invalidate_access_tokens(self, user: str | None = None) -> None:
        """Forget issued access tokens (all, or a user's): the next API call gets 401."""
        with self._lock:
            for token, owner in list(self._access_tokens.items()):
                if user is None or owner == user:
                    del self._access_tokens[token]

    def issue_access_token(self, user: str) -> str:
        with self._lock:
            token = "ya29.fake-" + secrets.token_urlsafe(16)
            self._access_tokens[token] = user
            register(token)
            return token

    # ------------------------------------------------------------------ test hooks: faults/log
    def fail_next(self, n: int, status: int, reason: str, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """The next ``n`` HTTP requests to the API (not /token) fail with ``status``/``reason``."""
        self._faults.add_failures(n, status, reason, message or reason, retry_after)

    def fault_rate(self, rate: float, seed: int = 0) -> None:
        """A share ``rate`` of API requests fail at random from now on: 429 and 403 rate limits
        (with Retry-After), 500, 503, or a dropped connection. ``0`` stops it."""
        self._faults.set_random(rate, (
            Fault(status=429, code="rateLimitExceeded", message="Rate Limit Exceeded", retry_after=1),
            Fault(status=403, code="userRateLimitExceeded", message="User Rate Limit Exceeded", retry_after=1),
            Fault(status=500, code="backendError", message="Backend Error"),
            Fault(status=503, code="backendError", message="Backend Error"),
        ), seed=seed)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next ``n`` HTTP requests to the API (not /token) wait ``seconds`` before being handled."""
        self._faults.add_delays(n, seconds)

    def drop_next(self, n: int) -> None:
        """The next ``n`` HTTP requests to the API (not /token) get no response: the connection is closed.

        A dropped request does not use up a pending ``fail_next`` fault.
        """
        self._faults.add_drops(n)

    def set_latency(self, seconds: float) -> None:
        """Every API and /token request waits ``seconds`` (the /_fake/ control calls never do)."""
        self.latency = seconds

    def request_count(self, method: str | None = None, path_contains: str = "", *,
                      include_batch_parts: bool = False) -> int:
        with self._lock:
            return count_requests(self.requests, method, path_contains, include_batch_parts=include_batch_parts)

    def request_counts(self) -> dict[str, int]:
        """Top-level API requests (a batch counts once, dropped ones too), batch parts, and /token calls."""
        with self._lock:
            parts = sum(1 for r in self.requests if r.in_batch)
            return {"requests": len(self.requests) - parts, "batch_parts": parts, "token": len(self.token_requests)}

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()

    # ------------------------------------------------------------------ test hooks: push notifications
    def expire_channel(self, channel_id: str) -> None:
        """The channel's expiration time is now: it gets no more notifications."""
        with self._lock:
            self.channels[channel_id]["expiration"] = str(int(time.time() * 1000) - 1)

    def wait_notifications(self, n: int, timeout: float = 5.0) -> list[NotificationRecord]:
        """Wait until at least ``n`` deliveries were attempted; a copy of ``notifications``."""
        return self._courier.wait_for(n, timeout)

    # ------------------------------------------------------------------ test hooks: the human editing
    def add_calendar(self, user: str, calendar_id: str) -> None:
        with self._lock:
            self._calendar(user, calendar_id, create=True)

    def add_event(self, user: str, calendar: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return self._insert(cal, copy.deepcopy(body))

    def add_events(self, items: list[tuple[str, str, dict[str, Any]]] | list[list[Any]]) -> list[str]:
        """Bulk seeding: ``[(user, calendar, body), ...]``; one ``exists`` notification per calendar."""
        with self._lock:
            ids: list[str] = []
            touched: dict[tuple[str, str], _Calendar] = {}
            try:
                for user, calendar, body in items:
                    cal = self._calendar(user, calendar, create=True)
                    touched[(cal.owner, cal.calendar_id)] = cal
                    ids.append(self._insert(cal, copy.deepcopy(body), notify=False)["id"])
            finally:  # a bad item stops the seeding; what went in before it is still announced
                for cal in touched.values():
                    self._notify_change(cal)
            return ids

    def edit_event(self, user: str, calendar: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return self._patch(cal, event_id, copy.deepcopy(changes), if_match=None, replace=False)

    def delete_event(self, user: str, calendar: str, event_id: str) -> None:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            self._delete(cal, event_id, if_match=None)

    def expire_sync_tokens(self, user: str, calendar: str) -> None:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            cal.min_sync_seq = self._seq + 1

    def events(self, user: str, calendar: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """A snapshot of the stored events (public fields only)."""
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return [
                self._public(e)
                for e in cal.events.values()
                if include_deleted or e["status"] != "cancelled"
            ]

    # ------------------------------------------------------------------ state helpers
    def _calendar(self, user: str, calendar_id: str, *, create: bool) -> _Calendar:
        cid = user if calendar_id == "primary" else calendar_id
        key = (user, cid)
        cal = self._calendars.get(key)
        if cal is None:
            if not create and cid != user:
                raise ApiError(404, "notFound", "Not Found")
            cal = self._calendars[key] = _Calendar(owner=user, calendar_id=cid)
        return cal

    def _bump(self, event: dict[str, Any]) -> None:
        self._seq += 1
        event["_seq"] = self._seq
        event["etag"] = f'"{int(time.time() * 1000) * 1000 + self._seq % 1000}"'
        event["updated"] = _now_rfc3339()

    @staticmethod
    def _public(event: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in event.items() if not k.startswith("_")}

    @staticmethod
    def _tombstone(event: dict[str, Any]) -> dict[str, Any]:
        stub = {"kind": "calendar#event", "etag": event["etag"], "id": event["id"], "status": "cancelled"}
        for key in ("recurringEventId", "originalStartTime"):
            if key in event:
                stub[key] = copy.deepcopy(event[key])
        return stub

    @staticmethod
    def _validate(event: dict[str, Any]) -> None:
        for edge in ("start", "end"):
            point = event.get(edge)
            if not isinstance(point, dict) or not ({"date", "dateTime"} & point.keys()):
                raise ApiError(400, "required", f"Missing {edge} time.")
            try:
                _edge(point)
            except ValueError as exc:
                raise ApiError(400, "invalid", f"Invalid {edge} time.") from exc
            try:
                _zone(point)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ApiError(400, "invalid", f"Invalid time zone definition for {edge} time.") from exc
        start, end = _edge(event["start"]), _edge(event["end"])
        if start and end and end < start:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.",
                           locationType="parameter", location="end.dateTime")
        if event.get("eventType") == "outOfOffice":
            if "date" in event["start"] or "date" in event["end"]:
                raise ApiError(400, "invalid", "An out of office event cannot be an all-day event.")
        if event.get("status", "confirmed") not in ("confirmed", "tentative", "cancelled"):
            raise ApiError(400, "invalid", "Invalid value for: status")
        recurrence = event.get("recurrence")
        if recurrence is not None:
            if "recurringEventId" in event:
                raise ApiError(400, "invalid", "An instance of a recurring event cannot have a recurrence.")
            if not isinstance(recurrence, list) or not all(
                isinstance(line, str) and line.upper().startswith(_RECURRENCE_PREFIXES) for line in recurrence
            ):
                raise ApiError(400, "invalid", "Invalid recurrence rule.")
            # EventDateTime.timeZone: "For recurring events this field is required"
            for edge in ("start", "end"):
                if "dateTime" in event[edge] and not event[edge].get("timeZone"):
                    raise ApiError(400, "required", f"Missing time zone definition for {edge} time.")

    def _insert(self, cal: _Calendar, body: dict[str, Any], *, notify: bool = True) -> dict[str, Any]:
        event_id = body.get("id")
        if event_id is None:
            event_id = uuid.uuid4().hex  # hex digits are a subset of base32hex
        elif not isinstance(event_id, str) or not _CLIENT_ID_RE.match(event_id):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in cal.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        # "only one of [iCalUID and id] should be supplied at event creation time": a given iCalUID is kept
        ical_uid = body.get("iCalUID")
        for key in self._READ_ONLY:
            body.pop(key, None)
        for key in ("recurringEventId", "originalStartTime"):
            body.pop(key, None)
        body.setdefault("eventType", "default")
        body.setdefault("status", "confirmed")
        if body["eventType"] == "outOfOffice":
            body.setdefault("transparency", "opaque")
            body.setdefault("outOfOfficeProperties", {})
        self._validate(body)
        event = {
            "kind": "calendar#event",
            "id": event_id,
            "iCalUID": ical_uid if isinstance(ical_uid, str) and ical_uid else f"{event_id}@google.com",
            "created": _now_rfc3339(),
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            "creator": {"email": cal.owner, "self": True},
            "organizer": {"email": cal.calendar_id, "self": True},
            "sequence": 0,
            **body,
        }
        event["id"] = event_id
        event["_order"] = next(_ORDER)
        self._bump(event)
        cal.events[event_id] = event
        if notify:
            self._notify_change(cal)
        return self._public(event)

    def _find(self, cal: _Calendar, event_id: str) -> dict[str, Any] | None:
        """A stored event, or the unstored instance of a recurring master that ``event_id`` names."""
        event = cal.events.get(event_id)
        if event is not None:
            return event
        match = _INSTANCE_ID_RE.match(event_id)
        master = cal.events.get(match["master"]) if match else None
        if match is None or master is None or not master.get("recurrence"):
            return None
        occurrence = _occurrence(master, match["stamp"])
        if occurrence is None:
            return None
        instance = copy.deepcopy(master)  # same etag, iCalUID, sequence and status as the master
        del instance["recurrence"]
        instance["id"] = event_id
        instance["htmlLink"] = f"https://www.google.com/calendar/event?eid={event_id}"
        instance["recurringEventId"] = master["id"]
        instance["start"], instance["end"] = occurrence
        instance["originalStartTime"] = copy.deepcopy(occurrence[0])
        instance["_order"] = None  # not stored yet
        return instance

    def _live(self, cal: _Calendar, event_id: str, if_match: str | None) -> dict[str, Any]:
        event = self._find(cal, event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        if event["status"] == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        if if_match is not None and if_match != "*" and if_match.removeprefix("W/") != event["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed",
                           locationType="header", location="If-Match")
        return event

    def _store(self, cal: _Calendar, event: dict[str, Any]) -> None:
        if event.get("_order") is None:  # an instance becoming an exception
            event["_order"] = next(_ORDER)
        self._bump(event)
        cal.events[event["id"]] = event
        self._notify_change(cal)

    def _patch(self, cal: _Calendar, event_id: str, body: dict[str, Any], *, if_match: str | None,
               replace: bool) -> dict[str, Any]:
        event = self._live(cal, event_id, if_match)
        if "id" in body and body["id"] != event_id:
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if "eventType" in body and body["eventType"] != event["eventType"]:
            raise ApiError(400, "eventTypeRestriction", "The event type cannot be changed.")
        for key in (*self._READ_ONLY, "recurringEventId", "originalStartTime"):
            body.pop(key, None)
        candidate = copy.deepcopy(event)
        if replace:
            kept = (*self._READ_ONLY, "id", "eventType", "_order", "_seq", "sequence", "recurringEventId",
                    "originalStartTime")
            keep = {k: candidate[k] for k in kept if k in candidate}
            candidate = {**keep, "status": "confirmed", **{k: v for k, v in body.items() if v is not None}}
        else:
            _merge(candidate, body)
        self._validate(candidate)
        candidate["sequence"] = int(candidate.get("sequence", 0)) + 1
        self._store(cal, candidate)
        return self._public(candidate)

    def _delete(self, cal: _Calendar, event_id: str, *, if_match: str | None) -> None:
        event = self._live(cal, event_id, if_match)
        event["status"] = "cancelled"
        self._store(cal, event)

    # ------------------------------------------------------------------ push notifications
    @staticmethod
    def _channel_live(channel: dict[str, Any], now_ms: int) -> bool:
        return not channel["stopped"] and int(channel["expiration"]) > now_ms

    def _notify(self, channel: dict[str, Any], state: str) -> None:
        """Queue one message for ``channel`` (caller holds the lock; delivery happens on the courier thread)."""
        channel["messageNumber"] += 1
        headers = {
            "X-Goog-Channel-ID": channel["id"],
            "X-Goog-Channel-Expiration": email.utils.formatdate(int(channel["expiration"]) / 1000, usegmt=True),
            "X-Goog-Resource-ID": channel["resourceId"],
            "X-Goog-Resource-URI": channel["resourceUri"],
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(channel["messageNumber"]),
        }
        if "token" in channel:
            headers["X-Goog-Channel-Token"] = channel["token"]
        self._courier.put(_Delivery(channel["address"], channel["id"], state, channel["messageNumber"], headers))

    def _notify_change(self, cal: _Calendar) -> None:
        now_ms = int(time.time() * 1000)
        for channel in self.channels.values():
            if (channel["user"], channel["calendarId"]) == (cal.owner, cal.calendar_id) and self._channel_live(
                channel, now_ms
            ):
                self._notify(channel, "exists")

    def _deliver(self, delivery: _Delivery) -> NotificationRecord:
        """Runs on the courier thread; a stopping fake records what it no longer sends."""
        status: int | None
        error: str | None
        if self._closing.is_set():
            status, error = None, "not delivered: the fake was stopping"
        else:
            status, error = _post_notification(delivery, self.notification_timeout)
        return NotificationRecord(delivery.channel_id, delivery.resource_state, delivery.message_number,
                                  status, error, dict(delivery.headers))

    # ------------------------------------------------------------------ events.list
    def _list(self, user: str, cal: _Calendar, query: dict[str, list[str]]) -> dict[str, Any]:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        def flag(name: str, default: bool = False) -> bool:
            value = one(name)
            return default if value is None else value.lower() == "true"

        max_results = int(one("maxResults") or 250)
        if not 1 <= max_results:
            raise ApiError(400, "invalid", "Invalid value for: maxResults")
        max_results = min(max_results, 2500)
        sync_token = one("syncToken")
        page_token = one("pageToken")
        show_deleted = flag("showDeleted")
        event_types = set(query.get("eventTypes", []))

        if sync_token is not None:
            bad = [name for name in _SYNC_INCOMPATIBLE if name in query]
            if self.refuse_event_types_with_sync_token and "eventTypes" in query:
                bad.append("eventTypes")
            if bad:
                raise ApiError(400, "invalid", f"Parameter {bad[0]} cannot be used with syncToken.",
                               locationType="parameter", location=bad[0])
            try:
                data = _unb64(sync_token)
                since = int(data["s"])
                valid = data["u"] == user and data["c"] == cal.calendar_id and since >= cal.min_sync_seq
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise ApiError(410, "fullSyncRequired", "Sync token is no longer valid, a full sync is required.")
        else:
            since = None

        if page_token is not None:
            try:
                page = _unb64(page_token)
                offset, snapshot = int(page["o"]), int(page["s"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError(400, "invalid", "Invalid page token value.") from exc
        else:
            offset, snapshot = 0, self._seq

        single_events = flag("singleEvents")
        ical_uid = one("iCalUID")

        def keep(event: dict[str, Any]) -> bool:
            cancelled = event["status"] == "cancelled"
            if since is not None:
                if event["_seq"] <= since:
                    return False
                return cancelled or not event_types or event["eventType"] in event_types
            # "Cancelled instances of recurring events (but not the underlying recurring event) will still
            # be included if showDeleted and singleEvents are both False."
            if cancelled and not show_deleted and (single_events or "recurringEventId" not in event):
                return False
            if ical_uid is not None and event.get("iCalUID") != ical_uid:
                return False
            if event_types and event["eventType"] not in event_types:
                return False
            for constraint in query.get("privateExtendedProperty", []):
                key, _, value = constraint.partition("=")
                if event.get("extendedProperties", {}).get("private", {}).get(key) != value:
                    return False
            if (q := one("q")) is not None:
                text = " ".join(str(event.get(k, "")) for k in ("summary", "description", "location")).lower()
                if not all(term in text for term in q.lower().split()):
                    return False
            if (time_min := one("timeMin")) is not None:
                end = _edge(event.get("end"))
                if end is not None and end <= _parse_time(time_min):
                    return False
            if (time_max := one("timeMax")) is not None:
                start = _edge(event.get("start"))
                if start is not None and start >= _parse_time(time_max):
                    return False
            if (updated_min := one("updatedMin")) is not None:
                if _parse_time(event["updated"]) < _parse_time(updated_min):
                    return False
            return True

        matching = [e for e in cal.events.values() if keep(e)]
        if single_events and any(e.get("recurrence") for e in matching):
            raise ApiError(400, "notImplementedInFake", "The fake does not expand recurring events.")
        order_by = one("orderBy")
        if order_by == "startTime" and not single_events:
            raise ApiError(400, "invalid", "The requested ordering is not available for the particular query.")
        if order_by == "updated":
            matching.sort(key=lambda e: e["_seq"])
        elif order_by == "startTime":
            matching.sort(key=lambda e: _edge(e.get("start")) or datetime.min.replace(tzinfo=UTC))
        else:
            matching.sort(key=lambda e: e["_order"])

        window = matching[offset: offset + max_results]
        # of a cancelled exception "only the fields id, recurringEventId and originalStartTime are guaranteed"
        items = [
            self._tombstone(e)
            if e["status"] == "cancelled" and (since is not None or "recurringEventId" in e)
            else self._public(e)
            for e in window
        ]
        result: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{snapshot}"',
            "summary": cal.calendar_id,
            "updated": _now_rfc3339(),
            "timeZone": "UTC",
            "accessRole": "owner",
            "defaultReminders": [],
            "items": items,
        }
        if offset + max_results < len(matching):
            result["nextPageToken"] = _b64({"o": offset + max_results, "s": snapshot})
        else:
            result["nextSyncToken"] = _b64({"u": user, "c": cal.calendar_id, "s": snapshot, "n": secrets.token_hex(4)})
        return result

    # ------------------------------------------------------------------ HTTP dispatch
    def _authenticate(self, headers: Any) -> str:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        user = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "authError", "Invalid Credentials", locationType="header", location="Authorization",
                           headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return user

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes, *, in_batch: bool) -> _Response:
        """One Calendar API call (top-level or a batch part)."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        user: str | None = None
        try:
            if not path.startswith("/calendar/v3/"):
                raise ApiError(404, "notFound", "Not Found")
            with self._lock:
                user = self._authenticate(headers)
                response = self._route(user, method, path.removeprefix("/calendar/v3/"), query, headers, body)
        except ApiError as err:
            response = _Response(err.status, err.body(), dict(err.headers))
        with self._lock:
            self.requests.append(RequestRecord(method, path, user, response.status, in_batch))
        return response

    def _route(self, user: str, method: str, rest: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> _Response:
        segments = [unquote(s) for s in rest.split("/")]
        if_match = headers.get("If-Match")

        def payload() -> dict[str, Any]:
            try:
                return json_object(body)
            except ValueError as exc:
                raise ApiError(400, "parseError", "Parse Error") from exc

        if segments == ["channels", "stop"] and method == "POST":
            data = payload()
            channel = self.channels.get(data.get("id", ""))
            if channel is None or channel["resourceId"] != data.get("resourceId") or channel["user"] != user:
                raise ApiError(404, "notFound", f"Channel '{data.get('id')}' not found for project")
            channel["stopped"] = True
            return _Response(204)
        if len(segments) < 3 or segments[0] != "calendars" or segments[2] != "events":
            raise ApiError(404, "notFound", "Not Found")
        cal = self._calendar(user, segments[1], create=False)
        if len(segments) == 3:
            if method == "GET":
                return _Response(200, self._list(user, cal, query))
            if method == "POST":
                return _Response(200, self._insert(cal, payload()))
        elif len(segments) == 4 and segments[3] == "watch" and method == "POST":
            data = payload()
            if not data.get("id") or not data.get("address") or data.get("type") not in ("web_hook", "webhook"):
                raise ApiError(400, "invalid", "Invalid channel request.")
            if data["id"] in self.channels:
                raise ApiError(400, "channelIdNotUnique", "Channel id not unique")
            try:
                expiration = int(data.get("expiration") or int(time.time() * 1000) + 7 * 86400 * 1000)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, "invalid", "Invalid value for: expiration") from exc
            resource_id = secrets.token_urlsafe(12)
            channel = {
                "kind": "api#channel",
                "id": data["id"],
                "resourceId": resource_id,
                "resourceUri": f"{self.api_endpoint}calendars/{cal.calendar_id}/events?alt=json",
                "expiration": str(expiration),
            }
            if "token" in data:
                channel["token"] = data["token"]
            record = {**channel, "address": data["address"], "user": user, "calendarId": cal.calendar_id,
                      "stopped": False, "messageNumber": 0}
            self.channels[data["id"]] = record
            if self._channel_live(record, int(time.time() * 1000)):
                self._notify(record, "sync")  # "sent when a new channel is created": message number 1
            return _Response(200, channel)
        elif len(segments) == 4:
            event_id = segments[3]
            if method == "GET":
                return _Response(200, self._public(self._live(cal, event_id, None)))
            if method in ("PATCH", "PUT"):
                return _Response(200, self._patch(cal, event_id, payload(), if_match=if_match,
                                                  replace=method == "PUT"))
            if method == "DELETE":
                self._delete(cal, event_id, if_match=if_match)
                return _Response(204)
        raise ApiError(404, "notFound", "Not Found")

    def _take_faults(self, path: str) -> tuple[float, bool, _Response | None]:
        """For one incoming API request: (delay, drop it?, injected error response)."""
        slow = self._faults.take_delay(path)
        delay = slow.seconds if slow else 0.0
        if self._faults.take_drop(path):
            return delay, True, None
        fault = self._faults.take_failure(path)
        if fault is None:
            return delay, False, None
        err = ApiError(fault.status, fault.code, fault.message)
        return delay, False, _Response(fault.status, err.body(), fault.retry_after_headers())

    def _pause(self, seconds: float) -> None:
        """An injected wait that ``stop()`` cuts short, so no handler outlives the fake for long."""
        self._closing.wait(seconds)

    # ------------------------------------------------------------------ control namespace (/_fake/)
    def _control_commands(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "add_refresh_token": lambda a: self.add_refresh_token(a["refresh_token"], a["user"]),
            "issue_access_token": lambda a: {"access_token": self.issue_access_token(a["user"])},
            "add_calendar": lambda a: self.add_calendar(a["user"], a["calendar"]),
            "add_event": lambda a: self.add_event(a["user"], a["calendar"], a["body"]),
            "add_events": lambda a: {"ids": self.add_events(a["items"])},
            "edit_event": lambda a: self.edit_event(a["user"], a["calendar"], a["event_id"], a["changes"]),
            "delete_event": lambda a: self.delete_event(a["user"], a["calendar"], a["event_id"]),
            "events": lambda a: {"items": self.events(a["user"], a["calendar"],
                                                      include_deleted=bool(a.get("include_deleted")))},
            "expire_sync_tokens": lambda a: self.expire_sync_tokens(a["user"], a["calendar"]),
            "set_latency": lambda a: self.set_latency(float(a["seconds"])),
            "fail_next": lambda a: self.fail_next(
                int(a["n"]), int(a["status"]), str(a["reason"]),
                None if a.get("retry_after") is None else float(a["retry_after"]),
            ),
            "slow_next": lambda a: self.slow_next(int(a["n"]), float(a["seconds"])),
            "drop_next": lambda a: self.drop_next(int(a["n"])),
            "request_counts": lambda a: self.request_counts(),
            "reset_counts": lambda a: self.reset_counts(),
            "notifications": lambda a: {"items": [asdict(n) for n in self.notifications]},
        }

    def _control(self, method: str, command: str, body: bytes) -> _Response:
        """``POST /_fake/<command>`` with a JSON object of arguments; answers the hook's result as JSON."""
        handler = self._control_commands().get(command)
        if handler is None:
            return _Response(404, {"error": f"unknown control command {command!r}"})
        if method != "POST":
            return _Response(405, {"error": "control commands are POST"}, {"Allow": "POST"})
        try:
            result = handler(json_object(body))
        except ApiError as err:
            return _Response(err.status, err.body())
        except (KeyError, TypeError, ValueError) as exc:
            return _Response(400, {"error": f"bad arguments for {command}: {exc!r}"})
        return _Response(200, {} if result is None else result)

    # ------------------------------------------------------------------ batch
    def _batch(self, headers: Any, body: bytes) -> _Response:
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/mixed"):
            raise ApiError(400, "badContent", "Batch requests must be multipart/mixed.")
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise ApiError(400, "badContent", "Malformed multipart body.")
        parts = [p for p in message.get_payload() if isinstance(p, email.message.Message)]
        if len(parts) > self.batch_limit:
            raise ApiError(400, "limitExceeded", f"A batch may contain at most {self.batch_limit} calls.")
        boundary = "batch_" + secrets.token_hex(12)
        chunks: list[bytes] = []
        for part in parts:
            content_id = (part.get("Content-ID") or "").strip()
            raw = part.get_payload(decode=False)
            raw = raw if isinstance(raw, str) else str(raw)
            request_line, _, rest = raw.replace("\r\n", "\n").partition("\n")
            method, target, _version = request_line.split(" ", 2)
            inner = email.parser.Parser(policy=email.policy.compat32).parsestr(rest)
            inner_headers = {k: v for k, v in inner.items()}
            lowered = {k.lower() for k in inner_headers}
            if "authorization" not in lowered and headers.get("Authorization"):
                inner_headers["Authorization"] = headers["Authorization"]
            hdrs = _CaseInsensitive(inner_headers)
            inner_body = inner.get_payload()
            inner_bytes = inner_body.encode() if isinstance(inner_body, str) else b""
            result = self._dispatch(method, target, hdrs, inner_bytes, in_batch=True)
            data, resp_headers = result.encode()
            status_line = f"HTTP/1.1 {result.status} {reason_phrase(result.status)}"
            header_lines = "".join(f"{k}: {v}\r\n" for k, v in resp_headers.items())
            response_id = content_id
            if response_id.startswith("<") and response_id.endswith(">"):
                response_id = f"<response-{response_id[1:-1]}>"
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {response_id}\r\n\r\n"
                f"{status_line}\r\n{header_lines}\r\n".encode()
                + data
                + b"\r\n"
            )
        chunks.append(f"--{boundary}--\r\n".encode())
        return _Response(200, b"".join(chunks), {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    # ------------------------------------------------------------------ token endpoint
    def _token(self, body: bytes) -> _Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.token_requests.append(form)
            grant = form.get("grant_type")
            if grant == JWT_BEARER:
                try:
                    _header, payload_b64, _sig = form["assertion"].split(".")
                    claims = _unb64(payload_b64)
                except (KeyError, ValueError):
                    return _oauth_error("invalid_grant", "Invalid JWT assertion.")
                user = claims.get("sub") or claims.get("iss")
                if not user or user in self._denied_subjects:
                    return _oauth_error("invalid_grant", "Not a valid email or user ID.")
                # google-auth always signs aud=https://oauth2.googleapis.com/token, whatever token_uri is
                if claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE):
                    return _oauth_error("invalid_grant", "Invalid JWT: audience does not match token endpoint.")
            elif grant == "refresh_token":
                token = form.get("refresh_token", "")
                user = self._refresh_tokens.get(token)
                if user is None or token in self._revoked_refresh:
                    return _oauth_error("invalid_grant", "Token has been expired or revoked.")
            else:
                return _oauth_error("unsupported_grant_type", "Invalid grant_type: " + str(grant))
            access = self.issue_access_token(user)
        body_out = {"access_token": access, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        if grant == "refresh_token" and form.get("scope"):
            body_out["scope"] = form["scope"]
        return _Response(200, body_out)


_ORDER = itertools.count()


def _oauth_error(error: str, description: str) -> _Response:
    return _Response(400, {"error": error, "error_description": description})


class _CaseInsensitive(dict[str, str]):
    def __init__(self, items: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in items.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class _Handler(FakeRequestHandler):
    server_fake: FakeGoogleCalendar
    timeout = 10

    def respond(self, path: str, body: bytes) -> None:
        fake = self.server_fake
        if path.startswith(CONTROL_PREFIX):
            self.send(fake._control(self.command, path.removeprefix(CONTROL_PREFIX), body))
            return
        if fake.latency:
            fake._pause(fake.latency)
        try:
            if path == "/token" and self.command == "POST":
                response = fake._token(body)
            else:
                delay, drop, fault = fake._take_faults(path)
                if delay:
                    fake._pause(delay)
                if drop:
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, 0))
                    self.close_connection = True  # no status line at all: the client sees the socket close
                    return
                if fault is not None:
                    response = fault
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, fault.status))
                elif path == "/batch/calendar/v3" and self.command == "POST":
                    response = fake._batch(self.headers, body)
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, response.status))
                else:
                    response = fake._dispatch(self.command, self.path, self.headers, body, in_batch=False)
        except ApiError as err:
            response = _Response(err.status, err.body(), dict(err.headers))
        except Exception as exc:  # noqa: BLE001 - a bug in the fake should be a visible 500
            response = _Response(500, ApiError(500, "backendError", f"fake crashed: {exc!r}").body())
        self.send(response)


# ---------------------------------------------------------------------- another process
@dataclass
class RemoteFakeGoogleCalendar(_Endpoints):
    """A fake served by another process (see ``serve_in_subprocess``), driven through ``control``."""

    base_url: str

    def control(self, command: str, **args: Any) -> Any:
        return call_control(self.base_url, command, args)


@contextlib.contextmanager
def serve_in_subprocess(latency: float = 0.0, *, port: int = 0,
                        startup_timeout: float = 30.0) -> Iterator[RemoteFakeGoogleCalendar]:
    """Run ``python -m tests.fakes.google_calendar`` and yield a handle once it printed ``READY <base_url>``.

    The process is terminated (then killed if need be) when the block ends.
    """
    args = ["--port", str(port), "--latency", repr(latency)]
    with ready_subprocess("tests.fakes.google_calendar", args, startup_timeout=startup_timeout) as ready:
        yield RemoteFakeGoogleCalendar(ready[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.google_calendar",
        description="Serve the fake Google Calendar API on 127.0.0.1 until SIGTERM/SIGINT; "
        "prints 'READY <base_url>' once serving. Drive it with POST /_fake/<command>.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every API and /token request waits")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="expires_in of issued access tokens")
    args = parser.parse_args(argv)
    fake = FakeGoogleCalendar(latency=args.latency, token_lifetime=args.token_lifetime)
    return serve_until_signalled(lambda: fake.start(port=args.port), fake.stop, lambda: f"READY {fake.base_url}")


if __name__ == "__main__":
    sys.exit(main())
