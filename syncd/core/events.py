"""The events every sink receives, and their JSON Schemas: ``status.changed`` when a user's
status changes, ``route.changed`` when an away user's work goes to someone else because a
person on their chain of replacements went away or came back, and the link events
(``link.reauth_required``, ``link.restored``) when a calendar link needs its owner to grant
access again, and when it syncs again.

One event per change, built when the change is recorded (in the same transaction) and sent
unchanged to every sink: the webhook's body, a JSON line on stdout, the ``body`` field of a
Redis stream entry, a NATS message. Its ``id`` is the idempotency key: a consumer that sees
an id twice drops the repeat.

``STATUS_EVENT_SCHEMA``, ``ROUTE_EVENT_SCHEMA`` and ``LINK_EVENT_SCHEMA`` describe them (JSON
Schema 2020-12); the HTTP API serves them at ``/v1/schema/status-event.json``,
``/v1/schema/route-event.json`` and ``/v1/schema/link-event.json`` and the docs keep copies,
so consumers can validate what they receive. Every event has ``id`` and ``type``. Fields may
be added in later versions; none is removed or changes meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.core.availability import Period, StatusChange
from syncd.core.coverage import COVERAGE_LOW, COVERAGE_RESTORED, CoverageCrossing
from syncd.core.route import Route
from syncd.core.time import format_utc

__all__ = ["COVERAGE_EVENT_SCHEMA", "LINK_EVENT_SCHEMA", "LINK_REAUTH_REQUIRED", "LINK_RESTORED", "ROUTE_CHANGED",
           "ROUTE_EVENT_SCHEMA", "STATUS_CHANGED", "STATUS_EVENT_SCHEMA", "LinkRef", "Person", "coverage_event",
           "encode", "link_event", "route_event", "status_event"]

STATUS_CHANGED = "status.changed"
ROUTE_CHANGED = "route.changed"
LINK_REAUTH_REQUIRED = "link.reauth_required"
LINK_RESTORED = "link.restored"


@dataclass(frozen=True, slots=True)
class LinkRef:
    """A calendar link as link events name it."""

    id: int
    account: str
    provider: str
    calendar: str


# A person as events name them: {"id": …, "email": …}
Person = dict[str, str]


def status_event(event_id: str, user_id: str, email: str, change: StatusChange,
                 block: Period | None, replacement: Person | None = None) -> dict[str, Any]:
    """The event for ``change`` of ``user_id``; ``block`` is the block that started or ended, if
    any; ``replacement`` who takes the user's work from then on (for ``away``; None: nobody)."""
    event: dict[str, Any] = {
        "id": event_id,
        "type": STATUS_CHANGED,
        "user": {"id": user_id, "email": email},
        "status": change.status,
        "previous": change.previous,
        "reason": change.reason,
        "effective_at": format_utc(change.effective_at),
        "block": None if block is None else {
            "id": block.block_id, "start": format_utc(block.start), "end": format_utc(block.end),
            "title": block.title,
        },
        "replacement": replacement if change.status == "away" else None,
    }
    if change.holiday is not None:
        event["holiday"] = change.holiday
    return event


def route_event(event_id: str, user: Person, previous: Route, route: Route, at: datetime,
                route_to: Person | None, previous_route_to: Person | None) -> dict[str, Any]:
    """The event for an away user whose route went from ``previous`` to ``route`` at ``at``."""
    return {
        "id": event_id,
        "type": ROUTE_CHANGED,
        "user": user,
        "status": route.status,
        "route_to": route_to,
        "previous_route_to": previous_route_to,
        "chain": list(route.chain),
        "reason": route.reason,
        "effective_at": format_utc(at),
    }


def link_event(event_id: str, kind: str, user_id: str, email: str, link: LinkRef, at: datetime, *,
               error: str | None = None, connect_url: str | None = None,
               connect_expires_at: datetime | None = None) -> dict[str, Any]:
    """A ``link.reauth_required`` event (with the error, and a connect link when syncd can make
    one) or a ``link.restored`` event."""
    event: dict[str, Any] = {
        "id": event_id,
        "type": kind,
        "user": {"id": user_id, "email": email},
        "link": {"id": link.id, "account": link.account, "provider": link.provider, "calendar": link.calendar},
        "at": format_utc(at),
    }
    if kind == LINK_REAUTH_REQUIRED:
        event["error"] = error or ""
        event["connect"] = None if connect_url is None else {"url": connect_url,
                                                             "expires_at": format_utc(connect_expires_at)}
    return event


def coverage_event(event_id: str, team_id: str, crossing: CoverageCrossing) -> dict[str, Any]:
    """A ``coverage.low`` event (the team fell below its minimum of available members) or a
    ``coverage.restored`` event (it is back at its minimum)."""
    return {
        "id": event_id,
        "type": crossing.kind,
        "team": {"id": team_id},
        "at": format_utc(crossing.at),
        "available": crossing.available,
        "min_available": crossing.min_available,
    }


def encode(event: Mapping[str, Any], *, ascii_only: bool = False) -> bytes:
    """The event as it goes over the wire: compact JSON in UTF-8, keys in the order built.
    ``ascii_only`` escapes non-ASCII text (for a terminal of unknown encoding)."""
    return json.dumps(event, separators=(",", ":"), sort_keys=False, ensure_ascii=ascii_only).encode("utf-8")


_INSTANT = {"type": "string", "format": "date-time", "pattern": "Z$",
            "description": "an instant in UTC, ISO 8601 with a Z"}
_STATUS = {"enum": ["available", "away"]}

STATUS_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://syncd.example/schema/status-event.json",
    "title": "syncd status event",
    "description": "A user's Available / Away status changed. Sent to every sink; `id` is the idempotency key.",
    "type": "object",
    "required": ["id", "type", "user", "status", "previous", "reason", "effective_at", "block", "replacement"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "description": "unique per event; a repeat has the same id"},
        "type": {"const": STATUS_CHANGED},
        "user": {
            "type": "object",
            "required": ["id", "email"],
            "properties": {"id": {"type": "string"}, "email": {"type": "string"}},
        },
        "status": {**_STATUS, "description": "the status from `effective_at` on"},
        "previous": {**_STATUS, "description": "the status before"},
        "reason": {
            "enum": ["ooo_started", "ooo_ended", "ooo_ended_early", "manual", "working_hours", "holiday", "day_off"],
            "description": "why it changed: `holiday` and `day_off` both when a public holiday or company day off "
                           "starts and when it ends",
        },
        "effective_at": {**_INSTANT, "description": "when the change took effect (not when it was sent)"},
        "block": {
            "description": "the OOO block that started or ended, if the change is about one",
            "oneOf": [
                {"type": "null"},
                {
                    "type": "object",
                    "required": ["id", "start", "end", "title"],
                    "properties": {"id": {"type": "string"}, "start": _INSTANT, "end": _INSTANT,
                                   "title": {"type": "string"}},
                },
            ],
        },
        "replacement": {
            "description": "for `away`: who takes the user's work from `effective_at` on (the first available "
                           "person along their chain of replacements), null when nobody can; always null for "
                           "`available`",
            "oneOf": [{"type": "null"}, {"$ref": "#/$defs/person"}],
        },
        "holiday": {"type": "string", "minLength": 1,
                    "description": "with reason `holiday`: the public holiday that started or ended, named in the "
                                   "country's language (e.g. Juldagen)"},
    },
    "$defs": {"person": {"type": "object", "required": ["id", "email"],
                         "properties": {"id": {"type": "string"}, "email": {"type": "string"}}}},
}

ROUTE_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://syncd.example/schema/route-event.json",
    "title": "syncd route event",
    "description": "An away user's work goes to someone else: a person on their chain of replacements went away or "
                   "came back. Sent to every sink, in order with the user's status events; `id` is the idempotency "
                   "key.",
    "type": "object",
    "required": ["id", "type", "user", "status", "route_to", "previous_route_to", "chain", "reason", "effective_at"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "description": "unique per event; a repeat has the same id"},
        "type": {"const": ROUTE_CHANGED},
        "user": {"$ref": "#/$defs/person"},
        "status": {"const": "away"},
        "route_to": {"description": "who takes the user's work from `effective_at` on; null: nobody can",
                     "oneOf": [{"type": "null"}, {"$ref": "#/$defs/person"}]},
        "previous_route_to": {"description": "who took it before", "oneOf": [{"type": "null"},
                                                                             {"$ref": "#/$defs/person"}]},
        "chain": {"type": "array", "items": {"type": "string"}, "maxItems": 10,
                  "description": "the replacements tried, in order (user ids)"},
        "reason": {"enum": ["replacement", "no_replacement", "no_replacement_available"]},
        "effective_at": {**_INSTANT, "description": "when the route changed (not when it was sent)"},
    },
    "$defs": {"person": {"type": "object", "required": ["id", "email"],
                         "properties": {"id": {"type": "string"}, "email": {"type": "string"}}}},
}

_USER = {"type": "object", "required": ["id", "email"], "properties": {"id": {"type": "string"},
                                                                       "email": {"type": "string"}}}
_LINK = {
    "type": "object",
    "required": ["id", "account", "provider", "calendar"],
    "properties": {"id": {"type": "integer", "description": "as `syncd links` and `GET /v1/links` show it"},
                   "account": {"type": "string"}, "provider": {"type": "string"}, "calendar": {"type": "string"}},
}
_LINK_BASE = ["id", "type", "user", "link", "at"]

LINK_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://syncd.example/schema/link-event.json",
    "title": "syncd link event",
    "description": "A calendar link needs its owner to grant access again, or syncs again. Sent to every sink; "
                   "`id` is the idempotency key.",
    "type": "object",
    "oneOf": [
        {
            "required": [*_LINK_BASE, "error", "connect"],
            "properties": {
                "type": {"const": LINK_REAUTH_REQUIRED},
                "error": {"type": "string", "description": "what the provider said, on one line"},
                "connect": {
                    "description": "a one-time link with which the user grants access again in the browser; null "
                                   "when syncd cannot make one (no api.public_url, or a provider without browser "
                                   "consent)",
                    "oneOf": [{"type": "null"}, {
                        "type": "object", "required": ["url", "expires_at"],
                        "properties": {"url": {"type": "string", "format": "uri"}, "expires_at": _INSTANT}}],
                },
            },
        },
        {"required": _LINK_BASE, "properties": {"type": {"const": LINK_RESTORED}}},
    ],
    "properties": {
        "id": {"type": "string", "minLength": 1, "description": "unique per event; a repeat has the same id"},
        "type": {"enum": [LINK_REAUTH_REQUIRED, LINK_RESTORED]},
        "user": _USER,
        "link": _LINK,
        "at": {**_INSTANT, "description": "when syncd noticed"},
    },
}

COVERAGE_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://syncd.example/schema/coverage-event.json",
    "title": "syncd coverage event",
    "description": "A team fell below its minimum of available members (`coverage.low`), or is back at it "
                   "(`coverage.restored`). Sent to every sink at the instant it happens; `id` is the idempotency key.",
    "type": "object",
    "required": ["id", "type", "team", "at", "available", "min_available"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "description": "unique per event; a repeat has the same id"},
        "type": {"enum": [COVERAGE_LOW, COVERAGE_RESTORED]},
        "team": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
        "at": {**_INSTANT, "description": "when the team crossed its minimum"},
        "available": {"type": "integer", "minimum": 0, "description": "members available from `at` on"},
        "min_available": {"type": "integer", "minimum": 1, "description": "the team's minimum"},
    },
}
