"""The events' wire format and their published JSON Schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from syncd.core.availability import AVAILABLE, AWAY, Period, StatusChange
from syncd.core.coverage import COVERAGE_LOW, COVERAGE_RESTORED, CoverageCrossing
from syncd.core.events import (
    COVERAGE_EVENT_SCHEMA,
    LINK_EVENT_SCHEMA,
    LINK_REAUTH_REQUIRED,
    LINK_RESTORED,
    ROUTE_CHANGED,
    ROUTE_EVENT_SCHEMA,
    STATUS_EVENT_SCHEMA,
    LinkRef,
    coverage_event,
    encode,
    link_event,
    route_event,
    status_event,
)
from syncd.core.route import Route

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


LINK_DOCS_COPY = DOCS_COPY.with_name("link-event.schema.json")
LINK = LinkRef(7, "workspace", "google", "primary")


def _link_validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(LINK_EVENT_SCHEMA)
    return jsonschema.Draft202012Validator(LINK_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())


def test_link_events_match_their_schema() -> None:
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    lost = link_event("e1", LINK_REAUTH_REQUIRED, "alice", "alice@example.com", LINK, at,
                      error="google: alice@example.com cannot sign in (invalid_grant)",
                      connect_url="https://syncd.example/connect/abc", connect_expires_at=at + timedelta(days=7))
    bare = link_event("e2", LINK_REAUTH_REQUIRED, "alice", "alice@example.com", LINK, at, error="revoked")
    back = link_event("e3", LINK_RESTORED, "alice", "alice@example.com", LINK, at)
    validator = _link_validator()
    for event in (lost, bare, back):
        validator.validate(event)
    assert lost["connect"] == {"url": "https://syncd.example/connect/abc", "expires_at": "2026-03-09T09:00:00Z"}
    assert bare["connect"] is None
    assert "connect" not in back and "error" not in back
    # A restored event carrying reauth fields, or a lost one without its error, is not valid.
    assert not validator.is_valid({**back, "type": LINK_REAUTH_REQUIRED})
    assert not validator.is_valid({**lost, "type": "link.gone"})


def test_the_docs_carry_the_same_link_schema() -> None:
    assert json.loads(LINK_DOCS_COPY.read_text()) == LINK_EVENT_SCHEMA, \
        "docs/link-event.schema.json is stale: regenerate it from syncd.core.events.LINK_EVENT_SCHEMA"


ROUTE_DOCS_COPY = DOCS_COPY.with_name("route-event.schema.json")


def test_away_events_carry_the_replacement_and_available_ones_none() -> None:
    validator = jsonschema.Draft202012Validator(STATUS_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    bo = {"id": "bo", "email": "bo@example.com"}
    away = status_event("e1", "ada", "ada@example.com", StatusChange(AWAY, AVAILABLE, "ooo_started", AT, "b1"), BLOCK,
                        bo)
    nobody = status_event("e2", "ada", "ada@example.com", StatusChange(AWAY, AVAILABLE, "manual", AT, None), None)
    back = status_event("e3", "ada", "ada@example.com", StatusChange(AVAILABLE, AWAY, "ooo_ended", AT, "b1"), BLOCK,
                        bo)
    for event in (away, nobody, back):
        validator.validate(event)
    assert (away["replacement"], nobody["replacement"], back["replacement"]) == (bo, None, None)
    assert not validator.is_valid({**away, "replacement": {"id": "bo"}})


def test_route_events_match_their_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(ROUTE_EVENT_SCHEMA)
    validator = jsonschema.Draft202012Validator(ROUTE_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    was = Route("ada", AWAY, "bo", ("bo",), "replacement")
    now = Route("ada", AWAY, "cy", ("bo", "cy"), "replacement")
    event = route_event("e1", {"id": "ada", "email": "ada@example.com"}, was, now, AT,
                        {"id": "cy", "email": "cy@example.com"}, {"id": "bo", "email": "bo@example.com"})
    validator.validate(event)
    assert event["type"] == ROUTE_CHANGED and event["chain"] == ["bo", "cy"]
    assert event["effective_at"] == "2026-12-24T08:00:00Z"
    assert event["route_to"] == {"id": "cy", "email": "cy@example.com"}
    gone = route_event("e2", {"id": "ada", "email": "ada@example.com"}, now,
                       Route("ada", AWAY, None, ("bo", "cy"), "no_replacement_available"), AT, None,
                       {"id": "cy", "email": "cy@example.com"})
    validator.validate(gone)
    assert not validator.is_valid({**gone, "chain": [f"u{i}" for i in range(11)]})


def test_the_docs_carry_the_same_route_schema() -> None:
    assert json.loads(ROUTE_DOCS_COPY.read_text()) == ROUTE_EVENT_SCHEMA, \
        "docs/route-event.schema.json is stale: regenerate it from syncd.core.events.ROUTE_EVENT_SCHEMA"


COVERAGE_DOCS_COPY = DOCS_COPY.with_name("coverage-event.schema.json")


def test_coverage_events_match_their_schema_and_the_docs_copy() -> None:
    jsonschema.Draft202012Validator.check_schema(COVERAGE_EVENT_SCHEMA)
    validator = jsonschema.Draft202012Validator(COVERAGE_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    at = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    low = coverage_event("e1", "support", CoverageCrossing(COVERAGE_LOW, at, 1, 2))
    back = coverage_event("e2", "support", CoverageCrossing(COVERAGE_RESTORED, at + timedelta(hours=9), 2, 2))
    for event in (low, back):
        validator.validate(event)
    assert low == {"id": "e1", "type": "coverage.low", "team": {"id": "support"}, "at": "2026-12-24T08:00:00Z",
                   "available": 1, "min_available": 2}
    assert not validator.is_valid({**low, "type": "coverage.gone"})
    assert not validator.is_valid({k: v for k, v in low.items() if k != "team"})
    assert json.loads(COVERAGE_DOCS_COPY.read_text()) == COVERAGE_EVENT_SCHEMA, \
        "docs/coverage-event.schema.json is stale: regenerate it from syncd.core.events.COVERAGE_EVENT_SCHEMA"
