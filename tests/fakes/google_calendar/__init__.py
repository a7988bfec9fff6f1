"""A local fake of the Google Calendar API v3 (plus the OAuth 2.0 endpoints in front of it).

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
* the browser side of OAuth 2.0 ("OAuth 2.0 for Web Server Applications",
  OpenID Connect): web clients registered with ``add_oauth_client(client_id,
  client_secret, redirect_uris)``; ``GET auth_uri`` (``/o/oauth2/v2/auth``)
  checks the request as Google does (unknown client: ``invalid_client`` page,
  401; unregistered redirect URI: ``redirect_uri_mismatch`` page, 400; bad
  ``response_type``, ``scope``, ``access_type``, ``prompt`` or PKCE parameters:
  error pages; nothing is redirected) and renders a consent page without
  JavaScript (text input ``#email`` prefilled from ``login_hint``, the scopes,
  buttons ``#allow``/``#deny``) that posts to ``/o/oauth2/v2/auth/decision``;
  Allow redirects with ``state``, ``code``, ``scope`` (``email`` granted as
  ``.../auth/userinfo.email``), ``authuser=0``, ``prompt=consent``, Deny with
  ``error=access_denied``; ``prompt=none`` answers ``error=login_required`` (no
  browser sessions here).  ``/token`` redeems a code once (a replay is
  ``invalid_grant`` and revokes what the code issued), within
  ``code_lifetime`` seconds, for the client that authenticates with HTTP Basic
  or ``client_secret`` in the body, with the same ``redirect_uri`` and the PKCE
  verifier (``S256``, or ``plain``, Google's default); it answers an access
  token for the Calendar API, a refresh token for ``access_type=offline`` and an
  RS256 ID token when ``openid`` was granted, verifiable against ``certs_uri``
  (v1 PEM map; also ``/oauth2/v3/certs`` and the discovery document).  Hooks:
  ``consents``, ``unverify_email``, ``fail_next_code_exchange``.  HTTPS with a
  throw-away CA (``tls=True``; ``ca_bundle_path``, ``client_ssl_context()``),
  which requests-oauthlib needs for these endpoints; plain HTTP by default;
* injected faults on API and batch requests (never /token): ``fail_next``,
  ``slow_next``, ``drop_next`` (connection closed without a response), and a
  global ``latency``;
* a control namespace ``POST /_fake/<command>`` (JSON object in and out; no
  auth, latency or faults; not counted in ``requests``) so a fake in another
  process can be driven: ``add_refresh_token``, ``issue_access_token``,
  ``add_calendar``, ``add_event``, ``add_events`` (``{"items": [[user, calendar,
  body], ...]}``), ``edit_event``, ``delete_event``, ``events``,
  ``expire_sync_tokens``, ``set_latency``, ``fail_next``, ``slow_next``,
  ``drop_next``, ``request_counts``, ``reset_counts``, ``notifications``,
  ``add_oauth_client``, ``consents``, ``unverify_email``,
  ``fail_next_code_exchange``; and
  ``python -m tests.fakes.google_calendar --port 0 --latency 0.05``, which
  prints ``READY <base_url>`` (``READY <base_url> <ca_bundle_path>`` with
  ``--tls``) once serving and stops on SIGTERM/SIGINT (see
  ``serve_in_subprocess`` and ``call_control``).

Not modelled: recurrence expansion (``singleEvents=true`` over a recurring event
is rejected with 400 ``notImplementedInFake``; events.instances is absent),
changes to a master (its times, rule or deletion) reaching its exceptions,
attendees/invitations, colours, ``sharedExtendedProperty``, notification
coalescing and retries, HTTPS for notification addresses (only plain
``http://`` loopback addresses get deliveries; others are recorded as
undeliverable), watch channels on anything but events, quotas other than those
injected by ``fail_next``.

The package, one module per concern (each a mixin over ``base.FakeGoogleBase``; ``fake`` composes
``FakeGoogleCalendar``): ``oauth`` (``/token``, access tokens), ``consent`` (web clients, the consent page, the
authorization-code grant, ID tokens and their certificates), ``events`` (the event store and its writes),
``recurrence`` (occurrences of recurring events), ``sync`` (events.list, page and sync tokens), ``watch`` (channels
and push notifications), ``batch``, ``routing`` (API calls to resources), ``faults`` (injected faults, request
counts), ``control`` (``/_fake/``), ``server`` (the HTTP server and request handler), ``remote`` (another process),
with ``common`` and ``times`` holding what they share.
"""

from __future__ import annotations

from tests.fakes.google_calendar.batch import MAX_BATCH_PARTS
from tests.fakes.google_calendar.common import ApiError
from tests.fakes.google_calendar.fake import FakeGoogleCalendar
from tests.fakes.google_calendar.oauth import GOOGLE_TOKEN_AUDIENCE, JWT_BEARER
from tests.fakes.google_calendar.remote import RemoteFakeGoogleCalendar, main, serve_in_subprocess
from tests.fakes.google_calendar.watch import NOTIFICATION_TIMEOUT, NotificationRecord
from tests.fakes.http_support import ControlError, call_control  # re-exported: call_control raises ControlError

__all__ = [
    "GOOGLE_TOKEN_AUDIENCE",
    "JWT_BEARER",
    "MAX_BATCH_PARTS",
    "NOTIFICATION_TIMEOUT",
    "ApiError",
    "ControlError",
    "FakeGoogleCalendar",
    "NotificationRecord",
    "RemoteFakeGoogleCalendar",
    "call_control",
    "main",
    "serve_in_subprocess",
]
