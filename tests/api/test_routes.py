"""Replacements and routes over the HTTP API, on SQLite and PostgreSQL: naming a default
replacement and a block's own, refusing oneself and unknown users, `GET /v1/users/{id}/route`
now and at an instant, `POST /v1/eligible` with routes, and the events: away events carry
the resolved replacement, and `route.changed` goes out when someone on an away user's chain
goes away or comes back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from store.db import Database
from store.models import DeliveryRow, OutboxRow
from syncd.api import create_app
from syncd.config import ApiConfig, SinkConfig
from syncd.core.events import ROUTE_EVENT_SCHEMA, STATUS_EVENT_SCHEMA
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.api.test_api import TOKENS, R, W, error
from tests.conftest import Clock, make_config, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def at(hours: float, days: int = 0) -> str:
    return iso(T0 + timedelta(days=days, hours=hours))


@pytest.fixture
def service(database: Database, clock: Clock) -> Syncd:
    # ada names bo by default in the config file; the rest are registered through the API.
    config = dataclasses.replace(make_config([user("ada", replacement="bo"), user("bo")],
                                             sinks=(SinkConfig(type="stdout", name="stdout"),)),
                                 api=ApiConfig(tokens=TOKENS))
    svc = Syncd(config, database, clock=clock)
    svc.prepare()
    return svc


@pytest.fixture
def client(service: Syncd, database: Database, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as c:
        for uid in ("cy", "dee"):
            assert c.put(f"/v1/users/{uid}", json={"email": f"{uid}@example.com", "timezone": "Europe/Stockholm"},
                         headers=W).status_code == 201
        yield c


def events(db: Database, kind: str | None = None) -> list[dict[str, Any]]:
    with db.session() as s:
        payloads = [r.payload for r in s.scalars(select(OutboxRow).order_by(OutboxRow.seq))]
    return [p for p in payloads if kind is None or p["type"] == kind]


def route(client: TestClient, uid: str, when: str | None = None) -> dict[str, Any]:
    response = client.get(f"/v1/users/{uid}/route", params={"at": when} if when else None, headers=R)
    assert response.status_code == 200, response.text
    return dict(response.json())


def away(client: TestClient, uid: str, start: float, end: float, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/users/{uid}/ooo", json={"start": at(start), "end": at(end), **body}, headers=W)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_an_available_user_takes_their_own_work(client: TestClient) -> None:
    assert route(client, "ada") == {"user": "ada", "status": "available", "route_to": "ada", "chain": [],
                                    "reason": "available"}


def test_route_follows_the_default_then_the_blocks_own(client: TestClient, clock: Clock) -> None:
    away(client, "ada", 0, 8)
    assert route(client, "ada") == {"user": "ada", "status": "away", "route_to": "bo", "chain": ["bo"],
                                    "reason": "replacement"}
    block = away(client, "ada", 24, 32, replacement="cy")
    assert block["replacement"] == "cy"
    assert route(client, "ada", at(25))["route_to"] == "cy"  # the block's wins while it covers
    assert route(client, "ada", at(33))["reason"] == "available"
    # PATCH: another replacement, then none (the default is back), then the times alone keep it.
    response = client.patch(f"/v1/ooo/{block['id']}", json={"replacement": "dee"}, headers=W)
    assert response.status_code == 200 and response.json()["replacement"] == "dee"
    assert route(client, "ada", at(25))["route_to"] == "dee"
    response = client.patch(f"/v1/ooo/{block['id']}", json={"end": at(34)}, headers=W)
    assert response.json()["replacement"] == "dee"
    response = client.patch(f"/v1/ooo/{block['id']}", json={"replacement": None}, headers=W)
    assert response.json()["replacement"] is None
    assert route(client, "ada", at(25))["route_to"] == "bo"


def test_chain_of_away_replacements_and_nobody(client: TestClient) -> None:
    assert client.put("/v1/users/cy", json={"email": "cy@example.com", "timezone": "Europe/Stockholm",
                                            "replacement": "dee"}, headers=W).json()["replacement"] == "dee"
    away(client, "ada", 0, 8)
    away(client, "bo", 0, 8, replacement="cy")
    away(client, "cy", 0, 4)
    assert route(client, "ada") == {"user": "ada", "status": "away", "route_to": "dee", "chain": ["bo", "cy", "dee"],
                                    "reason": "replacement"}
    away(client, "dee", 0, 2)
    assert route(client, "ada") == {"user": "ada", "status": "away", "route_to": None, "chain": ["bo", "cy", "dee"],
                                    "reason": "no_replacement_available"}
    assert route(client, "ada", at(3))["route_to"] == "dee"  # dee is back by then
    assert route(client, "ada", at(5))["route_to"] == "cy"
    assert route(client, "dee") == {"user": "dee", "status": "away", "route_to": None, "chain": [],
                                    "reason": "no_replacement"}


def test_a_loop_resolves_to_nobody(client: TestClient) -> None:
    assert client.put("/v1/users/cy", json={"email": "cy@example.com", "timezone": "Europe/Stockholm",
                                            "replacement": "ada"}, headers=W).status_code == 200
    away(client, "ada", 0, 8)
    away(client, "bo", 0, 8, replacement="cy")
    away(client, "cy", 0, 8)
    assert route(client, "ada") == {"user": "ada", "status": "away", "route_to": None, "chain": ["bo", "cy"],
                                    "reason": "no_replacement_available"}


def test_naming_oneself_or_an_unknown_user_is_refused(client: TestClient) -> None:
    body = {"email": "cy@example.com", "timezone": "Europe/Stockholm"}
    response = client.put("/v1/users/cy", json={**body, "replacement": "cy"}, headers=W)
    assert error(response, 422, "invalid")["message"] == "replacement: cy cannot replace themselves; name another user"
    response = client.put("/v1/users/cy", json={**body, "replacement": "zed"}, headers=W)
    message = error(response, 422)["message"]
    assert message.startswith("replacement: no user 'zed'")
    response = client.post("/v1/users/ada/ooo", json={"start": at(1), "end": at(2), "replacement": "ada"}, headers=W)
    assert error(response, 422)["message"] == "replacement: ada cannot replace themselves; name another user"
    error(client.post("/v1/users/ada/ooo", json={"start": at(1), "end": at(2), "replacement": "zed"}, headers=W), 422)
    block = away(client, "ada", 1, 2)
    error(client.patch(f"/v1/ooo/{block['id']}", json={"replacement": "ada"}, headers=W), 422)
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json()["revision"] == 1  # nothing changed
    assert client.get("/v1/users/cy", headers=R).json()["replacement"] is None
    error(client.get("/v1/users/zed/route", headers=R), 404)
    error(client.get("/v1/users/ada/route", params={"at": "2026-03-02T10:00:00"}, headers=R), 422)


def test_put_user_keeps_the_replacement_when_left_out_and_deleting_a_user_unnames_them(client: TestClient) -> None:
    body = {"email": "cy@example.com", "timezone": "Europe/Stockholm"}
    client.put("/v1/users/cy", json={**body, "replacement": "dee"}, headers=W)
    assert client.put("/v1/users/cy", json=body, headers=W).json()["replacement"] == "dee"
    away(client, "cy", 0, 8)
    block = away(client, "bo", 0, 8, replacement="dee")
    assert client.delete("/v1/users/dee", headers=W).status_code == 204
    assert client.get("/v1/users/cy", headers=R).json()["replacement"] is None
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json()["replacement"] is None
    assert route(client, "cy")["reason"] == "no_replacement"


def test_eligible_adds_the_route_of_each_ineligible_user(client: TestClient) -> None:
    away(client, "ada", 0, 8)
    away(client, "cy", 0, 8)
    response = client.post("/v1/eligible", json={"users": ["ada", "bo", "cy", "zed"]}, headers=R)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["eligible"] == ["bo"]
    assert {i["user"]: i["route_to"] for i in body["ineligible"]} == {"ada": "bo", "cy": None, "zed": None}
    later = client.post("/v1/eligible", json={"users": ["ada"], "at": at(-1)}, headers=R).json()
    assert later == {"eligible": ["ada"], "ineligible": []}


def test_away_events_carry_the_replacement(client: TestClient, database: Database) -> None:
    away(client, "cy", 0, 8)
    away(client, "ada", 0, 8)
    validator = jsonschema.Draft202012Validator(STATUS_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    sent = events(database, "status.changed")
    for event in sent:
        validator.validate(event)
    assert [(e["user"]["id"], e["status"], e["replacement"]) for e in sent] == [
        ("cy", "away", None), ("ada", "away", {"id": "bo", "email": "bo@example.com"})]


def test_route_changed_when_someone_on_the_chain_goes_away_and_comes_back(
        client: TestClient, service: Syncd, database: Database, clock: Clock) -> None:
    client.put("/v1/users/bo", json={"email": "bo@example.com", "timezone": "Europe/Stockholm"}, headers=W)
    away(client, "ada", 0, 48)
    # bo (ada's default) goes away from 10:00 to 12:00, naming cy meanwhile.
    away(client, "bo", 1, 3, replacement="cy")
    assert events(database, "route.changed") == []
    clock.advance(timedelta(hours=1))
    service.advance_due()
    clock.advance(timedelta(hours=2))
    service.advance_due()
    validator = jsonschema.Draft202012Validator(ROUTE_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    changed = events(database, "route.changed")
    for event in changed:
        validator.validate(event)
    assert [(e["user"]["id"], e["previous_route_to"], e["route_to"], e["chain"], e["effective_at"])
            for e in changed] == [
        ("ada", {"id": "bo", "email": "bo@example.com"}, {"id": "cy", "email": "cy@example.com"}, ["bo", "cy"],
         at(1)),
        ("ada", {"id": "cy", "email": "cy@example.com"}, {"id": "bo", "email": "bo@example.com"}, ["bo"], at(3)),
    ]
    # Each follows the status event that caused it, in the outbox order.
    order = [(e["type"], e["user"]["id"]) for e in events(database)]
    assert order.index(("status.changed", "bo")) < order.index(("route.changed", "ada"))


def test_no_route_event_for_users_who_are_available_or_whose_route_stays(
        client: TestClient, service: Syncd, database: Database, clock: Clock) -> None:
    away(client, "bo", 1, 3)  # ada is available: her route is herself whatever bo does
    clock.advance(timedelta(hours=1))
    service.advance_due()
    away(client, "cy", 0, 48)
    client.put("/v1/users/cy", json={"email": "cy@example.com", "timezone": "Europe/Stockholm",
                                     "replacement": "dee"}, headers=W)
    away(client, "ada", 0, 48, replacement="dee")  # ada's route is dee; bo's coming back changes nothing
    clock.advance(timedelta(hours=2))
    service.advance_due()
    assert events(database, "route.changed") == []


def test_route_events_are_staged_ahead_with_the_transition(
        client: TestClient, service: Syncd, database: Database, clock: Clock) -> None:
    away(client, "ada", 0, 48)
    away(client, "bo", 0, 1)  # ada's work goes nowhere until bo is back at 10:00
    assert route(client, "ada")["reason"] == "no_replacement_available"
    clock.set(T0 + timedelta(minutes=59, seconds=30))
    service.stage_ahead()
    staged = events(database, "route.changed")
    assert [(e["route_to"], e["effective_at"]) for e in staged] == [
        (None, at(0)),  # when bo went away, after ada
        ({"id": "bo", "email": "bo@example.com"}, at(1)),  # queued now, due at 10:00
    ]
    with database.session() as s:
        due = {iso(d.next_attempt_at) for d, o in s.execute(select(DeliveryRow, OutboxRow).join(
            OutboxRow, OutboxRow.seq == DeliveryRow.outbox_seq)) if o.payload["id"] == staged[1]["id"]}
    assert due == {at(1)}
    # An edit of bo before the instant undoes the staged transition, and its route event with it.
    client.patch(f"/v1/ooo/{events(database, 'status.changed')[-1]['block']['id']}", json={"end": at(2)},
                 headers=W)
    assert [e["effective_at"] for e in events(database, "route.changed")] == [at(0)]
    clock.set(T0 + timedelta(hours=1, seconds=1))
    service.advance_due()
    assert route(client, "ada")["reason"] == "no_replacement_available"


def test_a_block_naming_someone_that_ends_as_they_go_away_counts_as_before(
        client: TestClient, service: Syncd, database: Database, clock: Clock) -> None:
    client.put("/v1/users/cy", json={"email": "cy@example.com", "timezone": "Europe/Stockholm",
                                     "replacement": "dee"}, headers=W)
    away(client, "cy", 0, 48)
    away(client, "cy", 0, 2, replacement="bo")  # bo takes cy's work until 11:00 ...
    away(client, "bo", 2, 4)  # ... when bo goes away himself
    assert route(client, "cy")["route_to"] == "bo"
    clock.advance(timedelta(hours=2))
    service.advance_due()
    assert [(e["user"]["id"], e["previous_route_to"]["id"], e["route_to"]["id"], e["effective_at"])
            for e in events(database, "route.changed")] == [("cy", "bo", "dee", at(2))]
