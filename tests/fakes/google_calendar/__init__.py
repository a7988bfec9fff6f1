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

The package, one module per concern (each a mixin over ``base.FakeGoogleBase``; ``fake`` composes
``FakeGoogleCalendar``): ``oauth`` (``/token``, access tokens), ``events`` (the event store and its writes),
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
