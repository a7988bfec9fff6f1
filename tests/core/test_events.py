"""The status event's wire format and its published JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from syncd.core.availability import AVAILABLE, AWAY, Period, StatusChange
from syncd.core.events import STATUS_EVENT_SCHEMA, encode, status_event

DOCS_COPY = Path(__file__).resolve().parents[2] / "docs" / "status-event.schema.json"
AT = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
BLOCK = Period("b1", AT, datetime(2026, 12, 27, 8, 0, tzinfo=UTC), "Christmas — Åre")


def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(STATUS_EVENT_SCHEMA)
    return jsonschema.Draft202012Validator(STATUS_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("change, block", [
    (StatusChange(AWAY, AVAILABLE, "ooo_started", AT, "b1"), BLOCK),
    (StatusChange(AVAILABLE, AWAY, "ooo_ended_early", AT, "b1"), BLOCK),
    (StatusChange(AWAY, AVAILABLE, "manual", AT, None), None),
    (StatusChange(AWAY, AVAILABLE, "working_hours", AT, None), None),
])
def test_every_event_syncd_builds_is_valid_by_its_schema(change: StatusChange, block: Period | None) -> None:
    event = status_event("e1", "ada", "ada@example.com", change, block)
    validator().validate(json.loads(encode(event)))
    assert event["effective_at"] == "2026-12-24T08:00:00Z"
    assert (event["block"] is None) == (block is None)


@pytest.mark.parametrize("broken", [
    {"status": "busy"},
    {"reason": "initial"},
    {"effective_at": "2026-12-24T09:00:00+01:00"},
    {"block": {"id": "b1"}},
    {"type": "something.else"},
])
def test_the_schema_refuses_what_syncd_never_sends(broken: dict[str, object]) -> None:
    event = status_event("e1", "ada", "ada@example.com", StatusChange(AWAY, AVAILABLE, "ooo_started", AT, "b1"), BLOCK)
    with pytest.raises(jsonschema.ValidationError):
        validator().validate({**json.loads(encode(event)), **broken})


def test_the_wire_format_is_compact_utf8_and_ascii_on_request() -> None:
    event = status_event("e1", "ada", "ada@example.com", StatusChange(AWAY, AVAILABLE, "ooo_started", AT, "b1"), BLOCK)
    assert b" " not in encode(event).replace("Åre".encode(), b"").replace(b"Christmas \xe2\x80\x94 ", b"")
    assert "Åre".encode() in encode(event)
    assert encode(event, ascii_only=True).isascii()
    assert json.loads(encode(event, ascii_only=True)) == json.loads(encode(event))


def test_the_docs_carry_the_same_schema() -> None:
    assert json.loads(DOCS_COPY.read_text()) == STATUS_EVENT_SCHEMA, \
        "docs/status-event.schema.json is stale: regenerate it from syncd.core.events.STATUS_EVENT_SCHEMA"
