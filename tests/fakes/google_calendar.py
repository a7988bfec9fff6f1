"""A local fake of the Google Calendar API v3 (plus its OAuth2 token endpoint).

Written from Google's public documentation so that the *real* client stack
(``googleapiclient`` + ``google-auth`` + ``httplib2``) can talk to it over HTTP on
127.0.0.1.  Point the client at it with::

    build("calendar", "v3", credentials=creds, static_discovery=True,
          client_options={"api_endpoint": fake.api_endpoint})

and give the credentials ``token_uri=fake.token_uri``.

Modelled (see the docs for events.list/insert/get/patch/update/delete/watch,
channels.stop, batch requests, and the "Handle API errors" guide):

* per (user, calendar) event stores; ``primary`` means the token's user;
* events.list with paging, sync tokens (410 ``fullSyncRequired`` when expired),
  ``showDeleted``, ``eventTypes``, ``privateExtendedProperty``, ``q``,
  ``timeMin``/``timeMax``/``updatedMin``, ``orderBy=updated``;
* insert with client ids (base32hex, 5-1024 chars), 409 ``duplicate``;
  out-of-office events must be timed (not all-day);
* get/patch/update/delete with ``If-Match`` (412 ``conditionNotMet``), 410
  ``deleted`` for deleted events, 404 ``notFound``;
* events.watch / channels.stop (recorded in ``channels``);
* ``multipart/mixed`` batch at ``/batch/calendar/v3`` (max 1000 parts; each part is its own request for quota);
* ``/token`` for the JWT-bearer (service account, ``sub`` = impersonated user)
  and ``refresh_token`` grants.

Not modelled: recurrence expansion (``singleEvents=true`` over a recurring event
is rejected with 400 ``notImplementedInFake``), attendees/invitations, colours,
``sharedExtendedProperty``, quotas other than those injected by ``fail_next``.
"""

from __future__ import annotations

import base64
import copy
import email.message
import email.parser
import email.policy
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_BATCH_PARTS = 1000  # "You're limited to 1000 calls in a single batch request" (Calendar batch guide)
_CLIENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
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
_STATUS_TEXT = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    410: "Gone",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
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
class RequestRecord:
    method: str
    path: str
    user: str | None
    status: int
    in_batch: bool = False


@dataclass
class _Response:
    status: int
    body: Any = None  # dict -> JSON, bytes -> raw, None -> empty
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif self.body is None:
            data = b""
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json; charset=UTF-8")
        headers["Content-Length"] = str(len(data))
        return data, headers


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


def _edge(point: dict[str, Any] | None) -> datetime | None:
    if not point:
        return None
    if "dateTime" in point:
        return _parse_time(point["dateTime"])
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


class FakeGoogleCalendar:
    """Google Calendar v3 over HTTP on 127.0.0.1, with hooks for tests."""

    #: fields that clients may not set/alter
    _READ_ONLY = ("kind", "etag", "created", "updated", "htmlLink", "iCalUID", "creator", "organizer")

    def __init__(self, *, latency: float = 0.0, token_lifetime: int = 3600) -> None:
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.batch_limit = MAX_BATCH_PARTS
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
        self._faults: list[tuple[int, str, str, float | None]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # ------------------------------------------------------------------ lifecycle
    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}/calendar/v3/"

    @property
    def batch_uri(self) -> str:
        return f"{self.base_url}/batch/calendar/v3"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def start(self) -> FakeGoogleCalendar:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        port = server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-google-calendar", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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
            return token

    # ------------------------------------------------------------------ test hooks: faults/log
    def fail_next(self, n: int, status: int, reason: str, retry_after: float | None = None,
                  message: str | None = None) -> None:
        """The next ``n`` HTTP requests to the API (not /token) fail with ``status``/``reason``."""
        with self._lock:
            for _ in range(n):
                self._faults.append((status, reason, message or reason, retry_after))

    def request_count(self, method: str | None = None, path_contains: str = "", *,
                      include_batch_parts: bool = False) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method)
                and path_contains in r.path
                and (include_batch_parts or not r.in_batch)
            )

    # ------------------------------------------------------------------ test hooks: the human editing
    def add_calendar(self, user: str, calendar_id: str) -> None:
        with self._lock:
            self._calendar(user, calendar_id, create=True)

    def add_event(self, user: str, calendar: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cal = self._calendar(user, calendar, create=True)
            return self._insert(cal, copy.deepcopy(body))

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
        start, end = _edge(event["start"]), _edge(event["end"])
        if start and end and end < start:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.",
                           locationType="parameter", location="end.dateTime")
        if event.get("eventType") == "outOfOffice":
            if "date" in event["start"] or "date" in event["end"]:
                raise ApiError(400, "invalid", "An out of office event cannot be an all-day event.")
        if event.get("status", "confirmed") not in ("confirmed", "tentative", "cancelled"):
            raise ApiError(400, "invalid", "Invalid value for: status")

    def _insert(self, cal: _Calendar, body: dict[str, Any]) -> dict[str, Any]:
        event_id = body.get("id")
        if event_id is None:
            event_id = uuid.uuid4().hex  # hex digits are a subset of base32hex
        elif not isinstance(event_id, str) or not _CLIENT_ID_RE.match(event_id):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in cal.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        for key in self._READ_ONLY:
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
            "iCalUID": f"{event_id}@google.com",
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
        return self._public(event)

    def _live(self, cal: _Calendar, event_id: str, if_match: str | None) -> dict[str, Any]:
        event = cal.events.get(event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        if event["status"] == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        if if_match is not None and if_match != "*" and if_match.removeprefix("W/") != event["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed",
                           locationType="header", location="If-Match")
        return event

    def _patch(self, cal: _Calendar, event_id: str, body: dict[str, Any], *, if_match: str | None,
               replace: bool) -> dict[str, Any]:
        event = self._live(cal, event_id, if_match)
        if "id" in body and body["id"] != event_id:
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if "eventType" in body and body["eventType"] != event["eventType"]:
            raise ApiError(400, "eventTypeRestriction", "The event type cannot be changed.")
        for key in self._READ_ONLY:
            body.pop(key, None)
        candidate = copy.deepcopy(event)
        if replace:
            keep = {k: candidate[k] for k in (*self._READ_ONLY, "id", "eventType", "_order", "_seq", "sequence")
                    if k in candidate}
            candidate = {**keep, "status": "confirmed", **{k: v for k, v in body.items() if v is not None}}
        else:
            _merge(candidate, body)
        self._validate(candidate)
        candidate["sequence"] = int(candidate.get("sequence", 0)) + 1
        self._bump(candidate)
        cal.events[event_id] = candidate
        return self._public(candidate)

    def _delete(self, cal: _Calendar, event_id: str, *, if_match: str | None) -> None:
        event = self._live(cal, event_id, if_match)
        event["status"] = "cancelled"
        self._bump(event)

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

        def keep(event: dict[str, Any]) -> bool:
            cancelled = event["status"] == "cancelled"
            if since is not None:
                if event["_seq"] <= since:
                    return False
                return cancelled or not event_types or event["eventType"] in event_types
            if cancelled and not show_deleted:
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
        if flag("singleEvents") and any(e.get("recurrence") for e in matching):
            raise ApiError(400, "notImplementedInFake", "The fake does not expand recurring events.")
        order_by = one("orderBy")
        if order_by == "startTime" and not flag("singleEvents"):
            raise ApiError(400, "invalid", "The requested ordering is not available for the particular query.")
        if order_by == "updated":
            matching.sort(key=lambda e: e["_seq"])
        elif order_by == "startTime":
            matching.sort(key=lambda e: _edge(e.get("start")) or datetime.min.replace(tzinfo=UTC))
        else:
            matching.sort(key=lambda e: e["_order"])

        window = matching[offset: offset + max_results]
        items = [
            self._tombstone(e) if e["status"] == "cancelled" and since is not None else self._public(e)
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
                value = json.loads(body or b"{}")
            except ValueError as exc:
                raise ApiError(400, "parseError", "Parse Error") from exc
            if not isinstance(value, dict):
                raise ApiError(400, "parseError", "Parse Error")
            return value

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
            resource_id = secrets.token_urlsafe(12)
            channel = {
                "kind": "api#channel",
                "id": data["id"],
                "resourceId": resource_id,
                "resourceUri": f"{self.api_endpoint}calendars/{cal.calendar_id}/events?alt=json",
                "expiration": str(data.get("expiration") or int(time.time() * 1000) + 7 * 86400 * 1000),
            }
            if "token" in data:
                channel["token"] = data["token"]
            self.channels[data["id"]] = {**channel, "address": data["address"], "user": user,
                                         "calendarId": cal.calendar_id, "stopped": False}
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

    def _take_fault(self) -> _Response | None:
        with self._lock:
            if not self._faults:
                return None
            status, reason, message, retry_after = self._faults.pop(0)
        err = ApiError(status, reason, message)
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return _Response(status, err.body(), headers)

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
            status_line = f"HTTP/1.1 {result.status} {_STATUS_TEXT.get(result.status, 'Status')}"
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeGoogleCalendar
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by stdlib
        pass

    def _handle(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if fake.latency:
            time.sleep(fake.latency)
        path = urlsplit(self.path).path
        try:
            if path == "/token" and self.command == "POST":
                response = fake._token(body)
            elif (fault := fake._take_fault()) is not None:
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
        data, headers = response.encode()
        self.send_response(response.status, _STATUS_TEXT.get(response.status))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle
