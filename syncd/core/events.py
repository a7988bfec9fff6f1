"""The status event: what every sink receives when a user's status changes, and its JSON Schema.

One event per change, built when the change is recorded (in the same transaction) and sent
unchanged to every sink: the webhook's body, a JSON line on stdout, the ``body`` field of a
Redis stream entry, a NATS message. Its ``id`` is the idempotency key: a consumer that sees
an id twice drops the repeat.

``STATUS_EVENT_SCHEMA`` describes it (JSON Schema 2020-12); the HTTP API serves it at
``/v1/schema/status-event.json`` and the docs keep a copy, so consumers can validate what they
receive. Fields may be added in later versions; none is removed or changes meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncd.core.availability import Period, StatusChange
from syncd.core.time import format_utc

__all__ = ["STATUS_CHANGED", "STATUS_EVENT_SCHEMA", "encode", "status_event"]

STATUS_CHANGED = "status.changed"


def status_event(event_id: str, user_id: str, email: str, change: StatusChange,
                 block: Period | None) -> dict[str, Any]:
    """The event for ``change`` of ``user_id``; ``block`` is the block that started or ended, if any."""
    return {
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
    "required": ["id", "type", "user", "status", "previous", "reason", "effective_at", "block"],
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
            "enum": ["ooo_started", "ooo_ended", "ooo_ended_early", "manual", "working_hours"],
            "description": "why it changed",
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
    },
}
