"""A local fake of the Microsoft identity platform (Entra ID v2 endpoints) and Microsoft Graph v1.0.

Written from Microsoft's public documentation (delta query for events in a calendar view, the
event resource and its create/get/update/delete operations, single-value extended properties,
mailboxSettings, JSON batching, change notifications through webhooks and lifecycle
notifications, the OAuth 2.0 client-credentials, refresh-token and authorization-code grants)
so that the *real* ``msal`` library, plain HTTP clients and a browser can talk to it over HTTPS
on 127.0.0.1.

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
  the JWKS (``/{tenant}/discovery/v2.0/keys``: the RSA key, made when first needed, that signs
  ID tokens; ``issuer`` of a tenant's discovery = the tokens' ``iss``; ``{tenantid}`` for
  ``common``/``organizations``), and ``/{tenant}/oauth2/v2.0/token`` with the
  ``client_credentials`` grant (client
  secret in the body or HTTP Basic, or a ``client_assertion`` JWT signed with a registered
  certificate; scope must be ``https://graph.microsoft.com/.default``) and the ``refresh_token``
  grant (refresh tokens registered by a test hook, rotated on use like Entra ID does; a revoked
  one answers ``invalid_grant`` with ``error_codes`` [50173] and an ``AADSTS50173`` description).
  Errors carry ``error``, ``error_description`` (with the AADSTS code), ``error_codes``,
  ``timestamp``, ``trace_id``, ``correlation_id``. Access tokens are opaque, expire after
  ``token_lifetime`` seconds and map to the app (application permissions: any mailbox) or to a
  user (delegated: ``/me`` and that user's own ``/users/{id}`` only).
* the authorization code flow (see ``consent``): apps registered with ``add_app(client_id,
  secret=..., certificate_pem=..., redirect_uris=...)`` (neither credential: a public client);
  ``/{tenant}/oauth2/v2.0/authorize`` shows AADSTS90002/700016/500113/50011 on an error page
  (never redirected) and sends other problems (``response_type``, ``scope``, ``response_mode``,
  PKCE, ``prompt``) back as ``error``/``error_description``; its consent page (``#email`` from
  ``login_hint``, the scopes, ``#allow``/``#deny``, no JavaScript) answers ``code``,
  ``client_info`` (if asked), ``state``, ``session_state`` or ``access_denied`` (AADSTS65004)
  by query, fragment or ``form_post`` (a relay page with a ``#continue`` button); the code
  grant checks client, single use (54005), age (70008, ``code_lifetime``), ``redirect_uri``
  (500112), PKCE (50148/501481) and ``scope`` (70000) and answers a delegated token, a refresh
  token with ``offline_access``, a signed ID token (``preferred_username`` = the email typed)
  and ``client_info``. Hooks: ``consents``, ``fail_next_code_exchange``. ``GET /me`` (or
  ``/users/{id}``) answers the user resource.
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
device-code and on-behalf-of grants, browser sessions (``prompt=none`` answers
``login_required``), implicit and hybrid flows, signed access tokens.

The package, one module per concern (each a mixin over ``base.FakeGraphBase``; ``fake`` composes ``FakeGraph``):
``identity`` (token endpoint, discovery, keys, access tokens), ``consent`` (authorization endpoint, consent page,
authorization-code grant), ``mailbox`` (users, calendars, mailboxSettings),
``events`` (create/patch/delete), ``recurrence`` (series and their instances), ``listing`` (rendering, events
listing, calendarView, OData options), ``delta`` (calendarView/delta rounds and tokens), ``subscriptions`` and
``notifications`` (change notifications, validation handshake, lifecycle), ``batch`` (``$batch``), ``routing``
(Graph calls to resources), ``faults`` (injected faults, request counts), ``control`` (``/_fake/``), ``server`` (TLS,
the request handler), with ``common``, ``timezones`` and ``state`` holding what they share.
"""

from __future__ import annotations

from tests.fakes.graph.batch import MAX_BATCH_REQUESTS
from tests.fakes.graph.common import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_DOMAIN,
    DEFAULT_TENANT_ID,
    GraphError,
    RequestRecord,
)
from tests.fakes.graph.events import SHOW_AS
from tests.fakes.graph.fake import FakeGraph, main
from tests.fakes.graph.identity import CLIENT_ASSERTION_JWT, GRAPH_DEFAULT_SCOPE, GRAPH_RESOURCE
from tests.fakes.graph.notifications import NotificationDelivery, ValidationAttempt
from tests.fakes.graph.subscriptions import LIFECYCLE_EVENTS, MAX_SUBSCRIPTION_MINUTES
from tests.fakes.graph.timezones import WINDOWS_ZONES, zone

__all__ = [
    "CLIENT_ASSERTION_JWT",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_TENANT_DOMAIN",
    "DEFAULT_TENANT_ID",
    "GRAPH_DEFAULT_SCOPE",
    "GRAPH_RESOURCE",
    "LIFECYCLE_EVENTS",
    "MAX_BATCH_REQUESTS",
    "MAX_SUBSCRIPTION_MINUTES",
    "SHOW_AS",
    "WINDOWS_ZONES",
    "FakeGraph",
    "GraphError",
    "NotificationDelivery",
    "RequestRecord",
    "ValidationAttempt",
    "main",
    "zone",
]
