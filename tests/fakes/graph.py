"""A local fake of the Microsoft identity platform (Entra ID v2 endpoints) and Microsoft Graph v1.0.

Written from Microsoft's public documentation (delta query for events in a calendar view, the
event resource and its create/get/update/delete operations, single-value extended properties,
mailboxSettings, JSON batching, change notifications through webhooks and lifecycle
notifications, the OAuth 2.0 client-credentials and refresh-token grants) so that the *real*
``msal`` library and plain HTTP clients can talk to it over HTTPS on 127.0.0.1.

msal only accepts ``https`` authorities, so the server speaks TLS with a certificate from a
throw-away test CA made by ``trustme``; clients verify against :attr:`FakeGraph.ca_bundle_path`::

    app = msal.ConfidentialClientApplication(
        fake.client_id, client_credential=fake.client_secret, authority=fake.authority,
        verify=fake.ca_bundle_path, instance_discovery=False)
    token = app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])["access_token"]
    requests.get(f"{fake.graph_url}/users/{upn}/calendarView/delta", ..., verify=fake.ca_bundle_path)

(Without ``instance_discovery=False`` msal asks https://login.microsoftonline.com for instance
metadata before it talks to the authority; ``validate_authority=False`` also avoids that.)

Modelled:

* identity: OIDC discovery at ``/{tenant}/v2.0/.well-known/openid-configuration`` (tenant id or
  tenant domain; an unknown tenant is a 400 with AADSTS90002), ``/common/discovery/instance``,
  a JWKS stub, and ``/{tenant}/oauth2/v2.0/token`` with the ``client_credentials`` grant (client
  secret in the body or HTTP Basic, or a ``client_assertion`` JWT signed with a registered
  certificate; scope must be ``https://graph.microsoft.com/.default``) and the ``refresh_token``
  grant (refresh tokens registered by a test hook, rotated on use like Entra ID does; a revoked
  one answers ``invalid_grant`` with ``error_codes`` [50173] and an ``AADSTS50173`` description).
  Errors carry ``error``, ``error_description`` (with the AADSTS code), ``error_codes``,
  ``timestamp``, ``trace_id``, ``correlation_id``. Access tokens are opaque, expire after
  ``token_lifetime`` seconds and map to the app (application permissions: any mailbox) or to a
  user (delegated: ``/me`` and that user's own ``/users/{id}`` only).
* users addressed by UPN (case-insensitive) or object id; created on first use unless
  ``auto_create_users`` is off (then 404 ``ErrorInvalidUser``); a mailbox can be made to fail
  (``block_mailbox``, e.g. 403 ``ErrorAccessDenied``).
* events in the primary calendar (and extra calendars from ``add_calendar``):
  ``POST /users/{id}/events`` (also ``/calendar/events``, ``/calendars/{id}/events``), 201, with
  ``transactionId`` de-duplication (the same transactionId again answers the existing event);
  ``GET/PATCH/DELETE /users/{id}/events/{id}`` with ``@odata.etag``/``changeKey`` and
  ``If-Match`` (412 ``ErrorIrresolvableConflict``), 404 ``ErrorItemNotFound``; ``subject``,
  ``body``, ``showAs`` (enum checked), ``isAllDay`` (start and end must be midnight in their time
  zone), ``isReminderOn``, ``start``/``end`` as ``dateTimeTimeZone`` with IANA or Windows zone
  names (a table of common Windows names), ``lastModifiedDateTime``, ``createdDateTime``,
  ``singleValueExtendedProperties`` on create and patch (upsert by id), unknown properties are a
  400 ``RequestBodyRead``;
* ``GET .../events`` (series masters and single instances) with ``$top``/``$skip`` paging,
  ``$select``, ``$filter=singleValueExtendedProperties/any(ep: ep/id eq '...' and ep/value eq
  '...')`` (also ``ne``, ``contains``, ``startswith``; the Name part of the id is case-sensitive,
  the value is not) and ``$expand=singleValueExtendedProperties($filter=id eq '...')`` (also on
  GET of one event); extended properties are never returned unless expanded;
* ``GET .../calendarView`` and ``GET .../calendarView/delta`` (``/me`` or ``/users/{id}``, also
  under ``/calendars/{id}``): occurrences (``type: occurrence``) and exceptions with
  ``seriesMasterId`` and ``originalStart``, expanded in the window from the JSON
  ``patternedRecurrence`` (daily, weekly, absoluteMonthly, relativeMonthly, absoluteYearly,
  relativeYearly; range endDate, noEnd, numbered); deleting an occurrence cancels that instance,
  patching one makes an exception; ``GET .../events/{id}/instances``;
* delta rounds: ``@odata.nextLink`` (``$skiptoken``) pages honouring ``Prefer:
  odata.maxpagesize=N``, a final ``@odata.deltaLink`` (``$deltatoken``); following a deltaLink
  answers only the changes since, with deleted/cancelled instances and instances that left the
  window as ``{"@odata.type": "#microsoft.graph.event", "id": ..., "@removed": {"reason":
  "deleted"}}``, and (as the docs warn) ``@removed`` entries for events *outside* the window that
  changed since (``report_out_of_window_changes``). Delta items never carry extended properties.
  ``$select``/``$filter``/``$expand``/``$orderby``/``$search`` on delta are a 400. Expired tokens
  (``expire_delta_tokens``) answer 410 with a ``Location`` header naming the initial request and
  error code ``resyncRequired`` (or another status/code such as ``syncStateNotFound``); tokens
  that the fake no longer knows (more than ``delta_token_cache`` newer rounds) answer 410
  ``syncStateNotFound``;
* ``Prefer: outlook.timezone="..."``: every dateTimeTimeZone in event responses in that zone
  (UTC without the header), with ``Preference-Applied``;
* ``GET/PATCH /users/{id}/mailboxSettings``, ``.../mailboxSettings/automaticRepliesSetting`` and
  ``.../mailboxSettings/timeZone``;
* ``POST /v1.0/$batch``: at most 20 requests (else 400), ids unique, relative urls, a body needs
  a Content-Type header, ``dependsOn`` (424 when a dependency failed), each part its own status,
  headers and body, parts may address different users; faults can target single parts;
* ``/subscriptions``: POST (resource ``users/{id}/events``, ``me/events``, or a calendar's
  events; changeType ``created``/``updated``/``deleted``; ``expirationDateTime`` at most 10080
  minutes ahead) performs the validation handshake on ``notificationUrl`` and
  ``lifecycleNotificationUrl`` (POST ``?validationToken=...``, 200 ``text/plain`` echo expected
  within ``validation_timeout`` seconds, else 400 ``ValidationError``); GET, PATCH (renew),
  DELETE, ``/reauthorize``. Event changes are POSTed as change notifications (one notification
  per POST, changeType, resource ``Users/{oid}/Events/{id}``, resourceData, clientState,
  tenantId, subscriptionExpirationDateTime) from a background thread, never while holding the
  lock, retried ``notification_retries`` times; deliveries are recorded in ``notifications``.
  Lifecycle notifications (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``) are
  sent by a test hook. Notification URLs may be plain ``http`` on 127.0.0.1;
* faults: ``fail_next`` (status, code, optional Retry-After; on top-level requests, batch parts,
  either, or the token endpoint), ``slow_next``, ``drop_next`` (connection closed without an
  answer), ``latency`` on every request (not on the ``/_fake`` control namespace), a request log;
* a ``POST /_fake/<command>`` JSON control namespace and ``python -m tests.fakes.graph`` (prints
  ``READY <base_url> <ca_bundle_path>``) to drive it from another process.

Not modelled: attendees/meeting semantics (invitations, responses, organizer changes), other
calendars' delta without the ``/calendars/{id}`` prefix, group calendars, attachments, open
extensions, multi-value extended properties (accepted and stored only), ``$orderby``/``$search``
and OData filters other than the extended-property one, ``$count``, permissions and consent
(any valid token may read any mailbox except as above), throttling other than injected faults,
encrypted resource data in notifications, notification batching, subscription quotas, the
authorization-code, device-code and on-behalf-of grants, signed access tokens.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import html
import json
import re
import secrets
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trustme
from dateutil import rrule

from tests.fakes import http_support
from tests.fakes.http_support import (
    BackgroundServer,
    Courier,
    FakeRequestHandler,
    Fault,
    FaultQueues,
    LoopbackServer,
    Response,
    count_requests,
    handler_for,
    json_object,
    serve_until_signalled,
)
from tests.known_secrets import register

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"
MAX_BATCH_REQUESTS = 20  # "JSON batch requests are currently limited to 20 individual requests."
MAX_SUBSCRIPTION_MINUTES = 10080  # Outlook event subscriptions: under 7 days
CLIENT_ASSERTION_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_TENANT_ID = "7a1c3f5e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
DEFAULT_TENANT_DOMAIN = "contoso.onmicrosoft.com"
DEFAULT_CLIENT_ID = "0d2f8f8e-6b1c-4a5e-9c3d-2f1e0a9b8c7d"
DEFAULT_CLIENT_SECRET = "fake-client-secret"
SHOW_AS = ("free", "tentative", "busy", "oof", "workingElsewhere", "unknown")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")

#: Windows time zone names (as Outlook uses them) for the zones tests are likely to need.
WINDOWS_ZONES = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Eastern Standard Time": "America/New_York",
    "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver",
    "US Mountain Standard Time": "America/Phoenix",
    "Pacific Standard Time": "America/Los_Angeles",
    "Alaskan Standard Time": "America/Anchorage",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Atlantic Standard Time": "America/Halifax",
    "E. South America Standard Time": "America/Sao_Paulo",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Arabian Standard Time": "Asia/Dubai",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
}

# event properties a client may write, and the read-only ones it may echo back (ignored)
_WRITABLE = frozenset({
    "allowNewTimeProposals", "attendees", "body", "categories", "end", "hideAttendees", "importance", "isAllDay",
    "isOnlineMeeting", "isReminderOn", "location", "locations", "onlineMeetingProvider", "recurrence",
    "reminderMinutesBeforeStart", "responseRequested", "sensitivity", "showAs", "start", "subject", "transactionId",
    "singleValueExtendedProperties", "multiValueExtendedProperties", "originalStartTimeZone", "originalEndTimeZone",
})
_READ_ONLY = frozenset({
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "iCalUId", "uid", "type", "seriesMasterId",
    "webLink", "bodyPreview", "hasAttachments", "isCancelled", "isDraft", "isOrganizer", "onlineMeeting",
    "onlineMeetingUrl", "organizer", "originalStart", "responseStatus", "occurrenceId", "cancelledOccurrences",
    "exceptionOccurrences", "calendar", "instances", "attachments", "extensions",
})
_TIME_FIELDS = frozenset({"start", "end", "isAllDay", "recurrence"})
_OCCURRENCE_ID = re.compile(r"^(?P<master>.+)_OCC(?P<key>\d{8}T\d{6}Z)$")
_EXT_PROP_ID = re.compile(
    r"^(?P<type>[A-Za-z]+)\s+(?:\{(?P<guid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
    r"[0-9A-Fa-f]{12})\}\s+(?P<kind>Name|Id)\s+(?P<name>.+)|(?P<tag>0x[0-9A-Fa-f]{1,4}))$",
    re.IGNORECASE,
)
_STRING = r"'((?:[^']|'')*)'"
_FILTER_ANY = re.compile(r"^\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*(.*)\)\s*$", re.IGNORECASE)
_EXPAND = re.compile(r"^\s*singleValueExtendedProperties(?:\(\s*\$filter\s*=\s*id\s+eq\s+" + _STRING + r"\s*\))?\s*$",
                     re.IGNORECASE)
_PREFER_TZ = re.compile(r'outlook\.timezone\s*=\s*"([^"]*)"', re.IGNORECASE)
_PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)
_DELTA_NAMES = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")


class GraphError(Exception):
    """An error answered in Microsoft Graph's JSON error format."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }

    def response(self) -> _Response:
        return _Response(self.status, self.body(), dict(self.headers))


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str, suberror: str | None = None) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description
        self.suberror = suberror

    def response(self) -> _Response:
        now = datetime.now(UTC)
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace} Correlation ID: {correlation} "
                f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}"
            ),
            "error_codes": [self.aadsts],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return _Response(self.status, body)


@dataclass
class RequestRecord(http_support.RequestRecord):
    """One request the fake answered. ``kind`` is ``graph``, ``batch`` (the envelope), ``token`` or
    ``discovery``; batch parts are ``graph`` records with ``in_batch`` set; ``status`` 0 = dropped."""

    kind: str = "graph"


@dataclass
class NotificationDelivery:
    """One POST of a change or lifecycle notification to a subscriber."""

    url: str
    payload: dict[str, Any]
    lifecycle: bool
    status: int | None = None  # last HTTP status seen; None = no answer
    error: str | None = None
    attempts: int = 0

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def item(self) -> dict[str, Any]:
        value = self.payload["value"][0]
        assert isinstance(value, dict)
        return value


@dataclass
class ValidationAttempt:
    url: str
    token: str
    ok: bool
    status: int | None
    detail: str = ""


class _Response(Response):
    json_content_type = "application/json; odata.metadata=minimal; charset=utf-8"


@dataclass
class _App:
    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None


@dataclass
class _Grant:
    kind: str  # "app" or "user"
    client_id: str
    user: str | None
    expires_at: float


@dataclass
class _RefreshToken:
    user: str
    client_id: str | None
    family: str
    revoked: int | None = None  # AADSTS code when revoked


@dataclass
class _DeltaState:
    """What a client has seen at the end of a round (a deltaLink) or what a round will deliver."""

    calendar: str
    start: datetime
    end: datetime
    base: str  # request path without the query, as the client sent it
    query: str  # the initial query string (for the 410 Location header)
    snapshot: dict[str, int] = field(default_factory=dict)  # instance id -> version
    seq: int = 0  # the fake's change counter when the snapshot was taken


@dataclass
class _Round:
    state: _DeltaState  # the state a deltaLink at the end of this round will stand for
    items: list[dict[str, Any]]  # internal instances or @removed stubs


@dataclass
class _Mailbox:
    upn: str
    object_id: str
    display_name: str
    primary_calendar: str
    calendars: dict[str, str] = field(default_factory=dict)  # id -> name
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # singleInstance and seriesMaster items
    tombstones: dict[str, int] = field(default_factory=dict)  # deleted item id -> seq
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> event id
    settings: dict[str, Any] = field(default_factory=dict)
    delta_tokens: OrderedDict[str, _DeltaState] = field(default_factory=OrderedDict)
    rounds: OrderedDict[str, _Round] = field(default_factory=OrderedDict)
    expired_tokens: dict[str, tuple[int, str, _DeltaState]] = field(default_factory=dict)
    blocked: GraphError | None = None


@dataclass
class _Outgoing:
    url: str
    payload: dict[str, Any]
    lifecycle: bool


# ---------------------------------------------------------------------------------------------- helpers
def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(dt: datetime | None = None) -> str:
    """Graph's DateTimeOffset form: UTC with seven fractional digits."""
    dt = (dt or _now()).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def zone(name: str) -> tzinfo:
    """A tzinfo for a Windows or IANA time zone name, as Graph accepts them."""
    iana = WINDOWS_ZONES.get(name, name)
    if iana in ("UTC", "Etc/UTC", "GMT", "Etc/GMT"):
        return UTC
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(400, "TimeZoneNotSupportedException",
                         f"A valid TimeZone value must be specified. The following TimeZone value is not supported: "
                         f"'{name}'.") from exc


def _parse_wall(value: str) -> datetime:
    """A dateTime string as Graph sends it (up to 7 fractional digits, optional offset)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if match:
        text = f"{match.group(1)}.{match.group(2)[:6].ljust(6, '0')}{match.group(3)}"
    return datetime.fromisoformat(text)


def _point(value: Any, name: str) -> tuple[datetime, str, datetime]:
    """Validate a dateTimeTimeZone: (local wall time, zone name, UTC instant)."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "ErrorInvalidRequest", f"The {name} property must have a dateTime value.")
    tz_name = value.get("timeZone") or "UTC"
    if not isinstance(tz_name, str):
        raise GraphError(400, "RequestBodyRead", f"Invalid timeZone in {name}.")
    tz = zone(tz_name)
    try:
        parsed = _parse_wall(value["dateTime"])
    except ValueError as exc:
        raise GraphError(400, "RequestBodyRead", f"Cannot convert the literal '{value['dateTime']}' to the expected "
                                                 f"type 'Edm.DateTime' ({name}).") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(tz).replace(tzinfo=None)
    return parsed, tz_name, parsed.replace(tzinfo=tz).astimezone(UTC)


def _render_time(instant: datetime, tz_name: str) -> dict[str, str]:
    local = instant.astimezone(zone(tz_name))
    return {"dateTime": local.strftime("%Y-%m-%dT%H:%M:%S.") + f"{local.microsecond:06d}0", "timeZone": tz_name}


def _parse_query_instant(value: str, name: str) -> datetime:
    try:
        parsed = _parse_wall(value)
    except ValueError as exc:
        raise GraphError(400, "ErrorInvalidParameter",
                         f"The value '{value}' of parameter '{name}' is invalid.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _prefer(headers: Any) -> tuple[str | None, int | None]:
    values: list[str] = []
    if hasattr(headers, "get_all"):
        values = list(headers.get_all("Prefer") or [])
    else:
        value = _header(headers, "Prefer")
        if value:
            values = [value]
    joined = ",".join(values)
    tz_match = _PREFER_TZ.search(joined)
    page_match = _PREFER_PAGE.search(joined)
    return (tz_match.group(1) if tz_match else None, int(page_match.group(1)) if page_match else None)


def _odata_string(text: str) -> str:
    return text.replace("''", "'")


def _ext_key(prop_id: str) -> tuple[str, ...]:
    match = _EXT_PROP_ID.match(prop_id.strip())
    if not match:
        raise GraphError(400, "ErrorInvalidProperty", f"The extended property id '{prop_id}' is not valid.")
    if match.group("tag"):
        return (match.group("type").lower(), "tag", match.group("tag").lower())
    return (match.group("type").lower(), match.group("guid").lower(), match.group("kind").lower(), match.group("name"))


def _strip_html(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", text)).strip()


def _json_body(body: bytes) -> dict[str, Any]:
    """A request's JSON object, or the 400 Graph answers for anything else."""
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(value, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return value


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        for key, item in headers.items():
            if key.lower() == name.lower():
                return str(item)
    return value if value is None else str(value)


# ---------------------------------------------------------------------------------------------- the fake
class FakeGraph:
    """Microsoft identity platform + Microsoft Graph v1.0 over HTTPS on 127.0.0.1, with hooks for tests."""

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        tenant_domain: str = DEFAULT_TENANT_DOMAIN,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        latency: float = 0.0,
        token_lifetime: int = 3600,
        port: int = 0,
    ) -> None:
        self.tenant_id = tenant_id
        self.tenant_domain = tenant_domain
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.port = port
        self.auto_create_users = True
        self.default_page_size = 10
        self.delta_token_cache = 50  # per mailbox; older deltaLinks answer 410 syncStateNotFound
        self.report_out_of_window_changes = True
        self.validation_timeout = 10.0
        self.notification_timeout = 3.0
        self.notification_retries = 2
        self.notification_retry_delay = 0.2
        self.notification_ssl_context: ssl.SSLContext | None = None  # for https notification URLs
        self.batch_limit = MAX_BATCH_REQUESTS
        self.requests: list[RequestRecord] = []
        self.token_requests: list[dict[str, str]] = []
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.validations: list[ValidationAttempt] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._apps: dict[str, _App] = {client_id: _App(client_id, secret=client_secret)}
        self._mailboxes: dict[str, _Mailbox] = {}
        self._by_object_id: dict[str, str] = {}
        self._access_tokens: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._faults = FaultQueues()
        self._courier: Courier[_Outgoing, NotificationDelivery] = Courier(self._deliver, "fake-graph-notifier")
        self.notifications = self._courier.records
        self._stopping = threading.Event()
        self._serving: BackgroundServer | None = None
        self._ca_dir: str | None = None
        self.ca_bundle_path = ""
        self.base_url = ""

    # ------------------------------------------------------------------------------------ lifecycle
    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    def start(self) -> FakeGraph:
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        self._ca_dir = tempfile.mkdtemp(prefix="fake-graph-ca-")
        self.ca_bundle_path = f"{self._ca_dir}/ca.pem"
        ca.cert_pem.write_to_path(self.ca_bundle_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        self._serving = BackgroundServer(_TLSServer(self.port, handler_for(_Handler, self), context), "fake-graph")
        self.base_url = f"https://127.0.0.1:{self._serving.port}"
        self._stopping.clear()
        self._courier.start()
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self._stopping.set()  # queued notifications are dropped, not delivered
        self._courier.stop(timeout=10)
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

    def __enter__(self) -> FakeGraph:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the fake's test CA (for httpx, urllib, ...)."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)

    # ------------------------------------------------------------------------------------ hooks: identity
    def add_app(self, client_id: str, *, secret: str | None = None, certificate_pem: bytes | str | None = None) -> None:
        """Register an application (client id) with a secret and/or a certificate for client assertions."""
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        with self._lock:
            self._apps[client_id] = _App(client_id, secret=secret, certificate_pem=pem)

    def add_refresh_token(self, refresh_token: str, user: str, *, client_id: str | None = None) -> None:
        """Register a refresh token (as a user's consent would have issued it) for ``user``."""
        with self._lock:
            self._mailbox(user, create=True)
            self._refresh_tokens[refresh_token] = _RefreshToken(user.lower(), client_id, family=refresh_token)

    def revoke_refresh_token(self, refresh_token: str, *, aadsts: int = 50173) -> None:
        """Revoke a refresh token and every token rotated from it; the grant answers ``invalid_grant``
        with this AADSTS code (50173 revoked, 700082 expired by inactivity, 70008 expired)."""
        with self._lock:
            family = self._refresh_tokens[refresh_token].family
            for record in self._refresh_tokens.values():
                if record.family == family:
                    record.revoked = aadsts

    def revoke_user_sessions(self, user: str, *, aadsts: int = 50173) -> None:
        """Revoke all refresh tokens of a user (like revokeSignInSessions) and its delegated access tokens."""
        with self._lock:
            for record in self._refresh_tokens.values():
                if record.user == user.lower():
                    record.revoked = aadsts
        self.invalidate_access_tokens(user)

    def invalidate_access_tokens(self, user: str | None = None) -> None:
        """Forget issued access tokens (all, or a user's delegated ones): the next call gets 401."""
        with self._lock:
            for token, grant in list(self._access_tokens.items()):
                if user is None or grant.user == user.lower():
                    del self._access_tokens[token]

    def issue_access_token(self, user: str | None = None, *, client_id: str | None = None) -> str:
        """An access token without going through the token endpoint (app-only when ``user`` is None)."""
        with self._lock:
            return self._issue(user.lower() if user else None, client_id or self.client_id)

    # ------------------------------------------------------------------------------------ hooks: mailboxes
    def add_user(self, user: str, *, time_zone: str | None = None, display_name: str | None = None) -> str:
        """Create a mailbox (idempotent); returns its object id."""
        with self._lock:
            box = self._mailbox(user, create=True)
            if display_name:
                box.display_name = display_name
            if time_zone:
                zone(time_zone)
                box.settings["timeZone"] = time_zone
            return box.object_id

    def user_id(self, user: str) -> str:
        with self._lock:
            return self._mailbox(user, create=True).object_id

    def block_mailbox(self, user: str, status: int = 403, code: str = "ErrorAccessDenied",
                      message: str = "Access is denied. Check credentials and try again.") -> None:
        """Every request for this mailbox fails (until ``unblock_mailbox``)."""
        with self._lock:
            self._mailbox(user, create=True).blocked = GraphError(status, code, message)

    def unblock_mailbox(self, user: str) -> None:
        with self._lock:
            self._mailbox(user, create=True).blocked = None

    def add_calendar(self, user: str, name: str) -> str:
        with self._lock:
            box = self._mailbox(user, create=True)
            calendar_id = "AAMkAGCal" + _b64url(secrets.token_bytes(12)) + "="
            box.calendars[calendar_id] = name
            return calendar_id

    def set_mailbox_time_zone(self, user: str, time_zone: str) -> None:
        zone(time_zone)
        with self._lock:
            self._mailbox(user, create=True).settings["timeZone"] = time_zone

    def set_automatic_replies(
        self,
        user: str,
        status: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        time_zone: str = "UTC",
        internal_message: str = "",
        external_message: str = "",
        external_audience: str = "all",
    ) -> None:
        """Set ``automaticRepliesSetting`` (status ``disabled``, ``alwaysEnabled`` or ``scheduled``)."""

        def point(value: datetime | str | None, default: datetime) -> dict[str, str]:
            if value is None:
                return _render_time(default, time_zone)
            if isinstance(value, datetime):
                aware = value if value.tzinfo else value.replace(tzinfo=zone(time_zone))
                return _render_time(aware, time_zone)
            return {"dateTime": value, "timeZone": time_zone}

        with self._lock:
            box = self._mailbox(user, create=True)
            today = _now().replace(minute=0, second=0, microsecond=0)
            box.settings["automaticRepliesSetting"] = {
                "status": status,
                "externalAudience": external_audience,
                "scheduledStartDateTime": point(start, today),
                "scheduledEndDateTime": point(end, today + timedelta(days=1)),
                "internalReplyMessage": internal_message,
                "externalReplyMessage": external_message,
            }

    def mailbox_settings(self, user: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._mailbox(user, create=True).settings)

    # ------------------------------------------------------------------------------------ hooks: the human editing
    def add_event(self, user: str, body: dict[str, Any], *, calendar: str | None = None) -> dict[str, Any]:
        """Create an event as Outlook would (notifications fire); returns it rendered in UTC."""
        with self._lock:
            box = self._mailbox(user, create=True)
            created, _existing = self._create(box, calendar or box.primary_calendar, copy.deepcopy(body))
            return self._render(box, created, "UTC", expand=True)

    def edit_event(self, user: str, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Patch an event, an occurrence (making it an exception) or an exception."""
        with self._lock:
            box = self._mailbox(user, create=True)
            item = self._patch(box, event_id, copy.deepcopy(changes), if_match=None)
            return self._render(box, item, "UTC", expand=True)

    def delete_event(self, user: str, event_id: str) -> None:
        """Delete an event or series; for an occurrence id, cancel that one instance."""
        with self._lock:
            self._delete(self._mailbox(user, create=True), event_id, if_match=None)

    def events(self, user: str, *, calendar: str | None = None) -> list[dict[str, Any]]:
        """The stored single events and series masters (UTC, extended properties included)."""
        with self._lock:
            box = self._mailbox(user, create=True)
            return [
                self._render(box, e, "UTC", expand=True)
                for e in box.events.values()
                if calendar is None or e["_calendar"] == calendar
            ]

    def view(self, user: str, start: datetime, end: datetime, *, calendar: str | None = None) -> list[dict[str, Any]]:
        """The instances (singles, occurrences, exceptions) of the calendar view, as calendarView renders them."""
        with self._lock:
            box = self._mailbox(user, create=True)
            return [self._render(box, i, "UTC") for i in self._instances(box, calendar or box.primary_calendar,
                                                                          start, end)]

    def expire_delta_tokens(self, user: str, *, status: int = 410, code: str = "resyncRequired") -> None:
        """Every delta/skip token of ``user`` issued so far now fails with ``status``/``code``."""
        with self._lock:
            box = self._mailbox(user, create=True)
            for token, state in box.delta_tokens.items():
                box.expired_tokens[token] = (status, code, state)
            for token, round_ in box.rounds.items():
                box.expired_tokens[token] = (status, code, round_.state)
            box.delta_tokens.clear()
            box.rounds.clear()

    # ------------------------------------------------------------------------------------ hooks: subscriptions
    def send_lifecycle_notification(self, subscription_id: str, lifecycle_event: str) -> bool:
        """Queue a lifecycle notification to the subscription's lifecycleNotificationUrl (False if none).
        ``subscriptionRemoved`` also removes the subscription."""
        if lifecycle_event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {lifecycle_event!r}")
        with self._lock:
            sub = self.subscriptions[subscription_id]
            url = sub.get("lifecycleNotificationUrl")
            if lifecycle_event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
            if not url:
                return False
            item = {
                "subscriptionId": subscription_id,
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": self.tenant_id,
                "clientState": sub.get("clientState"),
                "lifecycleEvent": lifecycle_event,
            }
            self._courier.put(_Outgoing(url, {"value": [item]}, lifecycle=True))
            return True

    def expire_subscription(self, subscription_id: str) -> None:
        """Graph deletes a subscription that was not renewed in time."""
        with self._lock:
            self.subscriptions.pop(subscription_id, None)

    def wait_notifications(self, n: int, timeout: float = 5.0) -> list[NotificationDelivery]:
        """Block until at least ``n`` notification deliveries are recorded (raises TimeoutError)."""
        return self._courier.wait_for(n, timeout)

    # ------------------------------------------------------------------------------------ hooks: faults / log
    def fail_next(self, n: int, status: int, code: str, retry_after: float | None = None, *,
                  message: str | None = None, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` matching requests fail with ``status``/``code``.

        ``where``: ``request`` = top-level Graph requests (a $batch envelope fails whole),
        ``part`` = parts of a $batch only, ``any`` = plain requests or batch parts (never the
        envelope), ``token`` = the token endpoint (``code`` is the OAuth ``error``).
        """
        self._check_where(where, ("request", "part", "any", "token"))
        self._faults.add_failures(n, status, code, message or f"Injected {status} {code}", retry_after,
                                  where=where, path_contains=path_contains)

    def fault_rate(self, rate: float, seed: int = 0) -> None:
        """A share ``rate`` of Graph requests (and batch parts) fail at random from now on: 429
        with Retry-After, 503, 500, or a dropped connection. ``0`` stops it."""
        self._faults.set_random(rate, (
            Fault(status=429, code="TooManyRequests", message="Too many requests", retry_after=1),
            Fault(status=503, code="ServiceUnavailable", message="Service unavailable", retry_after=1),
            Fault(status=500, code="generalException", message="General exception"),
        ), seed=seed)

    def slow_next(self, n: int, seconds: float, *, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` top-level requests (``request``) or token requests (``token``) take ``seconds`` longer."""
        self._check_where(where, ("request", "token"))
        self._faults.add_delays(n, seconds, where=where, path_contains=path_contains)

    def drop_next(self, n: int, *, where: str = "request", path_contains: str = "") -> None:
        """The next ``n`` top-level (or token) requests get the connection closed without an answer."""
        self._check_where(where, ("request", "token"))
        self._faults.add_drops(n, where=where, path_contains=path_contains)

    @staticmethod
    def _check_where(where: str, allowed: tuple[str, ...]) -> None:
        if where not in allowed:
            raise ValueError(f"where must be one of {allowed}, not {where!r}")

    def request_count(self, method: str | None = None, path_contains: str = "", *, include_batch_parts: bool = False,
                      only_batch_parts: bool = False, kind: str = "graph") -> int:
        """Count logged requests. ``kind="graph"`` counts top-level Graph requests including $batch
        envelopes; batch parts are added with ``include_batch_parts`` or counted alone with
        ``only_batch_parts``. ``kind`` may also be ``token`` or ``discovery``."""
        with self._lock:
            if kind == "graph":
                return count_requests((r for r in self.requests if r.kind in ("graph", "batch")), method,
                                      path_contains, include_batch_parts=include_batch_parts,
                                      only_batch_parts=only_batch_parts)
            return count_requests((r for r in self.requests if r.kind == kind), method, path_contains,
                                  include_batch_parts=True)

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "graph_requests": sum(1 for r in self.requests if r.kind in ("graph", "batch") and not r.in_batch),
                "batch_requests": sum(1 for r in self.requests if r.kind == "batch"),
                "batch_parts": sum(1 for r in self.requests if r.in_batch),
                "token_requests": sum(1 for r in self.requests if r.kind == "token"),
                "discovery_requests": sum(1 for r in self.requests if r.kind == "discovery"),
                "dropped": sum(1 for r in self.requests if r.status == 0),
            }

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()

    # ------------------------------------------------------------------------------------ state helpers
    def _mailbox(self, user: str, *, create: bool) -> _Mailbox:
        key = user.lower()
        key = self._by_object_id.get(key, key)
        box = self._mailboxes.get(key)
        if box is None:
            if not create:
                raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
            object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-graph:{key}"))
            primary = "AAMkAGPrimary" + _b64url(hashlib.sha256(key.encode()).digest()[:12]) + "="
            box = _Mailbox(upn=key, object_id=object_id, display_name=key.split("@")[0].replace(".", " ").title(),
                           primary_calendar=primary, calendars={primary: "Calendar"})
            box.settings = self._default_settings()
            self._mailboxes[key] = box
            self._by_object_id[object_id] = key
        return box

    @staticmethod
    def _default_settings() -> dict[str, Any]:
        midnight = _now().replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "archiveFolder": "AAMkAGArchive=",
            "timeZone": "UTC",
            "automaticRepliesSetting": {
                "status": "disabled",
                "externalAudience": "all",
                "scheduledStartDateTime": _render_time(midnight, "UTC"),
                "scheduledEndDateTime": _render_time(midnight + timedelta(days=1), "UTC"),
                "internalReplyMessage": "",
                "externalReplyMessage": "",
            },
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "UTC"},
            },
            "dateFormat": "yyyy-MM-dd",
            "timeFormat": "HH:mm",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "userPurpose": "user",
        }

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _bump(self, item: dict[str, Any]) -> None:
        seq = self._next_seq()
        item["_seq"] = seq
        item["changeKey"] = base64.b64encode(secrets.token_bytes(10) + seq.to_bytes(6, "big")).decode()
        item["lastModifiedDateTime"] = _stamp()

    def _issue(self, user: str | None, client_id: str) -> str:
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + _b64url(secrets.token_bytes(24)) + ".fake"
        self._access_tokens[token] = _Grant("user" if user else "app", client_id, user,
                                            time.time() + self.token_lifetime)
        register(token)
        return token

    # ------------------------------------------------------------------------------------ events: writes
    def _clean_body(self, body: Any, *, creating: bool) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise GraphError(400, "RequestBodyRead", "The request body must be a JSON object.")
        clean: dict[str, Any] = {}
        for key, value in body.items():
            if key.startswith("@odata") or key in _READ_ONLY:
                continue
            if key not in _WRITABLE:
                raise GraphError(400, "RequestBodyRead",
                                 f"The property '{key}' does not exist on type 'microsoft.graph.event'. Make sure to "
                                 f"only use property names that are defined by the type or mark the type as open type.")
            clean[key] = value
        if "showAs" in clean and clean["showAs"] is not None:
            canonical = {s.lower(): s for s in SHOW_AS}.get(str(clean["showAs"]).lower())
            if canonical is None:
                raise GraphError(400, "RequestBodyRead", f"Requested value '{clean['showAs']}' was not found.")
            clean["showAs"] = canonical
        for flag in ("isAllDay", "isReminderOn", "responseRequested", "allowNewTimeProposals", "hideAttendees",
                     "isOnlineMeeting"):
            if flag in clean and not isinstance(clean[flag], bool):
                raise GraphError(400, "RequestBodyRead",
                                 f"Cannot convert a value to target type 'Edm.Boolean' ({flag}).")
        if "subject" in clean and clean["subject"] is not None and not isinstance(clean["subject"], str):
            raise GraphError(400, "RequestBodyRead", "Cannot convert a value to target type 'Edm.String' (subject).")
        if "body" in clean and not (clean["body"] is None or isinstance(clean["body"], dict)):
            raise GraphError(400, "RequestBodyRead", "The body property must be an itemBody object.")
        props = clean.get("singleValueExtendedProperties")
        if props is not None:
            if not isinstance(props, list):
                raise GraphError(400, "RequestBodyRead", "singleValueExtendedProperties must be a collection.")
            for prop in props:
                if not isinstance(prop, dict) or not isinstance(prop.get("id"), str):
                    raise GraphError(400, "RequestBodyRead", "Each extended property needs an id.")
                if not isinstance(prop.get("value"), str):
                    raise GraphError(400, "RequestBodyRead", "Extended property values are strings.")
                _ext_key(prop["id"])
        if creating:
            for edge in ("start", "end"):
                if edge not in clean:
                    raise GraphError(400, "ErrorInvalidRequest", f"The event must have a {edge} time.")
        return clean

    def _apply_times(self, item: dict[str, Any]) -> None:
        """Recompute the internal instants of a single event or series master and validate them."""
        start_local, start_tz, start_utc = _point(item["start"], "start")
        end_local, end_tz, end_utc = _point(item["end"], "end")
        if end_utc < start_utc:
            raise GraphError(400, "ErrorInvalidRequest", "The end time of the event must be after its start time.")
        if item.get("isAllDay"):
            midnight = datetime.min.time()
            if start_local.time() != midnight or end_local.time() != midnight or end_local <= start_local:
                raise GraphError(400, "ErrorInvalidRequest",
                                 "An all-day event must start and end at midnight in its time zone and last whole "
                                 "days.")
        item["start"] = {"dateTime": start_local.isoformat(), "timeZone": start_tz}
        item["end"] = {"dateTime": end_local.isoformat(), "timeZone": end_tz}
        item["_start"], item["_end"] = start_utc, end_utc
        item["originalStartTimeZone"], item["originalEndTimeZone"] = start_tz, end_tz
        recurrence = item.get("recurrence")
        if recurrence is not None:
            self._rule(item)  # validates
            item["type"] = "seriesMaster"
        else:
            item["type"] = "singleInstance"

    def _create(self, box: _Mailbox, calendar: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if calendar not in box.calendars:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        clean = self._clean_body(body, creating=True)
        transaction = clean.get("transactionId")
        if transaction:
            existing_id = box.transactions.get(transaction)
            if existing_id and existing_id in box.events:
                return box.events[existing_id], True
        event_id = "AAMkAG" + _b64url(secrets.token_bytes(30)) + "="
        props = clean.pop("singleValueExtendedProperties", None) or []
        body_value = clean.pop("body", None) or {"contentType": "html", "content": ""}
        item: dict[str, Any] = {
            "id": event_id,
            "createdDateTime": _stamp(),
            "lastModifiedDateTime": _stamp(),
            "changeKey": "",
            "categories": [],
            "transactionId": None,
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "uid": "040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": "",
            "bodyPreview": "",
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": False,
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": True,
            "seriesMasterId": None,
            "showAs": "busy",
            "type": "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={quote(event_id)}&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": False,
            "onlineMeetingProvider": "unknown",
            "allowNewTimeProposals": True,
            "isDraft": False,
            "hideAttendees": False,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": body_value,
            "start": None,
            "end": None,
            "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"},
            "locations": [],
            "recurrence": None,
            "attendees": [],
            "organizer": {"emailAddress": {"name": box.display_name, "address": box.upn}},
            "onlineMeeting": None,
        }
        item.update(clean)
        item["bodyPreview"] = _strip_html(str((item.get("body") or {}).get("content", "")))[:255]
        item["_calendar"] = calendar
        item["_props"] = [dict(p) for p in props]
        item["_exceptions"] = {}
        item["_cancelled"] = set()
        self._apply_times(item)
        self._bump(item)
        box.events[event_id] = item
        if transaction:
            box.transactions[transaction] = event_id
        self._emit(box, event_id, "created", item["changeKey"])
        return item, False

    def _resolve(self, box: _Mailbox, event_id: str) -> tuple[dict[str, Any], str | None]:
        """(stored item, occurrence key or None) for an event, occurrence or exception id."""
        item = box.events.get(event_id)
        if item is not None:
            return item, None
        match = _OCCURRENCE_ID.match(event_id)
        if match:
            master = box.events.get(match.group("master"))
            key = match.group("key")
            if master is not None and master.get("recurrence") and key not in master["_cancelled"]:
                if key in master["_exceptions"] or self._is_occurrence(master, key):
                    return master, key
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    @staticmethod
    def _check_etag(current_change_key: str, if_match: str | None) -> None:
        if if_match is None or if_match.strip() == "*":
            return
        candidates = {tag.strip() for tag in if_match.split(",")}
        accepted = {f'W/"{current_change_key}"', f'"{current_change_key}"', current_change_key}
        if not candidates & accepted:
            raise GraphError(412, "ErrorIrresolvableConflict",
                             "The send or update operation could not be performed because the change key passed in "
                             "the request does not match the current change key for the item.")

    def _patch(self, box: _Mailbox, event_id: str, body: dict[str, Any], *, if_match: str | None) -> dict[str, Any]:
        item, key = self._resolve(box, event_id)
        clean = self._clean_body(body, creating=False)
        clean.pop("transactionId", None)
        if key is not None:
            return self._patch_instance(box, item, key, clean, if_match)
        self._check_etag(item["changeKey"], if_match)
        candidate = copy.deepcopy(item)
        for name, value in clean.items():
            if name == "singleValueExtendedProperties":
                for prop in value or []:
                    wanted = _ext_key(prop["id"])
                    candidate["_props"] = [p for p in candidate["_props"] if _ext_key(p["id"]) != wanted]
                    candidate["_props"].append(dict(prop))
            else:
                candidate[name] = value
        if "body" in clean:
            candidate["bodyPreview"] = _strip_html(str((candidate.get("body") or {}).get("content", "")))[:255]
        self._apply_times(candidate)
        if _TIME_FIELDS & clean.keys():
            candidate["_exceptions"] = {}
            candidate["_cancelled"] = set()
        self._bump(candidate)
        box.events[item["id"]] = candidate
        self._emit(box, item["id"], "updated", candidate["changeKey"])
        return candidate

    def _patch_instance(self, box: _Mailbox, master: dict[str, Any], key: str, clean: dict[str, Any],
                        if_match: str | None) -> dict[str, Any]:
        if "recurrence" in clean or "singleValueExtendedProperties" in clean:
            raise GraphError(400, "ErrorInvalidRequest", "This property cannot be changed on an instance of a series.")
        current = self._instance(master, key)
        self._check_etag(current["changeKey"], if_match)
        override = copy.deepcopy(master["_exceptions"].get(key, {}))
        override.update(clean)
        probe = {**current, **override}
        probe["isAllDay"] = override.get("isAllDay", master["isAllDay"])
        if "start" in override or "end" in override:
            probe["start"] = override.get("start") or _render_time(current["_start"], master["start"]["timeZone"])
            probe["end"] = override.get("end") or _render_time(current["_end"], master["end"]["timeZone"])
            probe["recurrence"] = None
            self._apply_times(probe)
            override["start"], override["end"] = probe["start"], probe["end"]
            override["_start"], override["_end"] = probe["_start"], probe["_end"]
        self._bump(override)
        master["_exceptions"][key] = override
        self._next_seq()
        self._emit(box, master["id"], "updated", master["changeKey"])
        return self._instance(master, key)

    def _delete(self, box: _Mailbox, event_id: str, *, if_match: str | None) -> None:
        item, key = self._resolve(box, event_id)
        if key is not None:
            self._check_etag(self._instance(item, key)["changeKey"], if_match)
            item["_exceptions"].pop(key, None)
            item["_cancelled"].add(key)
            self._next_seq()
            self._emit(box, item["id"], "updated", item["changeKey"])
            return
        self._check_etag(item["changeKey"], if_match)
        del box.events[item["id"]]
        box.tombstones[item["id"]] = self._next_seq()
        self._emit(box, item["id"], "deleted", item["changeKey"])

    # ------------------------------------------------------------------------------------ recurrence
    def _rule(self, master: dict[str, Any]) -> rrule.rrule:
        recurrence = master.get("recurrence")
        if not isinstance(recurrence, dict):
            raise GraphError(400, "ErrorInvalidRequest", "recurrence must be a patternedRecurrence object.")
        pattern, rng = recurrence.get("pattern"), recurrence.get("range")
        if not isinstance(pattern, dict) or not isinstance(rng, dict):
            raise GraphError(400, "ErrorInvalidRequest", "A recurrence needs a pattern and a range.")
        days = {"sunday": rrule.SU, "monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE,
                "thursday": rrule.TH, "friday": rrule.FR, "saturday": rrule.SA}
        index = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
        try:
            interval = int(pattern.get("interval", 1) or 1)
            kind = pattern.get("type")
            start_local = datetime.fromisoformat(master["start"]["dateTime"])
            range_start = date.fromisoformat(rng.get("startDate") or start_local.date().isoformat())
            dtstart = datetime.combine(range_start, start_local.time())
            kwargs: dict[str, Any] = {"interval": interval, "dtstart": dtstart,
                                      "wkst": days[str(pattern.get("firstDayOfWeek") or "sunday").lower()]}
            weekdays = [days[str(d).lower()] for d in pattern.get("daysOfWeek") or []]
            nth = index[str(pattern.get("index") or "first").lower()]
            if kind == "daily":
                freq = rrule.DAILY
            elif kind == "weekly":
                if not weekdays:
                    raise ValueError("weekly recurrence needs daysOfWeek")
                freq, kwargs["byweekday"] = rrule.WEEKLY, weekdays
            elif kind == "absoluteMonthly":
                freq, kwargs["bymonthday"] = rrule.MONTHLY, int(pattern["dayOfMonth"])
            elif kind == "relativeMonthly":
                freq, kwargs["byweekday"] = rrule.MONTHLY, [d(nth) for d in weekdays]
            elif kind == "absoluteYearly":
                freq = rrule.YEARLY
                kwargs["bymonth"], kwargs["bymonthday"] = int(pattern["month"]), int(pattern["dayOfMonth"])
            elif kind == "relativeYearly":
                freq = rrule.YEARLY
                kwargs["bymonth"], kwargs["byweekday"] = int(pattern["month"]), [d(nth) for d in weekdays]
            else:
                raise ValueError(f"unsupported pattern type {kind!r}")
            range_type = rng.get("type")
            if range_type == "endDate":
                kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), datetime.max.time())
            elif range_type == "numbered":
                count = int(rng["numberOfOccurrences"])
                if count < 1:
                    raise ValueError("numberOfOccurrences must be positive")
                kwargs["count"] = count
            elif range_type != "noEnd":
                raise ValueError(f"unsupported range type {range_type!r}")
            if interval < 1:
                raise ValueError("interval must be positive")
            return rrule.rrule(freq, **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphError(400, "ErrorInvalidRequest", f"Invalid recurrence: {exc}") from exc

    def _occurrence_times(self, master: dict[str, Any], lo: datetime, hi: datetime) -> list[tuple[str, datetime,
                                                                                                    datetime]]:
        """(key, start UTC, end UTC) of the series' regular occurrences whose original times overlap [lo, hi)."""
        tz = zone(master["start"]["timeZone"])
        start_local = datetime.fromisoformat(master["start"]["dateTime"])
        end_local = datetime.fromisoformat(master["end"]["dateTime"])
        end_tz = zone(master["end"]["timeZone"])
        duration = end_local.replace(tzinfo=end_tz).astimezone(UTC) - start_local.replace(tzinfo=tz).astimezone(UTC)
        if master["isAllDay"]:
            duration = end_local - start_local
        lo_local = lo.astimezone(tz).replace(tzinfo=None) - duration - timedelta(days=1)
        hi_local = hi.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
        found = []
        for occurrence in self._rule(master).between(lo_local, hi_local, inc=True):
            start = occurrence.replace(tzinfo=tz).astimezone(UTC)
            end = ((occurrence + duration).replace(tzinfo=tz).astimezone(UTC) if master["isAllDay"]
                   else start + duration)
            if start < hi and (end > lo or (end == start and start >= lo)):
                found.append((start.strftime("%Y%m%dT%H%M%SZ"), start, end))
        return found

    def _is_occurrence(self, master: dict[str, Any], key: str) -> bool:
        instant = datetime.strptime(key, "%Y%m%dT%H%M%S%z")
        return any(k == key for k, _s, _e in self._occurrence_times(master, instant, instant + timedelta(seconds=1)))

    def _instance(self, master: dict[str, Any], key: str) -> dict[str, Any]:
        """An occurrence or exception of a series, as an internal item."""
        original = datetime.strptime(key, "%Y%m%dT%H%M%S%z")
        times = self._occurrence_times(master, original, original + timedelta(seconds=1))
        base_end = next((e for k, _s, e in times if k == key), None)
        if base_end is None:
            base_end = original + (master["_end"] - master["_start"])
        item = {k: v for k, v in master.items() if k not in ("_exceptions", "_cancelled", "_props")}
        item = copy.deepcopy(item)
        item.update({
            "id": f"{master['id']}_OCC{key}",
            "type": "occurrence",
            "seriesMasterId": master["id"],
            "recurrence": None,
            "originalStart": original.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "iCalUId": master["iCalUId"][:-16] + hashlib.sha1(key.encode()).hexdigest()[:16].upper(),
            "_start": original,
            "_end": base_end,
            "_version": master["_seq"],
        })
        override = master["_exceptions"].get(key)
        if override is not None:
            item.update(copy.deepcopy(override))
            item["type"] = "exception"
            item["_version"] = max(master["_seq"], override["_seq"])
        return item

    def _instances(self, box: _Mailbox, calendar: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        """All instances overlapping [lo, hi) in a calendar, sorted by start."""
        found: list[dict[str, Any]] = []
        for item in box.events.values():
            if item["_calendar"] != calendar:
                continue
            if item.get("recurrence") is None:
                if item["_start"] < hi and (item["_end"] > lo or (item["_end"] == item["_start"] >= lo)):
                    found.append({**item, "_version": item["_seq"]})
                continue
            keys = set()
            for key, _start, _end in self._occurrence_times(item, lo, hi):
                if key in item["_cancelled"] or key in item["_exceptions"]:
                    continue
                keys.add(key)
            for key, override in item["_exceptions"].items():
                if override.get("_start", datetime.strptime(key, "%Y%m%dT%H%M%S%z")) < hi:
                    keys.add(key)
            for key in keys:
                instance = self._instance(item, key)
                if instance["_start"] < hi and (instance["_end"] > lo or instance["_end"] == instance["_start"] >= lo):
                    found.append(instance)
        found.sort(key=lambda i: (i["_start"], i["id"]))
        return found

    # ------------------------------------------------------------------------------------ rendering
    def _render(self, box: _Mailbox, item: dict[str, Any], tz_name: str, *, expand: bool | str = False,
                select: list[str] | None = None, delta: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if delta:
            out["@odata.type"] = "#microsoft.graph.event"
        out["@odata.etag"] = f'W/"{item["changeKey"]}"'
        for key, value in item.items():
            if key.startswith("_"):
                continue
            out[key] = copy.deepcopy(value)
        out["start"] = _render_time(item["_start"], tz_name)
        out["end"] = _render_time(item["_end"], tz_name)
        if "originalStart" not in out and item.get("type") in ("occurrence", "exception"):
            out["originalStart"] = item.get("originalStart")
        if expand and not delta:
            props = item.get("_props")
            if props is None and item.get("seriesMasterId"):
                master = box.events.get(item["seriesMasterId"])
                props = master["_props"] if master else []
            props = props or []
            if isinstance(expand, str):
                wanted = _ext_key(expand)
                props = [p for p in props if _ext_key(p["id"]) == wanted]
            if props:
                out["singleValueExtendedProperties"] = [{"id": p["id"], "value": p["value"]} for p in props]
        if select:
            keep = {s.strip() for s in select} | {"id", "@odata.etag", "@odata.type", "singleValueExtendedProperties"}
            out = {k: v for k, v in out.items() if k in keep}
        return out

    # ------------------------------------------------------------------------------------ notifications
    def _emit(self, box: _Mailbox, event_id: str, change_type: str, change_key: str) -> None:
        """Queue change notifications for subscriptions on this mailbox (called under the lock)."""
        if not self.subscriptions:
            return
        now = _now()
        for sub in self.subscriptions.values():
            if sub["_mailbox"] != box.upn or change_type not in sub["_change_types"]:
                continue
            if sub["_calendar"] is not None and box.events.get(event_id, {}).get("_calendar", sub["_calendar"]) != \
                    sub["_calendar"]:
                continue
            if datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00")) <= now:
                continue
            resource = f"Users/{box.object_id}/Events/{event_id}"
            item = {
                "subscriptionId": sub["id"],
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "changeType": change_type,
                "resource": resource,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{change_key}"',
                    "id": event_id,
                },
                "clientState": sub.get("clientState"),
                "tenantId": self.tenant_id,
            }
            self._courier.put(_Outgoing(sub["notificationUrl"], {"value": [item]}, lifecycle=False))

    def _deliver(self, job: _Outgoing) -> NotificationDelivery | None:
        """Runs on the courier thread: POST with retries; a stopping fake drops what is still queued."""
        if self._stopping.is_set():
            return None
        record = NotificationDelivery(job.url, job.payload, job.lifecycle)
        data = json.dumps(job.payload).encode()
        for attempt in range(1 + max(0, self.notification_retries)):
            record.attempts = attempt + 1
            status, error = self._post(job.url, data, "application/json", self.notification_timeout)
            record.status, record.error = status, error
            if record.delivered or self._stopping.wait(self.notification_retry_delay):
                break
        return record

    def _post(self, url: str, data: bytes, content_type: str, timeout: float) -> tuple[int | None, str | None]:
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
        context = self.notification_ssl_context if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                response.read()
                return int(response.status), None
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code), f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return None, repr(exc)

    def _validate_endpoint(self, url: str) -> ValidationAttempt:
        """The notificationUrl handshake: POST ?validationToken=..., expect a 200 text/plain echo."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        separator = "&" if urlsplit(url).query else "?"
        target = f"{url}{separator}{urlencode({'validationToken': token}, quote_via=quote)}"
        request = urllib.request.Request(target, data=b"", method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8"})
        context = self.notification_ssl_context if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.validation_timeout,  # noqa: S310
                                        context=context) as response:
                status = int(response.status)
                body = response.read().decode("utf-8", "replace")
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            exc.close()
            attempt = ValidationAttempt(url, token, False, int(exc.code), f"HTTP {exc.code}")
        except (OSError, ValueError) as exc:
            attempt = ValidationAttempt(url, token, False, None, repr(exc))
        else:
            ok = status == 200 and body == token and content_type.lower().startswith("text/plain")
            detail = "" if ok else f"status={status} content-type={content_type!r} body={body[:200]!r}"
            attempt = ValidationAttempt(url, token, ok, status, detail)
        with self._lock:
            self.validations.append(attempt)
        return attempt

    # ------------------------------------------------------------------------------------ HTTP: graph dispatch
    def _authenticate(self, headers: Any) -> _Grant:
        auth = _header(headers, "Authorization") or ""
        scheme, _, token = auth.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                         'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'}
        if not token or scheme.lower() != "bearer":
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge)
        grant = self._access_tokens.get(token.strip())
        if grant is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.",
                             headers=challenge)
        if grant.expires_at <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.",
                             headers=challenge)
        return grant

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes, *, in_batch: bool) -> _Response:
        """One Graph call (top-level or a batch part); ``target`` starts with /v1.0/."""
        parts = urlsplit(target)
        path = parts.path
        user: str | None = None
        try:
            fault = self._faults.take_failure(path, ("part", "any") if in_batch else ("request", "any"))
            if fault is not None:
                raise GraphError(fault.status, fault.code, fault.message, headers=fault.retry_after_headers())
            rest = path.removeprefix("/v1.0").strip("/")
            segments = [unquote(s) for s in rest.split("/")] if rest else []
            query = {k.lower(): v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            with self._lock:
                grant = self._authenticate(headers)
                user = grant.user
            if [s.lower() for s in segments] == ["subscriptions"] and method == "POST":
                response = self._create_subscription(grant, body)
            else:
                with self._lock:
                    response, user = self._route(grant, method, path, segments, query, headers, body, parts.query)
        except GraphError as err:
            response = err.response()
        with self._lock:
            self.requests.append(RequestRecord(method, path, user, response.status, in_batch, "graph"))
        return response

    def _route(self, grant: _Grant, method: str, path: str, segments: list[str], query: dict[str, list[str]],
               headers: Any, body: bytes, raw_query: str) -> tuple[_Response, str | None]:
        lower = [s.lower() for s in segments]
        if lower and lower[0] == "subscriptions":
            return self._subscription_route(grant, method, segments, body), grant.user
        if not lower or lower[0] not in ("me", "users"):
            first = segments[0] if segments else ""
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{first}'.")
        if lower[0] == "me":
            if grant.kind != "user":
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            box = self._mailbox(grant.user or "", create=True)
            rest, rest_lower = segments[1:], lower[1:]
        else:
            if len(segments) < 2:
                raise GraphError(405, "Request_BadRequest", "Listing users is not implemented in the fake.")
            box = self._mailbox(segments[1], create=self.auto_create_users)
            if grant.kind == "user" and box.upn != grant.user:
                raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            rest, rest_lower = segments[2:], lower[2:]
        if box.blocked is not None:
            raise box.blocked
        tz_pref, page_pref = _prefer(headers)
        tz_name = tz_pref or "UTC"
        if tz_pref:
            zone(tz_pref)

        def payload() -> dict[str, Any]:
            return _json_body(body)

        def tz_headers(response: _Response) -> _Response:
            applied = []
            if tz_pref:
                applied.append(f'outlook.timezone="{tz_pref}"')
            if page_pref and "@odata.nextLink" in (response.body or {}):
                applied.append(f"odata.maxpagesize={page_pref}")
            if applied:
                response.headers["Preference-Applied"] = ", ".join(applied)
            return response

        # mailbox settings
        if rest_lower[:1] == ["mailboxsettings"]:
            return self._mailbox_settings(box, method, rest_lower[1:], payload), box.upn
        # calendar prefix
        calendar = box.primary_calendar
        if rest_lower[:1] == ["calendar"]:
            rest, rest_lower = rest[1:], rest_lower[1:]
            if not rest and method == "GET":
                return _Response(200, self._calendar_json(box, calendar)), box.upn
        elif rest_lower[:1] == ["calendars"]:
            if len(rest) == 1 and method == "GET":
                return _Response(200, {"value": [self._calendar_json(box, c) for c in box.calendars]}), box.upn
            if len(rest) < 2 or rest[1] not in box.calendars:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            calendar = rest[1]
            rest, rest_lower = rest[2:], rest_lower[2:]
            if not rest and method == "GET":
                return _Response(200, self._calendar_json(box, calendar)), box.upn
        if rest_lower[:1] == ["calendarview"]:
            if len(rest_lower) == 2 and rest_lower[1] in _DELTA_NAMES and method == "GET":
                return tz_headers(self._delta(box, calendar, f"{path}", query, raw_query, tz_name, page_pref)), box.upn
            if len(rest_lower) == 1 and method == "GET":
                return tz_headers(self._calendar_view(box, calendar, path, query, tz_name, page_pref)), box.upn
        if rest_lower[:1] == ["events"]:
            if len(rest) == 1:
                if method == "GET":
                    return tz_headers(self._list_events(box, calendar, path, query, tz_name, page_pref)), box.upn
                if method == "POST":
                    item, _existing = self._create(box, calendar, payload())
                    body_out = self._render(box, item, tz_name)
                    body_out["@odata.context"] = f"{self.graph_url}/$metadata#users('{box.object_id}')/events/$entity"
                    return tz_headers(_Response(201, body_out)), box.upn
            elif len(rest) == 2 and rest_lower[1] in _DELTA_NAMES:
                raise GraphError(400, "BadRequest", "Delta on events without a calendarView is beta-only.")
            elif len(rest) == 2:
                event_id = rest[1]
                if_match = _header(headers, "If-Match")
                if method == "GET":
                    item, key = self._resolve(box, event_id)
                    instance = self._instance(item, key) if key else item
                    out = self._render(box, instance, tz_name, expand=self._expand_arg(query),
                                       select=self._select_arg(query))
                    return tz_headers(_Response(200, out)), box.upn
                if method == "PATCH":
                    updated = self._patch(box, event_id, payload(), if_match=if_match)
                    return tz_headers(_Response(200, self._render(box, updated, tz_name))), box.upn
                if method == "DELETE":
                    self._delete(box, event_id, if_match=if_match)
                    return _Response(204), box.upn
            elif len(rest) == 3 and rest_lower[2] == "instances" and method == "GET":
                item, key = self._resolve(box, rest[1])
                lo, hi = self._window(query)
                found = [i for i in self._instances(box, item["_calendar"], lo, hi)
                         if i.get("seriesMasterId") == item["id"]] if key is None else []
                return tz_headers(self._page(box, found, path, query, tz_name, page_pref)), box.upn
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{'/'.join(rest) or path}'.")

    def _calendar_json(self, box: _Mailbox, calendar: str) -> dict[str, Any]:
        return {
            "id": calendar,
            "name": box.calendars[calendar],
            "isDefaultCalendar": calendar == box.primary_calendar,
            "canEdit": True,
            "owner": {"name": box.display_name, "address": box.upn},
        }

    def _mailbox_settings(self, box: _Mailbox, method: str, rest: list[str],
                          payload: Callable[[], dict[str, Any]]) -> _Response:
        context = f"{self.graph_url}/$metadata#users('{box.object_id}')/mailboxSettings"
        if method == "PATCH" and not rest:
            changes = payload()
            unknown = set(changes) - set(box.settings) - {"@odata.context"}
            if unknown:
                raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not exist on type "
                                                         f"'microsoft.graph.mailboxSettings'.")
            if "timeZone" in changes:
                zone(changes["timeZone"])
            for key, value in changes.items():
                if key == "@odata.context":
                    continue
                if isinstance(value, dict) and isinstance(box.settings.get(key), dict):
                    box.settings[key].update(copy.deepcopy(value))
                else:
                    box.settings[key] = copy.deepcopy(value)
            return _Response(200, {"@odata.context": context, **copy.deepcopy(box.settings)})
        if method != "GET":
            raise GraphError(405, "ErrorInvalidRequest", "The OData request is not supported.")
        if not rest:
            return _Response(200, {"@odata.context": context, **copy.deepcopy(box.settings)})
        names = {k.lower(): k for k in box.settings}
        if len(rest) == 1 and rest[0] in names:
            value = copy.deepcopy(box.settings[names[rest[0]]])
            if isinstance(value, dict):
                return _Response(200, {"@odata.context": f"{context}/{names[rest[0]]}", **value})
            return _Response(200, {"@odata.context": f"{context}/{names[rest[0]]}", "value": value})
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{'/'.join(rest)}'.")

    # ------------------------------------------------------------------------------------ listing
    @staticmethod
    def _one(query: dict[str, list[str]], name: str) -> str | None:
        values = query.get(name.lower())
        return values[-1] if values else None

    def _expand_arg(self, query: dict[str, list[str]]) -> bool | str:
        expand = self._one(query, "$expand")
        if expand is None:
            return False
        match = _EXPAND.match(expand)
        if not match:
            raise GraphError(400, "BadRequest", f"Parsing OData Select and Expand failed: '{expand}' is not supported "
                                                f"by the fake.")
        return _odata_string(match.group(1)) if match.group(1) is not None else True

    def _select_arg(self, query: dict[str, list[str]]) -> list[str] | None:
        select = self._one(query, "$select")
        return select.split(",") if select else None

    def _window(self, query: dict[str, list[str]]) -> tuple[datetime, datetime]:
        start, end = self._one(query, "startDateTime"), self._one(query, "endDateTime")
        if not start or not end:
            raise GraphError(400, "ErrorInvalidParameter", "This request requires a time window specified by the "
                                                           "query string parameters StartDateTime and EndDateTime.")
        lo, hi = _parse_query_instant(start, "startDateTime"), _parse_query_instant(end, "endDateTime")
        if hi < lo:
            raise GraphError(400, "ErrorInvalidParameter", "The end of the time window is before its start.")
        return lo, hi

    def _page(self, box: _Mailbox, items: list[dict[str, Any]], path: str, query: dict[str, list[str]],
              tz_name: str, page_pref: int | None, *, expand: bool | str = False) -> _Response:
        top = self._one(query, "$top")
        skip = int(self._one(query, "$skip") or 0)
        size = int(top) if top else (page_pref or self.default_page_size)
        if size < 1:
            raise GraphError(400, "BadRequest", "Invalid $top value.")
        select = self._select_arg(query)
        window = items[skip: skip + size]
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#users('{box.object_id}')/events",
            "value": [self._render(box, i, tz_name, expand=expand, select=select) for i in window],
        }
        if skip + size < len(items):
            params = {k: v[-1] for k, v in query.items() if k != "$skip"}
            params["$skip"] = str(skip + size)
            if not top:
                params["$top"] = str(size)
            body["@odata.nextLink"] = f"{self.base_url}{path}?{urlencode(params, quote_via=quote, safe='$')}"
        return _Response(200, body)

    def _calendar_view(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], tz_name: str,
                       page_pref: int | None) -> _Response:
        lo, hi = self._window(query)
        return self._page(box, self._instances(box, calendar, lo, hi), path, query, tz_name, page_pref,
                          expand=self._expand_arg(query))

    def _list_events(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], tz_name: str,
                     page_pref: int | None) -> _Response:
        items = [e for e in box.events.values() if e["_calendar"] == calendar]
        flt = self._one(query, "$filter")
        if flt:
            matcher = self._filter(flt)
            items = [e for e in items if matcher(e)]
        return self._page(box, items, path, query, tz_name, page_pref, expand=self._expand_arg(query))

    def _filter(self, text: str) -> Callable[[dict[str, Any]], bool]:
        """``singleValueExtendedProperties/any(ep: ep/id eq '...' [and <value condition>])``."""
        match = _FILTER_ANY.match(text)
        unsupported = GraphError(400, "ErrorInvalidUrlQueryFilter",
                                 f"The fake only supports extended-property filters, not '{text}'.")
        if not match:
            raise unsupported
        alias, body = re.escape(match.group(1)), match.group(2).strip()
        id_part = re.match(rf"^{alias}/id\s+eq\s+{_STRING}\s*(?:and\s+(.*))?$", body, re.IGNORECASE)
        if not id_part:
            raise unsupported
        wanted = _ext_key(_odata_string(id_part.group(1)))
        condition = (id_part.group(2) or "").strip()
        test: Callable[[str], bool]
        if not condition:
            def test(value: str) -> bool:
                return True
        elif m := re.match(rf"^{alias}/value\s+(eq|ne)\s+{_STRING}$", condition, re.IGNORECASE):
            op, literal = m.group(1).lower(), _odata_string(m.group(2)).lower()

            def test(value: str) -> bool:
                return (value.lower() == literal) == (op == "eq")
        elif m := re.match(rf"^(contains|startswith)\(\s*{alias}/value\s*,\s*{_STRING}\s*\)$", condition,
                           re.IGNORECASE):
            fn, literal = m.group(1).lower(), _odata_string(m.group(2)).lower()

            def test(value: str) -> bool:
                return literal in value.lower() if fn == "contains" else value.lower().startswith(literal)
        else:
            raise unsupported

        def matcher(item: dict[str, Any]) -> bool:
            return any(_ext_key(p["id"]) == wanted and test(p["value"]) for p in item["_props"])

        return matcher

    # ------------------------------------------------------------------------------------ delta
    def _delta(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], raw_query: str,
               tz_name: str, page_pref: int | None) -> _Response:
        for name in ("$select", "$filter", "$expand", "$orderby", "$search"):
            if name in query:
                raise GraphError(400, "ErrorInvalidUrlQuery", f"The query parameter '{name}' is not supported with "
                                                              f"change tracking over a calendarView.")
        size = max(1, page_pref or self.default_page_size)
        skip_token = self._one(query, "$skiptoken")
        delta_token = self._one(query, "$deltatoken")
        if skip_token is not None:
            round_id, _, offset_text = skip_token.rpartition(".")
            round_ = box.rounds.get(round_id)
            if round_ is None or not offset_text.isdigit():
                raise self._gone(box, round_id, path, None)
            return self._serve_round(box, round_id, round_, int(offset_text), size, tz_name)
        if delta_token:
            state = box.delta_tokens.get(delta_token)
            if state is None:
                raise self._gone(box, delta_token, path, None)
            if state.calendar != calendar:
                raise self._gone(box, delta_token, path, state)
            current = self._instances(box, calendar, state.start, state.end)
            items: list[dict[str, Any]] = []
            seen: set[str] = set()
            for inst in current:
                seen.add(inst["id"])
                if state.snapshot.get(inst["id"]) != inst["_version"]:
                    items.append(inst)
            for gone_id in state.snapshot:
                if gone_id not in seen:
                    items.append(self._removed(gone_id))
            if self.report_out_of_window_changes:
                reported = {i["id"] for i in items}
                for item in box.events.values():
                    if item["_calendar"] == calendar and item["_seq"] > state.seq and item["id"] not in seen \
                            and item["id"] not in reported and not any(s.startswith(item["id"]) for s in seen):
                        items.append(self._removed(item["id"]))
                for gone_id, seq in box.tombstones.items():
                    if seq > state.seq and gone_id not in reported \
                            and not any(s.startswith(gone_id) for s in state.snapshot):
                        items.append(self._removed(gone_id))
            new_state = _DeltaState(calendar, state.start, state.end, state.base, state.query,
                                    {i["id"]: i["_version"] for i in current}, self._seq)
        else:
            lo, hi = self._window(query)
            current = self._instances(box, calendar, lo, hi)
            items = current
            new_state = _DeltaState(calendar, lo, hi, path, raw_query, {i["id"]: i["_version"] for i in current},
                                    self._seq)
        round_id = secrets.token_urlsafe(18)
        round_ = _Round(new_state, items)
        box.rounds[round_id] = round_
        while len(box.rounds) > self.delta_token_cache:
            box.rounds.popitem(last=False)
        return self._serve_round(box, round_id, round_, 0, size, tz_name)

    @staticmethod
    def _removed(event_id: str) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.event", "id": event_id, "@removed": {"reason": "deleted"}}

    def _serve_round(self, box: _Mailbox, round_id: str, round_: _Round, offset: int, size: int,
                     tz_name: str) -> _Response:
        page = round_.items[offset: offset + size]
        path = round_.state.base
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(event)",
            "value": [dict(i) if "@removed" in i else self._render(box, i, tz_name, delta=True) for i in page],
        }
        if offset + size < len(round_.items):
            body["@odata.nextLink"] = f"{self.base_url}{path}?$skiptoken={round_id}.{offset + size}"
        else:
            token_id = f"{round_id}d"  # the same round always ends in the same token
            if token_id not in box.delta_tokens:
                box.delta_tokens[token_id] = round_.state
                while len(box.delta_tokens) > self.delta_token_cache:
                    box.delta_tokens.popitem(last=False)
            body["@odata.deltaLink"] = f"{self.base_url}{path}?$deltatoken={token_id}"
        return _Response(200, body)

    def _gone(self, box: _Mailbox, token: str, path: str, state: _DeltaState | None) -> GraphError:
        status, code, expired_state = box.expired_tokens.get(token, (410, "syncStateNotFound", state))
        state = state or expired_state
        location = f"{self.base_url}{state.base}?{state.query}" if state else f"{self.base_url}{path}?$deltatoken="
        message = ("The delta token is no longer valid; restart change tracking with a full synchronization."
                   if code != "syncStateNotFound" else "The sync state for this delta token was not found.")
        return GraphError(status, code, message, headers={"Location": location} if status == 410 else {})

    # ------------------------------------------------------------------------------------ subscriptions
    def _parse_resource(self, grant: _Grant, resource: str) -> tuple[_Mailbox, str | None]:
        text = resource.strip().strip("/")
        lowered = text.lower()
        match = re.match(r"^(?:me|users/([^/]+))(?:/calendars/([^/]+))?/events$", text, re.IGNORECASE)
        if not match or lowered.endswith("/messages"):
            raise GraphError(400, "InvalidRequest", f"Resource '{resource}' is not supported by the fake for "
                                                    f"change notifications.")
        if match.group(1) is None:
            if grant.kind != "user":
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            box = self._mailbox(grant.user or "", create=True)
        else:
            box = self._mailbox(unquote(match.group(1)), create=self.auto_create_users)
            if grant.kind == "user" and box.upn != grant.user:
                raise GraphError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                                                        "Reason: Access is denied.]")
        calendar = match.group(2)
        if calendar is not None and calendar not in box.calendars:
            raise GraphError(404, "ResourceNotFound", "The calendar was not found.")
        return box, calendar

    @staticmethod
    def _parse_expiration(value: Any) -> datetime:
        if not isinstance(value, str):
            raise GraphError(400, "InvalidRequest", "expirationDateTime is required.")
        try:
            parsed = _parse_wall(value)
        except ValueError as exc:
            raise GraphError(400, "InvalidRequest", f"Invalid expirationDateTime '{value}'.") from exc
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        now = _now()
        if parsed <= now:
            raise GraphError(400, "InvalidRequest", "Subscription expiration can only be in the future.")
        if parsed > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise GraphError(400, "InvalidRequest", f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} "
                                                    f"minutes in the future.")
        return parsed

    def _create_subscription(self, grant: _Grant, body: bytes) -> _Response:
        data = _json_body(body)
        for required in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not data.get(required):
                raise GraphError(400, "InvalidRequest", f"The property '{required}' is required.")
        change_types = [c.strip() for c in str(data["changeType"]).split(",") if c.strip()]
        if not change_types or any(c not in ("created", "updated", "deleted") for c in change_types):
            raise GraphError(400, "InvalidRequest", f"Invalid changeType '{data['changeType']}'.")
        client_state = data.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters.")
        urls = [data["notificationUrl"]] + ([data["lifecycleNotificationUrl"]]
                                            if data.get("lifecycleNotificationUrl") else [])
        for url in urls:
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise GraphError(400, "InvalidRequest", f"Invalid notification url '{url}'.")
        expiration = self._parse_expiration(data["expirationDateTime"])
        with self._lock:
            box, calendar = self._parse_resource(grant, str(data["resource"]))
            if box.blocked is not None:
                raise box.blocked
        for url in dict.fromkeys(urls):  # the handshake, without holding the lock
            attempt = self._validate_endpoint(url)
            if not attempt.ok:
                raise GraphError(400, "ValidationError", f"Subscription validation request failed. Notification "
                                                         f"endpoint must respond with 200 OK to validation request. "
                                                         f"({url}: {attempt.detail})")
        subscription_id = str(uuid.uuid4())
        sub = {
            "@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity",
            "id": subscription_id,
            "resource": data["resource"],
            "applicationId": grant.client_id,
            "changeType": ",".join(change_types),
            "clientState": client_state,
            "notificationUrl": data["notificationUrl"],
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": data.get("lifecycleNotificationUrl"),
            "expirationDateTime": _stamp(expiration),
            "creatorId": box.object_id if grant.kind == "user" else grant.client_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": data.get("latestSupportedTlsVersion", "v1_2"),
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
            "_mailbox": box.upn,
            "_calendar": calendar,
            "_change_types": change_types,
        }
        with self._lock:
            self.subscriptions[subscription_id] = sub
        return _Response(201, self._public_subscription(sub))

    @staticmethod
    def _public_subscription(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in sub.items() if not k.startswith("_")}

    def _subscription_route(self, grant: _Grant, method: str, segments: list[str], body: bytes) -> _Response:
        if len(segments) == 1 and method == "GET":
            mine = [self._public_subscription(s) for s in self.subscriptions.values()
                    if s["applicationId"] == grant.client_id]
            return _Response(200, {"@odata.context": f"{self.graph_url}/$metadata#subscriptions", "value": mine})
        if len(segments) < 2:
            raise GraphError(405, "BadRequest", "Method not allowed.")
        sub = self.subscriptions.get(segments[1])
        if sub is None or sub["applicationId"] != grant.client_id:
            raise GraphError(404, "ResourceNotFound", f"The object was not found. Subscription '{segments[1]}' "
                                                      f"doesn't exist.")
        if len(segments) == 3 and segments[2].lower() == "reauthorize" and method == "POST":
            return _Response(204)
        if len(segments) != 2:
            raise GraphError(400, "BadRequest", "Unsupported subscription segment.")
        if method == "GET":
            return _Response(200, self._public_subscription(sub))
        if method == "DELETE":
            del self.subscriptions[segments[1]]
            return _Response(204)
        if method == "PATCH":
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
            if not isinstance(data, dict) or set(data) - {"expirationDateTime", "notificationUrl"}:
                raise GraphError(400, "InvalidRequest", "Only expirationDateTime and notificationUrl can be updated.")
            if "expirationDateTime" in data:
                sub["expirationDateTime"] = _stamp(self._parse_expiration(data["expirationDateTime"]))
            if "notificationUrl" in data:
                sub["notificationUrl"] = data["notificationUrl"]
            return _Response(200, self._public_subscription(sub))
        raise GraphError(405, "BadRequest", "Method not allowed.")

    # ------------------------------------------------------------------------------------ batch
    def _batch(self, headers: Any, body: bytes) -> _Response:
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.") from exc
        requests_ = data.get("requests") if isinstance(data, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise GraphError(400, "BadRequest", "Invalid batch payload format: 'requests' is required.")
        if len(requests_) > self.batch_limit:
            raise GraphError(400, "BadRequest", f"The number of requests in the batch ({len(requests_)}) exceeds "
                                                f"the limit of {self.batch_limit}.")
        seen: dict[str, int] = {}
        for part in requests_:
            if not isinstance(part, dict) or not all(isinstance(part.get(k), str) for k in ("id", "method", "url")):
                raise GraphError(400, "BadRequest", "Each batch request needs string 'id', 'method' and 'url'.")
            if part["id"].lower() in seen:
                raise GraphError(400, "BadRequest", f"Batch request ids must be unique; '{part['id']}' is repeated.")
            seen[part["id"].lower()] = 0
            if part.get("body") is not None and not any(k.lower() == "content-type"
                                                        for k in (part.get("headers") or {})):
                raise GraphError(400, "BadRequest", f"Batch request '{part['id']}' has a body but no Content-Type "
                                                    f"header.")
            for dep in part.get("dependsOn") or []:
                if str(dep).lower() not in seen or str(dep).lower() == part["id"].lower():
                    raise GraphError(400, "BadRequest", f"dependsOn of '{part['id']}' must name an earlier request.")
            if urlsplit(part["url"]).scheme:
                raise GraphError(400, "BadRequest", "Batch request urls must be relative.")
        statuses: dict[str, int] = {}
        responses = []
        for part in requests_:
            failed = [d for d in part.get("dependsOn") or [] if not 200 <= statuses.get(str(d).lower(), 0) < 300]
            if failed:
                err = GraphError(424, "FailedDependency", f"Dependency '{failed[0]}' failed.")
                result = err.response()
            else:
                inner_headers = {str(k): str(v) for k, v in (part.get("headers") or {}).items()}
                if not any(k.lower() == "authorization" for k in inner_headers):
                    outer = _header(headers, "Authorization")
                    if outer:
                        inner_headers["Authorization"] = outer
                raw = part.get("body")
                if raw is None:
                    inner_body = b""
                elif isinstance(raw, str):
                    try:
                        inner_body = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_")
                    except ValueError:
                        inner_body = raw.encode()
                else:
                    inner_body = json.dumps(raw).encode()
                url = part["url"].lstrip("/")
                if url.lower().startswith("v1.0/"):
                    url = url[5:]
                if url.lower().startswith("$batch"):
                    result = GraphError(400, "BadRequest", "Nested batches are not supported.").response()
                else:
                    result = self._dispatch(part["method"].upper(), f"/v1.0/{url}", inner_headers, inner_body,
                                            in_batch=True)
            statuses[part["id"].lower()] = result.status
            entry: dict[str, Any] = {"id": part["id"], "status": result.status}
            entry_headers = dict(result.headers)
            if result.body is not None:
                entry_headers.setdefault("Content-Type", _Response.json_content_type)
                entry["body"] = result.body
            entry["headers"] = entry_headers
            responses.append(entry)
        return _Response(200, {"responses": responses})

    # ------------------------------------------------------------------------------------ identity endpoints
    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id.lower(), self.tenant_domain.lower(), "organizations", "common")

    def _openid_configuration(self, tenant: str) -> _Response:
        if not self._tenant_ok(tenant):
            return _OAuthError(400, "invalid_tenant", 90002,
                               f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
                               f"are signing into the correct cloud.").response()
        root = f"{self.base_url}/{self.tenant_id}"
        return _Response(200, {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.graph_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "tid", "oid",
                                 "preferred_username"],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "127.0.0.1",
            "cloud_graph_host_name": "127.0.0.1",
            "msgraph_host": urlsplit(self.base_url).netloc,
            "rbac_url": self.base_url,
        })

    def _instance_discovery(self) -> _Response:
        host = urlsplit(self.base_url).netloc
        return _Response(200, {
            "tenant_discovery_endpoint": f"{self.base_url}/{self.tenant_id}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })

    def _token(self, tenant: str, headers: Any, body: bytes) -> _Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.token_requests.append(dict(form))
            try:
                return self._token_grant(tenant, headers, form)
            except _OAuthError as err:
                return err.response()

    def _token_grant(self, tenant: str, headers: Any, form: dict[str, str]) -> _Response:
        if not self._tenant_ok(tenant) or tenant.lower() in ("common", "organizations"):
            raise _OAuthError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = _header(headers, "Authorization") or ""
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode()
            except ValueError as exc:
                raise _OAuthError(401, "invalid_client", 7000215, "Invalid client secret provided.") from exc
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        if not client_id:
            raise _OAuthError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'client_id'.")
        app = self._apps.get(client_id)
        if app is None:
            raise _OAuthError(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory "
                              f"'{self.tenant_domain}'.")
        assertion = form.get("client_assertion")
        if assertion:
            self._check_assertion(app, form.get("client_assertion_type", ""), assertion)
        elif secret is not None:
            if app.secret is None or not secrets.compare_digest(secret, app.secret):
                raise _OAuthError(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure the secret being sent in the request is "
                                  "the client secret value, not the client secret ID.")
        else:
            raise _OAuthError(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: 'client_assertion' or "
                              "'client_secret'.")
        grant_type = form.get("grant_type")
        scopes = form.get("scope", "").split()
        if grant_type == "client_credentials":
            if not scopes:
                raise _OAuthError(400, "invalid_request", 900144,
                                  "The request body must contain the following parameter: 'scope'.")
            if any(not s.endswith("/.default") for s in scopes):
                raise _OAuthError(400, "invalid_scope", 1002012,
                                  f"The provided value for scope {' '.join(scopes)} is not valid. Client credential "
                                  f"flows must have a scope value with /.default suffixed to the resource identifier "
                                  f"(application ID URI).")
            if any(s.rstrip("/").removesuffix("/.default").rstrip("/") != GRAPH_RESOURCE for s in scopes):
                raise _OAuthError(400, "invalid_resource", 500011,
                                  f"The resource principal named {scopes[0].removesuffix('/.default')} was not found "
                                  f"in the tenant named {self.tenant_domain}.")
            token = self._issue(None, client_id)
            return _Response(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                                   "ext_expires_in": self.token_lifetime, "access_token": token})
        if grant_type == "refresh_token":
            presented = form.get("refresh_token", "")
            record = self._refresh_tokens.get(presented)
            if record is None or (record.client_id is not None and record.client_id != client_id):
                raise _OAuthError(400, "invalid_grant", 9002313,
                                  "Invalid request. Request is malformed or invalid.")
            if record.revoked is not None:
                description = {
                    50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
                           "The user might have changed or reset their password.",
                    700082: "The refresh token has expired due to inactivity.",
                    70008: "The provided authorization code or refresh token has expired due to inactivity.",
                }.get(record.revoked, "The refresh token is no longer valid.")
                raise _OAuthError(400, "invalid_grant", record.revoked, description, suberror="bad_token")
            resource_scopes = [s for s in scopes if s not in ("openid", "profile", "offline_access")]
            if resource_scopes and any(not s.startswith(GRAPH_RESOURCE) for s in resource_scopes):
                raise _OAuthError(400, "invalid_scope", 70011, f"The provided value for the input parameter 'scope' "
                                                               f"is not valid: {' '.join(resource_scopes)}.")
            box = self._mailbox(record.user, create=True)
            new_refresh = "0.AAAA" + _b64url(secrets.token_bytes(48))
            self._refresh_tokens[new_refresh] = _RefreshToken(record.user, client_id, record.family)
            out: dict[str, Any] = {
                "token_type": "Bearer",
                "scope": " ".join(resource_scopes or [GRAPH_DEFAULT_SCOPE]),
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": self._issue(record.user, client_id),
                "refresh_token": new_refresh,
                "client_info": _b64url(json.dumps({"uid": box.object_id, "utid": self.tenant_id}).encode()),
            }
            if "openid" in scopes:
                now = int(time.time())
                claims = {"aud": client_id, "iss": f"{self.base_url}/{self.tenant_id}/v2.0", "iat": now, "nbf": now,
                          "exp": now + 3600, "name": box.display_name, "oid": box.object_id,
                          "preferred_username": box.upn, "sub": _b64url(box.object_id.encode()), "tid": self.tenant_id,
                          "ver": "2.0"}
                out["id_token"] = ".".join([_b64url(b'{"typ":"JWT","alg":"RS256","kid":"fake"}'),
                                            _b64url(json.dumps(claims).encode()), _b64url(b"not-signed")])
            return _Response(200, out)
        raise _OAuthError(400, "unsupported_grant_type", 70003,
                          f"The app requested an unsupported grant type '{grant_type}'.")

    def _check_assertion(self, app: _App, assertion_type: str, assertion: str) -> None:
        if assertion_type != CLIENT_ASSERTION_JWT:
            raise _OAuthError(400, "invalid_request", 90024, "The client_assertion_type is not supported.")
        if app.certificate_pem is None:
            raise _OAuthError(401, "invalid_client", 700027, "The certificate with identifier used to sign the client "
                                                             "assertion is not registered on application.")
        import jwt  # PyJWT, installed with msal
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        certificate = x509.load_pem_x509_certificate(app.certificate_pem)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise _OAuthError(401, "invalid_client", 700027, "Client assertion contains an invalid header.") from exc
        thumbs = {_b64url(certificate.fingerprint(hashes.SHA256())), _b64url(certificate.fingerprint(hashes.SHA1()))}
        presented = {str(header.get(name) or "").rstrip("=") for name in ("x5t#S256", "x5t")}  # msal pads them
        if not presented & thumbs:
            raise _OAuthError(401, "invalid_client", 700027, "The certificate with identifier used to sign the client "
                                                             "assertion is not registered on application.")
        try:
            claims = jwt.decode(assertion, certificate.public_key(), algorithms=["PS256", "RS256"],  # type: ignore[arg-type]
                                audience=self.token_endpoint, options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise _OAuthError(401, "invalid_client", 700024, "Client assertion is not within its valid time "
                                                             "range.") from exc
        except jwt.PyJWTError as exc:
            raise _OAuthError(401, "invalid_client", 700027, f"Client assertion failed signature validation: "
                                                             f"{exc}.") from exc
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise _OAuthError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match "
                                                             "'client_id' parameter.")

    # ------------------------------------------------------------------------------------ control namespace
    def _control(self, command: str, body: bytes) -> _Response:
        try:
            args = json_object(body, name="arguments")
            handler = _CONTROL.get(command)
            if handler is None:
                return _Response(404, {"error": f"unknown command {command!r}", "commands": sorted(_CONTROL)})
            return _Response(200, {"result": handler(self, args)})
        except (KeyError, TypeError, ValueError, GraphError) as exc:
            return _Response(400, {"error": repr(exc)})


def _control_add_events(fake: FakeGraph, args: dict[str, Any]) -> list[str]:
    ids = []
    for entry in args["events"]:
        ids.append(fake.add_event(entry["user"], entry["event"], calendar=entry.get("calendar"))["id"])
    return ids


_CONTROL: dict[str, Callable[[FakeGraph, dict[str, Any]], Any]] = {
    "add_user": lambda f, a: f.add_user(a["user"], time_zone=a.get("time_zone")),
    "add_users": lambda f, a: [f.add_user(u) for u in a["users"]],
    "add_event": lambda f, a: f.add_event(a["user"], a["event"], calendar=a.get("calendar")),
    "add_events": _control_add_events,
    "edit_event": lambda f, a: f.edit_event(a["user"], a["event_id"], a["changes"]),
    "delete_event": lambda f, a: f.delete_event(a["user"], a["event_id"]),
    "events": lambda f, a: f.events(a["user"]),
    "expire_delta_tokens": lambda f, a: f.expire_delta_tokens(a["user"], status=int(a.get("status", 410)),
                                                              code=a.get("code", "resyncRequired")),
    "set_latency": lambda f, a: setattr(f, "latency", float(a["seconds"])),
    "request_counts": lambda f, a: f.request_counts(),
    "reset_counts": lambda f, a: f.reset_counts(),
    "add_refresh_token": lambda f, a: f.add_refresh_token(a["refresh_token"], a["user"],
                                                          client_id=a.get("client_id")),
    "revoke_refresh_token": lambda f, a: f.revoke_refresh_token(a["refresh_token"]),
    "invalidate_access_tokens": lambda f, a: f.invalidate_access_tokens(a.get("user")),
    "set_mailbox_time_zone": lambda f, a: f.set_mailbox_time_zone(a["user"], a["time_zone"]),
    "set_automatic_replies": lambda f, a: f.set_automatic_replies(
        a["user"], a["status"], a.get("start"), a.get("end"), time_zone=a.get("time_zone", "UTC")),
    "fail_next": lambda f, a: f.fail_next(int(a["n"]), int(a["status"]), a["code"], a.get("retry_after"),
                                          where=a.get("where", "request"), path_contains=a.get("path_contains", "")),
    "slow_next": lambda f, a: f.slow_next(int(a["n"]), float(a["seconds"]), where=a.get("where", "request")),
    "drop_next": lambda f, a: f.drop_next(int(a["n"]), where=a.get("where", "request")),
    "block_mailbox": lambda f, a: f.block_mailbox(a["user"], int(a.get("status", 403)),
                                                  a.get("code", "ErrorAccessDenied")),
    "unblock_mailbox": lambda f, a: f.unblock_mailbox(a["user"]),
    "send_lifecycle_notification": lambda f, a: f.send_lifecycle_notification(a["subscription_id"], a["event"]),
    "notifications": lambda f, a: [{"url": n.url, "payload": n.payload, "status": n.status} for n in f.notifications],
    "subscriptions": lambda f, a: [FakeGraph._public_subscription(s) for s in f.subscriptions.values()],
}


class _TLSServer(LoopbackServer):
    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        self.ssl_context = context
        super().__init__(port, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # the TLS handshake happens in the handler thread, so a slow client cannot stall accept()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class _Handler(FakeRequestHandler):
    server_fake: FakeGraph
    timeout = 30

    def respond(self, path: str, body: bytes) -> None:
        fake = self.server_fake
        segments = [s for s in path.split("/") if s]
        if segments[:1] == ["_fake"] and len(segments) == 2 and self.command == "POST":
            self.send(fake._control(segments[1], body))
            return
        if fake.latency:
            time.sleep(fake.latency)
        kind = "graph"
        if segments[:1] != ["v1.0"]:
            kind = "token" if segments[1:] == ["oauth2", "v2.0", "token"] else "discovery"
        where = "token" if kind == "token" else "request"
        drop = fake._faults.take_drop(path, (where,)) if kind != "discovery" else None
        slow = fake._faults.take_delay(path, (where,)) if kind != "discovery" and drop is None else None
        if drop is not None:
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, 0, False, kind))
            self.close_connection = True
            return
        if slow is not None:
            time.sleep(slow.seconds)
        try:
            response = self._route(fake, kind, segments, path, body)
        except GraphError as err:
            response = err.response()
        except Exception as exc:  # noqa: BLE001 - a bug in the fake should be a visible 500
            response = GraphError(500, "InternalServerError", f"fake crashed: {exc!r}").response()
        self.send(response)

    def _route(self, fake: FakeGraph, kind: str, segments: list[str], path: str, body: bytes) -> _Response:
        if kind == "token":
            fault = fake._faults.take_failure(path, ("token",))
            if fault is not None:
                response = _OAuthError(fault.status, fault.code, 50000, fault.message).response()
                response.headers.update(fault.retry_after_headers())
            elif self.command != "POST":
                response = _OAuthError(405, "invalid_request", 900561, "The endpoint only accepts POST requests.") \
                    .response()
            else:
                response = fake._token(segments[0], self.headers, body)
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "token"))
            return response
        if kind == "discovery":
            if segments[-2:] == [".well-known", "openid-configuration"] and len(segments) == 4 \
                    and segments[1] == "v2.0":
                response = fake._openid_configuration(segments[0])
            elif segments == ["common", "discovery", "instance"]:
                response = fake._instance_discovery()
            elif segments[1:] == ["discovery", "v2.0", "keys"]:
                response = _Response(200, {"keys": []})
            else:
                response = GraphError(404, "NotFound", f"No such endpoint {path}").response()
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "discovery"))
            return response
        if segments == ["v1.0", "$batch"] and self.command == "POST":
            fault = fake._faults.take_failure(path, ("request",))
            if fault is not None:
                response = GraphError(fault.status, fault.code, fault.message,
                                      headers=fault.retry_after_headers()).response()
            else:
                try:
                    with fake._lock:
                        fake._authenticate(self.headers)
                    response = fake._batch(self.headers, body)
                except GraphError as err:
                    response = err.response()
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "batch"))
            return response
        return fake._dispatch(self.command, self.path, self.headers, body, in_batch=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Microsoft identity platform + Graph server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    fake = FakeGraph(tenant_id=args.tenant_id, client_id=args.client_id, client_secret=args.client_secret,
                     latency=args.latency, token_lifetime=args.token_lifetime, port=args.port)
    return serve_until_signalled(fake.start, fake.stop, lambda: f"READY {fake.base_url} {fake.ca_bundle_path}")


if __name__ == "__main__":
    sys.exit(main())
