"""The HTTP API through the real ASGI app, on SQLite and PostgreSQL.

Every endpoint and rule of the contract: bearer auth and scopes, users and teams, status with
the end-early confirmation, OOO blocks with If-Match, rotations and assignment, eligibility,
links, operations endpoints, and the shape of every error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from store.db import Database
from syncd.api import create_app
from syncd.config import ApiConfig, ApiToken
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.conftest import Clock, make_config, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: a Monday
TOKENS = (ApiToken("hd", "w-token", ("write",)), ApiToken("ro", "r-token", ("read",)),
          ApiToken("root", "a-token", ("admin",)))
W = {"Authorization": "Bearer w-token"}
R = {"Authorization": "Bearer r-token"}
A = {"Authorization": "Bearer a-token"}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def at(hours: float, days: int = 0) -> str:
    return iso(T0 + timedelta(days=days, hours=hours))


def error(response: Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Check the error contract: JSON ``{"error", "message"}``, one line, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str)
    assert body["message"] and "\n" not in body["message"], body
    assert "Traceback" not in response.text and 'File "' not in response.text
    if code is not None:
        assert body["error"] == code, body
    return body


AppFactory = Callable[..., TestClient]


@pytest.fixture
def service(database: Database, clock: Clock) -> Syncd:
    config = dataclasses.replace(make_config([user("alice", "work")]), api=ApiConfig(tokens=TOKENS))
    svc = Syncd(config, database, clock=clock)
    svc.prepare()
    return svc


@pytest.fixture
def make_client(database: Database, clock: Clock) -> Iterator[AppFactory]:
    """Clients over a service with a given ApiConfig (closed at the end of the test)."""
    opened: list[TestClient] = []

    def build(api: ApiConfig | None = None, *, scheduler_alive: Callable[[], bool] = lambda: True,
              raise_server_exceptions: bool = True) -> TestClient:
        config = dataclasses.replace(make_config([user("alice", "work")]),
                                     api=api if api is not None else ApiConfig(tokens=TOKENS))
        svc = Syncd(config, database, clock=clock)
        svc.prepare()
        client = TestClient(create_app(svc, metrics=Metrics(database, clock), scheduler_alive=scheduler_alive),
                            raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        opened.append(client)
        return client

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(service: Syncd, database: Database, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as c:
        yield c


def put_user(client: TestClient, uid: str, **body: Any) -> Response:
    """PUT a user with a write token; with an admin one when it changes calendar links."""
    body.setdefault("email", f"{uid}@example.com")
    body.setdefault("timezone", "Europe/Stockholm")
    return client.put(f"/v1/users/{uid}", json=body, headers=A if "calendars" in body else W)


def add_block(client: TestClient, uid: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/v1/users/{uid}/ooo", json=body, headers=W)
    assert response.status_code == 201, response.text
    block = dict(response.json())
    assert block.pop("warnings") == []  # no team minimums here
    return block


def members(rotation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["user"]: m for m in rotation["members"]}


# -- auth --------------------------------------------------------------------------------
def test_missing_or_wrong_token_is_401_with_www_authenticate(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dzp0b2tlbg=="},
                    {"Authorization": "Bearer "}, {"Authorization": "w-token"}):
        response = client.get("/v1/users", headers=headers)
        error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_read_token_on_write_endpoint_is_403(client: TestClient) -> None:
    response = client.put("/v1/users/bob", json={"email": "bob@example.com", "timezone": "UTC"}, headers=R)
    body = error(response, 403, "forbidden")
    assert "write" in body["message"] and "ro" in body["message"]
    assert "www-authenticate" not in response.headers
    assert client.get("/v1/users/bob", headers=A).status_code == 404  # nothing was created


def test_scopes_nest_admin_write_read(client: TestClient) -> None:
    for headers in (R, W, A):
        assert client.get("/v1/users", headers=headers).status_code == 200
    for i, headers in enumerate((W, A)):
        created = client.put(f"/v1/users/u{i}", json={"email": f"u{i}@example.com", "timezone": "UTC"},
                             headers=headers)
        assert created.status_code == 201, created.text
    for headers in (R, W):
        error(client.post("/v1/links/1/release-deletions", headers=headers), 403, "forbidden")
    assert client.post("/v1/links/1/release-deletions", headers=A).status_code == 200


def test_no_tokens_configured_is_401_naming_the_config_key(make_client: AppFactory) -> None:
    client = make_client(ApiConfig())
    for headers in ({}, W, A):
        body = error(client.get("/v1/users", headers=headers), 401, "unauthorized")
        assert "[api]" in body["message"] and "tokens" in body["message"]
    assert client.get("/healthz").status_code == 200  # public by default, even without tokens


def test_health_and_metrics_are_public_by_default(client: TestClient) -> None:
    assert client.get("/healthz").json()["ok"] is True
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_health_and_metrics_need_a_token_when_not_public(make_client: AppFactory) -> None:
    client = make_client(ApiConfig(tokens=TOKENS, public_health=False))
    for path in ("/healthz", "/readyz", "/metrics"):
        response = client.get(path)
        error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        error(client.get(path, headers={"Authorization": "Bearer wrong"}), 401)
        assert client.get(path, headers=R).status_code == 200


# -- users -------------------------------------------------------------------------------
def test_put_user_creates_then_updates(client: TestClient) -> None:
    created = put_user(client, "bob", timezone="America/New_York", working_hours={"mon": "09:00-17:00"},
                       calendars=[{"account": "mem", "calendar": "bob-cal", "direction": "pull"}])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == "bob" and body["origin"] == "api" and body["timezone"] == "America/New_York"
    assert body["working_hours"]["mon"] == ["09:00-17:00"]
    assert [(c["account"], c["calendar"], c["direction"], c["sync_ooo"]) for c in body["calendars"]] == \
        [("mem", "bob-cal", "pull", True)]

    updated = put_user(client, "bob", email="robert@example.com", timezone="Europe/Berlin")
    assert updated.status_code == 200, updated.text
    body = updated.json()
    assert body["email"] == "robert@example.com" and body["timezone"] == "Europe/Berlin"
    assert [c["calendar"] for c in body["calendars"]] == ["bob-cal"]  # calendars left out: kept as they are
    assert client.get("/v1/users/bob", headers=R).json() == body
    emptied = put_user(client, "bob", email="robert@example.com", timezone="Europe/Berlin", calendars=[])
    assert emptied.status_code == 200 and emptied.json()["calendars"] == []  # the whole list: none left


@pytest.mark.parametrize(("body", "needle"), [
    ({"email": "bob@example.com", "timezone": "Mars/Olympus"}, "time zone"),
    ({"email": "no-at-sign", "timezone": "UTC"}, "email"),
    ({"timezone": "UTC"}, "email"),
    ({"email": "bob@example.com", "timezone": "UTC", "calendars": [{"account": "nope", "calendar": "x"}]},
     "account"),
    ({"email": "bob@example.com", "timezone": "UTC",
      "calendars": [{"account": "mem", "calendar": "x", "direction": "sideways"}]}, "direction"),
    ({"email": "bob@example.com", "timezone": "UTC", "working_hours": {"mon": "17:00-09:00"}}, "working_hours"),
    ({"email": "bob@example.com", "timezone": "UTC", "working_hours": {"funday": "09:00-17:00"}}, "working_hours"),
    ({"email": "bob@example.com", "timezone": "UTC", "working_hours": {"mon": "9 to 5"}}, "working_hours"),
    ({"email": "bob@example.com", "timezone": "UTC", "colour": "blue"}, "colour"),
])
def test_put_user_validation_is_422_with_one_line(client: TestClient, body: dict[str, Any], needle: str) -> None:
    response = client.put("/v1/users/bob", json=body, headers=W)
    message = error(response, 422, "invalid")["message"]
    assert needle in message, message
    error(client.get("/v1/users/bob", headers=R), 404, "not_found")


def test_config_users_are_read_only(client: TestClient) -> None:
    body = error(put_user(client, "alice", timezone="UTC"), 409, "config_owned")
    assert "test.toml" in body["message"]
    error(client.delete("/v1/users/alice", headers=W), 409, "config_owned")
    got = client.get("/v1/users/alice", headers=R).json()
    assert got["origin"] == "config" and got["timezone"] == "Europe/Stockholm"


def test_delete_user_then_404(client: TestClient) -> None:
    assert put_user(client, "bob").status_code == 201
    response = client.delete("/v1/users/bob", headers=W)
    assert response.status_code == 204 and response.content == b""
    error(client.get("/v1/users/bob", headers=R), 404, "not_found")
    error(client.delete("/v1/users/bob", headers=W), 404, "not_found")
    error(client.get("/v1/users/bob/status", headers=R), 404, "not_found")


def test_list_users_by_status(client: TestClient) -> None:
    assert put_user(client, "bob").status_code == 201
    assert put_user(client, "carol").status_code == 201
    assert client.put("/v1/users/bob/status", json={"status": "away"}, headers=W).status_code == 200
    everyone = client.get("/v1/users", headers=R).json()
    assert [u["id"] for u in everyone] == ["alice", "bob", "carol"]
    assert {u["id"]: u["origin"] for u in everyone} == {"alice": "config", "bob": "api", "carol": "api"}
    away = client.get("/v1/users", params={"status": "away"}, headers=R).json()
    assert [(u["id"], u["status"], u["reason"]) for u in away] == [("bob", "away", "manual")]
    available = client.get("/v1/users", params={"status": "available"}, headers=R).json()
    assert [u["id"] for u in available] == ["alice", "carol"]
    error(client.get("/v1/users", params={"status": "busy"}, headers=R), 422, "invalid")


# -- teams -------------------------------------------------------------------------------
def test_teams_put_get_and_unknown_member(client: TestClient) -> None:
    assert put_user(client, "bob").status_code == 201
    created = client.put("/v1/teams/support", json={"members": ["bob", "alice", "bob"]}, headers=W)
    assert created.status_code == 201, created.text
    # Without a schedule: no working hours (a 24/7 business-time clock), the daemon's holidays; no minimum.
    unscheduled = {"origin": "api", "timezone": None, "working_hours": {}, "holidays": None, "days_off": []}
    assert created.json() == {"id": "support", "members": ["alice", "bob"], **unscheduled, "min_available": 0}
    updated = client.put("/v1/teams/support", json={"members": ["bob"], "min_available": 1}, headers=W)
    assert updated.status_code == 200
    assert updated.json() == {"id": "support", "members": ["bob"], **unscheduled, "min_available": 1}
    assert client.get("/v1/teams/support", headers=R).json() == {"id": "support", "members": ["bob"],
                                                                 **unscheduled, "min_available": 1}

    body = error(client.put("/v1/teams/support", json={"members": ["bob", "ghost"]}, headers=W), 404, "not_found")
    assert "ghost" in body["message"]
    assert client.get("/v1/teams/support", headers=R).json()["members"] == ["bob"]  # unchanged
    error(client.get("/v1/teams/nope", headers=R), 404, "not_found")
    error(client.put("/v1/teams/x", json={"members": "bob"}, headers=W), 422, "invalid")
    error(client.put("/v1/teams/x", json={"members": ["bob"], "min_available": -1}, headers=W), 422, "invalid")


# -- status ------------------------------------------------------------------------------
def test_status_now_future_and_past(client: TestClient, clock: Clock) -> None:
    block = add_block(client, "alice", start=at(24), end=at(48), title="Trip")
    now = client.get("/v1/users/alice/status", headers=R).json()
    assert now["user"] == "alice" and now["status"] == "available" and now["until"] == block["start"]
    assert set(now) == {"user", "status", "reason", "since", "until", "blocks"}

    future = client.get("/v1/users/alice/status", params={"at": at(30)}, headers=R).json()
    assert (future["status"], future["reason"], future["blocks"], future["until"]) == \
        ("away", "ooo_started", [block["id"]], block["end"])
    offset = client.get("/v1/users/alice/status", params={"at": "2026-03-03T16:00:00+05:00"}, headers=R).json()
    assert offset["status"] == "away"  # 11:00Z, inside the block
    after = client.get("/v1/users/alice/status", params={"at": at(49)}, headers=R).json()
    assert after["status"] == "available" and after["blocks"] == []

    assert client.put("/v1/users/alice/status", json={"status": "away"}, headers=W).status_code == 200
    clock.advance(timedelta(hours=2))
    assert client.put("/v1/users/alice/status", json={"status": "available"}, headers=W).status_code == 200
    clock.advance(timedelta(hours=2))
    past = client.get("/v1/users/alice/status", params={"at": at(1)}, headers=R).json()
    assert (past["status"], past["reason"]) == ("away", "manual")
    assert past["since"] == at(0) and past["until"] == at(2)


def test_status_at_a_past_instant_before_any_change(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(24), end=at(26))
    response = client.get("/v1/users/alice/status", params={"at": at(-5)}, headers=R)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["blocks"]) == ("available", [])
    assert body["until"] == block["start"]


def test_status_at_must_have_an_offset(client: TestClient) -> None:
    body = error(client.get("/v1/users/alice/status", params={"at": "2026-03-03T10:00:00"}, headers=R),
                 422, "invalid")
    assert "offset" in body["message"]
    error(client.get("/v1/users/alice/status", params={"at": "tomorrow"}, headers=R), 422, "invalid")
    error(client.get("/v1/users/ghost/status", headers=R), 404, "not_found")


def test_put_status_manual_away_and_back(client: TestClient) -> None:
    away = client.put("/v1/users/alice/status", json={"status": "away"}, headers=W)
    assert away.status_code == 200
    assert (away.json()["status"], away.json()["reason"], away.json()["since"]) == ("away", "manual", at(0))
    back = client.put("/v1/users/alice/status", json={"status": "available"}, headers=W).json()
    assert (back["status"], back["reason"]) == ("available", "manual")
    error(client.put("/v1/users/alice/status", json={"status": "busy"}, headers=W), 422, "invalid")
    error(client.put("/v1/users/alice/status", json={}, headers=W), 422, "invalid")


def test_available_while_ooo_needs_end_ooo_early(client: TestClient, clock: Clock) -> None:
    block = add_block(client, "alice", start=at(-1), end=at(8), title="Dentist")
    other = add_block(client, "alice", start=at(-2), end=at(3))
    assert client.get("/v1/users/alice/status", headers=R).json()["status"] == "away"

    refused = client.put("/v1/users/alice/status", json={"status": "available"}, headers=W)
    body = error(refused, 409, "confirmation_required")
    assert sorted(body["blocks"]) == sorted([block["id"], other["id"]])
    assert body["field"] == "end_ooo_early" and body["until"] == at(8)
    assert block["id"] in body["message"] and "end_ooo_early" in body["message"]
    # nothing changed
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json() == block
    assert client.get(f"/v1/ooo/{other['id']}", headers=R).json() == other
    status = client.get("/v1/users/alice/status", headers=R).json()
    assert (status["status"], status["reason"]) == ("away", "ooo_started")

    clock.advance(timedelta(minutes=30))
    confirmed = client.put("/v1/users/alice/status", json={"status": "available", "end_ooo_early": True}, headers=W)
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["status"], confirmed.json()["reason"]) == ("available", "ooo_ended_early")
    assert confirmed.json()["since"] == at(0.5)
    ended = client.get(f"/v1/ooo/{block['id']}", headers=R).json()
    assert ended["end"] == at(0.5) and ended["start"] == block["start"] and ended["revision"] == 2
    assert client.get(f"/v1/ooo/{other['id']}", headers=R).json()["end"] == at(0.5)


def test_away_while_ooo_changes_nothing_but_the_status(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(-1), end=at(8))
    response = client.put("/v1/users/alice/status", json={"status": "away", "end_ooo_early": True}, headers=W)
    assert response.status_code == 200 and response.json()["status"] == "away"
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json() == block


# -- OOO blocks --------------------------------------------------------------------------
def test_create_timed_block_with_etag(client: TestClient) -> None:
    response = client.post("/v1/users/alice/ooo", json={"start": "2026-03-05T10:00:00+01:00",
                                                         "end": "2026-03-05T12:00:00+01:00", "title": "Doctor"},
                           headers=W)
    assert response.status_code == 201, response.text
    block = response.json()
    assert set(block) == {"id", "start", "end", "all_day", "title", "source", "revision", "replacement", "warnings"}
    assert (block["start"], block["end"], block["all_day"], block["title"], block["revision"]) == \
        ("2026-03-05T09:00:00Z", "2026-03-05T11:00:00Z", False, "Doctor", 1)
    assert block["source"] == "helpdesk"
    assert response.headers["etag"] == '"1"'


def test_create_all_day_block_in_the_users_zone(client: TestClient) -> None:
    block = add_block(client, "alice", date="2026-03-10", to_date="2026-03-12", title="Skiing")
    # Europe/Stockholm is UTC+1 in March: local midnights
    assert (block["start"], block["end"], block["all_day"]) == ("2026-03-09T23:00:00Z", "2026-03-12T23:00:00Z", True)
    single = add_block(client, "alice", date="2026-03-20")
    assert (single["start"], single["end"]) == ("2026-03-19T23:00:00Z", "2026-03-20T23:00:00Z")
    assert put_user(client, "nyc", timezone="America/New_York").status_code == 201
    ny = add_block(client, "nyc", date="2026-03-10")
    assert (ny["start"], ny["end"]) == ("2026-03-10T04:00:00Z", "2026-03-11T04:00:00Z")
    error(client.post("/v1/users/alice/ooo", json={"date": "2026-03-12", "to_date": "2026-03-10"}, headers=W),
          422, "invalid")


def test_list_and_get_blocks(client: TestClient) -> None:
    late = add_block(client, "alice", start=at(48), end=at(50))
    early = add_block(client, "alice", start=at(24), end=at(26))
    listed = client.get("/v1/users/alice/ooo", headers=R)
    assert listed.status_code == 200 and listed.json() == [early, late]
    one = client.get(f"/v1/ooo/{late['id']}", headers=R)
    assert one.json() == late and one.headers["etag"] == '"1"'
    error(client.get("/v1/ooo/nope", headers=R), 404, "not_found")
    error(client.get("/v1/users/ghost/ooo", headers=R), 404, "not_found")
    error(client.post("/v1/users/ghost/ooo", json={"start": at(1), "end": at(2)}, headers=W), 404, "not_found")


def test_patch_with_if_match(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(24), end=at(26), title="Trip")
    patched = client.patch(f"/v1/ooo/{block['id']}", json={"end": at(30)}, headers={**W, "If-Match": '"1"'})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["revision"], patched.json()["start"], patched.json()["end"]) == (2, at(24), at(30))
    assert patched.headers["etag"] == '"2"'

    stale = client.patch(f"/v1/ooo/{block['id']}", json={"end": at(40)}, headers={**W, "If-Match": '"1"'})
    body = error(stale, 412, "stale_revision")
    assert body["revision"] == 2
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json()["end"] == at(30)  # unchanged

    weak = client.patch(f"/v1/ooo/{block['id']}", json={"start": at(25)}, headers={**W, "If-Match": 'W/"2"'})
    assert weak.status_code == 200 and weak.json()["revision"] == 3
    anything = client.patch(f"/v1/ooo/{block['id']}", json={"title": "x"}, headers={**W, "If-Match": "*"})
    assert anything.status_code == 200 and anything.json()["revision"] == 4
    error(client.patch(f"/v1/ooo/{block['id']}", json={"title": "y"}, headers={**W, "If-Match": "abc"}),
          422, "invalid")
    error(client.patch("/v1/ooo/nope", json={"title": "y"}, headers=W), 404, "not_found")


def test_title_only_patch_keeps_times(client: TestClient) -> None:
    timed = add_block(client, "alice", start=at(24), end=at(26), title="Trip")
    renamed = client.patch(f"/v1/ooo/{timed['id']}", json={"title": "Conference"}, headers=W).json()
    assert (renamed["start"], renamed["end"], renamed["all_day"], renamed["title"]) == \
        (timed["start"], timed["end"], False, "Conference")
    all_day = add_block(client, "alice", date="2026-03-10", to_date="2026-03-11")
    renamed = client.patch(f"/v1/ooo/{all_day['id']}", json={"title": "Holiday"}, headers=W).json()
    assert (renamed["start"], renamed["end"], renamed["all_day"], renamed["title"]) == \
        (all_day["start"], all_day["end"], True, "Holiday")
    moved = client.patch(f"/v1/ooo/{all_day['id']}", json={"to_date": "2026-03-13"}, headers=W).json()
    assert (moved["start"], moved["end"], moved["title"]) == (all_day["start"], "2026-03-13T23:00:00Z", "Holiday")


def test_delete_block_with_if_match(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(24), end=at(26))
    body = error(client.delete(f"/v1/ooo/{block['id']}", headers={**W, "If-Match": '"7"'}), 412, "stale_revision")
    assert body["revision"] == 1
    deleted = client.delete(f"/v1/ooo/{block['id']}", headers={**W, "If-Match": '"1"'})
    assert deleted.status_code == 204 and deleted.content == b""
    error(client.get(f"/v1/ooo/{block['id']}", headers=R), 404, "not_found")
    assert client.get("/v1/users/alice/ooo", headers=R).json() == []
    error(client.delete(f"/v1/ooo/{block['id']}", headers=W), 404, "not_found")


def test_deleting_the_covering_block_makes_the_user_available(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(-1), end=at(5))
    assert client.get("/v1/users/alice/status", headers=R).json()["status"] == "away"
    assert client.delete(f"/v1/ooo/{block['id']}", headers=W).status_code == 204
    status = client.get("/v1/users/alice/status", headers=R).json()
    assert (status["status"], status["reason"]) == ("available", "ooo_ended")


def test_end_block_early(client: TestClient, clock: Clock) -> None:
    block = add_block(client, "alice", start=at(-1), end=at(5))
    clock.advance(timedelta(minutes=10))
    ended = client.post(f"/v1/ooo/{block['id']}/end", headers=W)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["end"], ended.json()["revision"]) == (at(10 / 60), 2)
    assert ended.headers["etag"] == '"2"'
    status = client.get("/v1/users/alice/status", headers=R).json()
    assert (status["status"], status["reason"]) == ("available", "ooo_ended_early")

    future = add_block(client, "alice", start=at(24), end=at(26))
    assert "delete" in error(client.post(f"/v1/ooo/{future['id']}/end", headers=W), 422, "invalid")["message"]
    error(client.post("/v1/ooo/nope/end", headers=W), 404, "not_found")


@pytest.mark.parametrize(("body", "needle"), [
    ({"start": "2026-03-05T10:00:00", "end": "2026-03-05T12:00:00+01:00"}, "offset"),
    ({"start": "2026-03-05T10:00:00Z", "end": "2026-03-05T12:00:00"}, "offset"),
    ({"start": "2026-03-05T10:00:00Z", "end": "2026-03-05T12:00:00Z", "date": "2026-03-05"}, "not both"),
    ({"start": "2026-03-05T10:00:00Z"}, "start and end"),
    ({"title": "nothing else"}, "start and end"),
    ({"start": "2026-03-05T12:00:00Z", "end": "2026-03-05T10:00:00Z"}, ""),
    ({"start": "soon", "end": "2026-03-05T10:00:00Z"}, "start"),
    ({"date": "2026-03-05", "colour": "red"}, "colour"),
])
def test_bad_block_bodies_are_422(client: TestClient, body: dict[str, Any], needle: str) -> None:
    message = error(client.post("/v1/users/alice/ooo", json=body, headers=W), 422, "invalid")["message"]
    assert needle in message, message
    assert client.get("/v1/users/alice/ooo", headers=R).json() == []


def test_patch_with_naive_or_mixed_times_is_422(client: TestClient) -> None:
    block = add_block(client, "alice", start=at(24), end=at(26))
    error(client.patch(f"/v1/ooo/{block['id']}", json={"end": "2026-03-05T12:00:00"}, headers=W), 422, "invalid")
    error(client.patch(f"/v1/ooo/{block['id']}", json={"end": at(30), "to_date": "2026-03-06"}, headers=W),
          422, "invalid")
    assert client.get(f"/v1/ooo/{block['id']}", headers=R).json() == block


# -- rotations ---------------------------------------------------------------------------
@pytest.fixture
def people(client: TestClient) -> TestClient:
    for uid in ("bob", "carol", "dave"):
        assert put_user(client, uid).status_code == 201
    return client


def create_rotation(client: TestClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Triage")
    response = client.post("/v1/rotations", json=body, headers=W)
    assert response.status_code == 201, response.text
    return dict(response.json())


def assign(client: TestClient, rotation: str, key: str, **body: Any) -> Response:
    return client.post(f"/v1/rotations/{rotation}/assign", json={"idempotency_key": key, **body}, headers=W)


def test_create_rotation_with_members_and_teams(people: TestClient) -> None:
    client = people
    assert client.put("/v1/teams/tier2", json={"members": ["bob", "carol"]}, headers=W).status_code == 201
    rotation = create_rotation(client, members=["alice"], teams=["tier2"])
    assert rotation["name"] == "Triage" and rotation["policy"] == "reset" and rotation["id"]
    assert rotation["users"] == ["alice"] and rotation["teams"] == ["tier2"]
    assert sorted(members(rotation)) == ["alice", "bob", "carol"]
    got = client.get(f"/v1/rotations/{rotation['id']}", headers=R).json()
    assert {**got, "next": None} == {**rotation, "next": None}  # a tie is broken at random
    assert got["next"] in {"alice", "bob", "carol"}
    assert [r["id"] for r in client.get("/v1/rotations", headers=R).json()] == [rotation["id"]]

    error(client.post("/v1/rotations", json={"name": "x", "members": ["ghost"]}, headers=W), 404, "not_found")
    error(client.post("/v1/rotations", json={"name": "x", "teams": ["nope"]}, headers=W), 404, "not_found")
    error(client.post("/v1/rotations", json={"name": ""}, headers=W), 422, "invalid")
    error(client.post("/v1/rotations", json={"name": "x", "policy": "lottery"}, headers=W), 422, "invalid")
    error(client.get("/v1/rotations/nope", headers=R), 404, "not_found")
    assert len(client.get("/v1/rotations", headers=R).json()) == 1  # failed creations left nothing behind


def test_members_follow_their_team(people: TestClient) -> None:
    client = people
    client.put("/v1/teams/tier2", json={"members": ["bob"]}, headers=W)
    rotation = create_rotation(client, members=["alice"], teams=["tier2"])
    rid = rotation["id"]
    client.put("/v1/teams/tier2", json={"members": ["bob", "carol"]}, headers=W)
    assert sorted(members(client.get(f"/v1/rotations/{rid}", headers=R).json())) == ["alice", "bob", "carol"]
    client.put("/v1/teams/tier2", json={"members": ["carol"]}, headers=W)
    assert sorted(members(client.get(f"/v1/rotations/{rid}", headers=R).json())) == ["alice", "carol"]
    # a team member can't be removed directly; a deleted user leaves the rotation
    error(client.delete(f"/v1/rotations/{rid}/members/carol", headers=W), 422, "invalid")
    assert client.delete("/v1/users/carol", headers=W).status_code == 204
    assert sorted(members(client.get(f"/v1/rotations/{rid}", headers=R).json())) == ["alice"]


def test_add_remove_and_toggle_members(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice"])["id"]
    added = client.post(f"/v1/rotations/{rid}/members", json={"user": "bob"}, headers=W)
    assert added.status_code == 200 and sorted(members(added.json())) == ["alice", "bob"]
    assert added.json()["users"] == ["alice", "bob"]

    toggled = client.patch(f"/v1/rotations/{rid}/members/bob", json={"available": False}, headers=W).json()
    bob = members(toggled)["bob"]
    assert (bob["available"], bob["eligible"], bob["reason"]) == (False, False, "toggled_off")
    assert toggled["next"] == "alice"
    toggled = client.patch(f"/v1/rotations/{rid}/members/bob", json={"available": True}, headers=W).json()
    assert members(toggled)["bob"]["eligible"] is True

    removed = client.delete(f"/v1/rotations/{rid}/members/bob", headers=W)
    assert removed.status_code == 200 and sorted(members(removed.json())) == ["alice"]
    error(client.delete(f"/v1/rotations/{rid}/members/bob", headers=W), 404, "not_found")
    error(client.patch(f"/v1/rotations/{rid}/members/bob", json={"available": False}, headers=W), 404)
    error(client.post(f"/v1/rotations/{rid}/members", json={"user": "ghost"}, headers=W), 404, "not_found")
    error(client.post("/v1/rotations/nope/members", json={"user": "bob"}, headers=W), 404, "not_found")
    error(client.patch(f"/v1/rotations/{rid}/members/alice", json={"available": "maybe"}, headers=W), 422)


def test_get_rotation_shows_counts_eligibility_and_reasons(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob", "carol"])["id"]
    block = add_block(client, "carol", start=at(-1), end=at(6))
    client.patch(f"/v1/rotations/{rid}/members/bob", json={"available": False}, headers=W)
    assert assign(client, rid, "k1").json()["member"] == "alice"
    shown = members(client.get(f"/v1/rotations/{rid}", headers=R).json())
    assert (shown["alice"]["assignments"], shown["alice"]["recent"], shown["alice"]["last_assigned_at"]) == \
        (1, 1, at(0))
    assert shown["alice"]["eligible"] is True and shown["alice"]["reason"] is None
    assert (shown["bob"]["eligible"], shown["bob"]["reason"], shown["bob"]["assignments"]) == \
        (False, "toggled_off", 0)
    assert (shown["carol"]["eligible"], shown["carol"]["reason"], shown["carol"]["available_at"],
            shown["carol"]["status"]) == (False, "ooo_started", block["end"], "away")
    later = members(client.get(f"/v1/rotations/{rid}", params={"at": at(7)}, headers=R).json())
    assert later["carol"]["eligible"] is True


def test_next_previews_without_assigning(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob"])["id"]
    assign(client, rid, "first")
    before = client.get(f"/v1/rotations/{rid}", headers=R).json()
    previews = {client.get(f"/v1/rotations/{rid}/next", headers=R).json()["member"] for _ in range(5)}
    assert len(previews) == 1
    after = client.get(f"/v1/rotations/{rid}", headers=R).json()
    assert after == before
    nxt = client.get(f"/v1/rotations/{rid}/next", headers=R).json()
    assert nxt["member"] == after["next"] and nxt["eligible"][0] == nxt["member"]
    assert nxt["ineligible"] == [] and nxt["next_available_at"] is None
    assert assign(client, rid, "second").json()["member"] == nxt["member"]
    error(client.get(f"/v1/rotations/{rid}/next", params={"start": "2026-03-05T10:00:00"}, headers=R), 422)
    error(client.get("/v1/rotations/nope/next", headers=R), 404, "not_found")


def test_assign_is_idempotent(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob", "carol"])["id"]
    first = assign(client, rid, "ticket-1", start=at(1), end=at(2))
    assert first.status_code == 200, first.text
    made = first.json()
    assert made["member"] in {"alice", "bob", "carol"} and made["replayed"] is False
    assert (made["rotation"], made["start"], made["end"], made["created_at"]) == (rid, at(1), at(2), at(0))
    for _ in range(3):
        again = assign(client, rid, "ticket-1", start=at(1), end=at(2)).json()
        assert again["assignment_id"] == made["assignment_id"] and again["member"] == made["member"]
        assert again["replayed"] is True
    shown = members(client.get(f"/v1/rotations/{rid}", headers=R).json())
    assert sum(m["assignments"] for m in shown.values()) == 1
    error(assign(client, rid, ""), 422, "invalid")
    error(assign(client, rid, "k", start=at(2), end=at(1)), 422, "invalid")
    error(assign(client, rid, "k", start="2026-03-05T10:00:00"), 422, "invalid")
    error(assign(client, "nope", "k"), 404, "not_found")


def test_fewest_assignments_is_fair(people: TestClient, clock: Clock) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob", "carol", "dave"])["id"]
    picked = []
    for i in range(12):
        picked.append(assign(client, rid, f"t{i}").json()["member"])
        clock.advance(timedelta(minutes=1))
        counts = [m["assignments"] for m in client.get(f"/v1/rotations/{rid}", headers=R).json()["members"]]
        assert max(counts) - min(counts) <= 1
    assert sorted(picked[:4]) == ["alice", "bob", "carol", "dave"]
    assert picked[4:8] == picked[:4] and picked[8:] == picked[:4]  # then least recently assigned
    assert {m["assignments"] for m in client.get(f"/v1/rotations/{rid}", headers=R).json()["members"]} == {3}


def test_member_ooo_at_the_meetings_start_is_skipped(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob"])["id"]
    add_block(client, "alice", start=at(24), end=at(30))
    for i in range(4):
        made = assign(client, rid, f"m{i}", start=at(25), end=at(26)).json()
        assert made["member"] == "bob"
    preview = client.get(f"/v1/rotations/{rid}/next", params={"start": at(25)}, headers=R).json()
    assert preview["member"] == "bob" and preview["eligible"] == ["bob"]
    assert preview["ineligible"] == [{"user": "alice", "reason": "ooo_started", "available_at": at(30)}]
    # at a time she is back, alice (fewer assignments) is chosen
    assert assign(client, rid, "later", start=at(31)).json()["member"] == "alice"


def test_nobody_eligible_is_409_with_reasons(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob"])["id"]
    add_block(client, "alice", start=at(24), end=at(30))
    add_block(client, "bob", start=at(20), end=at(28))
    body = error(assign(client, rid, "x", start=at(25)), 409, "nobody_eligible")
    assert body["eligible"] == []
    assert body["ineligible"] == [{"user": "alice", "reason": "ooo_started", "available_at": at(30)},
                                  {"user": "bob", "reason": "ooo_started", "available_at": at(28)}]
    assert body["next_available_at"] == at(28)
    assert all(m["assignments"] == 0 for m in client.get(f"/v1/rotations/{rid}", headers=R).json()["members"])

    client.patch(f"/v1/rotations/{rid}/members/alice", json={"available": False}, headers=W)
    client.patch(f"/v1/rotations/{rid}/members/bob", json={"available": False}, headers=W)
    body = error(assign(client, rid, "y"), 409, "nobody_eligible")
    assert body["next_available_at"] is None and {i["reason"] for i in body["ineligible"]} == {"toggled_off"}
    empty = create_rotation(client, name="Empty")
    body = error(assign(client, empty["id"], "z"), 409, "nobody_eligible")
    assert body["ineligible"] == [] and "no members" in body["message"]


def test_reset_policy_resets_counts_when_someone_joins(people: TestClient) -> None:
    client = people
    rid = create_rotation(client, members=["alice", "bob"])["id"]
    for i in range(4):
        assign(client, rid, f"r{i}")
    rotation = client.post(f"/v1/rotations/{rid}/members", json={"user": "carol"}, headers=W).json()
    assert {u: m["assignments"] for u, m in members(rotation).items()} == {"alice": 0, "bob": 0, "carol": 0}


def test_calibrate_policy_starts_newcomers_at_the_average(people: TestClient) -> None:
    client = people
    rotation = create_rotation(client, members=["alice", "bob"], policy="calibrate")
    assert rotation["policy"] == "calibrate"
    rid = rotation["id"]
    for i in range(4):
        assign(client, rid, f"c{i}")
    rotation = client.post(f"/v1/rotations/{rid}/members", json={"user": "carol"}, headers=W).json()
    assert {u: m["assignments"] for u, m in members(rotation).items()} == {"alice": 2, "bob": 2, "carol": 2}


# -- eligibility -------------------------------------------------------------------------
def test_eligible_now_and_at(people: TestClient) -> None:
    client = people
    block = add_block(client, "alice", start=at(-1), end=at(3))
    client.put("/v1/users/carol/status", json={"status": "away"}, headers=W)
    answer = client.post("/v1/eligible", json={"users": ["alice", "bob", "carol", "ghost", "bob"]}, headers=R)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["eligible"] == ["bob"]
    assert body["ineligible"] == [
        {"user": "alice", "reason": "ooo_started", "available_at": block["end"], "route_to": None},
        {"user": "carol", "reason": "manual", "available_at": None, "route_to": None},
        {"user": "ghost", "reason": "unknown_user", "available_at": None, "route_to": None},
    ]
    later = client.post("/v1/eligible", json={"users": ["alice", "bob"], "at": at(4)}, headers=R).json()
    assert later == {"eligible": ["alice", "bob"], "ineligible": []}
    error(client.post("/v1/eligible", json={"users": ["alice"], "at": "2026-03-02T10:00:00"}, headers=R), 422)
    error(client.post("/v1/eligible", json={"users": "alice"}, headers=R), 422, "invalid")
    assert client.post("/v1/eligible", json={"users": []}, headers=R).json() == {"eligible": [], "ineligible": []}


# -- links and operations ----------------------------------------------------------------
def test_links_and_release_deletions_are_admin_only(client: TestClient) -> None:
    for headers in (R, W):
        error(client.get("/v1/links", headers=headers), 403, "forbidden")
        error(client.post("/v1/links/1/release-deletions", headers=headers), 403, "forbidden")
    links = client.get("/v1/links", headers=A)
    assert links.status_code == 200
    [link] = links.json()
    assert (link["user"], link["account"], link["calendar"], link["enabled"]) == ("alice", "mem", "work", True)
    released = client.post(f"/v1/links/{link['id']}/release-deletions", headers=A)
    assert released.status_code == 200 and released.json()["id"] == link["id"]
    error(client.post("/v1/links/999/release-deletions", headers=A), 404, "not_found")
    error(client.post("/v1/links/abc/release-deletions", headers=A), 422, "invalid")


def test_readyz(make_client: AppFactory) -> None:
    client = make_client()
    ready = client.get("/readyz", headers=R)
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "checks": {"database": "ok", "scheduler": "ok", "links": "ok"}}
    assert client.get("/readyz").json() == {"ready": True, "failing": []}  # strangers learn no more
    stopped = make_client(scheduler_alive=lambda: False)
    assert stopped.get("/readyz", headers=R).status_code == 503
    assert stopped.get("/readyz", headers=R).json()["checks"]["scheduler"] == "not running"
    assert stopped.get("/readyz").json() == {"ready": False, "failing": ["scheduler"]}


def test_readyz_reports_overdue_links(make_client: AppFactory, clock: Clock) -> None:
    client = make_client()
    clock.advance(timedelta(hours=1))  # alice's link was due at T0 and nobody polled it
    response = client.get("/readyz", headers=R)
    assert response.status_code == 503 and "alice/mem/work" in response.json()["checks"]["links"]
    assert "alice" not in client.get("/readyz").text  # user ids are for a read token


def test_metrics_has_the_families(client: TestClient) -> None:
    assert put_user(client, "bob").status_code == 201
    client.put("/v1/users/bob/status", json={"status": "away"}, headers=W)
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("syncd_syncs", "syncd_sync_seconds", "syncd_outbox_undelivered",
                 "syncd_outbox_oldest_undelivered_seconds", "syncd_users", "syncd_links"):
        assert name in families, sorted(families)
    users = {s.labels["status"]: s.value for s in families["syncd_users"].samples}
    assert users == {"available": 1, "away": 1}
    links = {s.labels["state"]: s.value for s in families["syncd_links"].samples}
    assert links["ok"] == 1


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    error(client.get("/v2/nothing", headers=A), 404)
    error(client.get("/nope"), 404)
    not_allowed = client.post("/healthz")
    error(not_allowed, 405)
    assert not_allowed.headers["allow"] == "GET"
    error(client.put("/v1/users/alice/status", content=b"{not json", headers={**W, "Content-Type": "application/json"}),
          422, "invalid")


def test_unexpected_errors_are_json_without_traceback(make_client: AppFactory, database: Database) -> None:
    client = make_client(raise_server_exceptions=False)

    def broken_driver(*_a: Any, **_k: Any) -> None:  # not an error of syncd's tree: a bug somewhere below
        raise RuntimeError('secret detail\nTraceback (most recent call last):\n  File "x.py"')

    for engine in {database.engine, database.read_engine}:
        event.listen(engine, "before_cursor_execute", broken_driver)
    try:
        body = error(client.get("/v1/users/alice/status", headers=R), 500, "internal")
    finally:
        for engine in {database.engine, database.read_engine}:
            event.remove(engine, "before_cursor_execute", broken_driver)
    assert "secret" not in body["message"]


def test_openapi_document_describes_the_api(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 401  # api.public_docs is off by default
    doc = client.get("/openapi.json", headers=R).json()
    paths = doc["paths"]
    for path in ("/v1/users/{user_id}", "/v1/users", "/v1/teams/{team_id}", "/v1/users/{user_id}/status",
                 "/v1/users/{user_id}/ooo", "/v1/ooo/{block_id}", "/v1/ooo/{block_id}/end", "/v1/rotations",
                 "/v1/rotations/{rotation_id}", "/v1/rotations/{rotation_id}/members",
                 "/v1/rotations/{rotation_id}/members/{user_id}", "/v1/rotations/{rotation_id}/next",
                 "/v1/rotations/{rotation_id}/assign", "/v1/eligible", "/v1/links", "/healthz", "/readyz",
                 "/metrics"):
        assert path in paths, path
    assert "412" in paths["/v1/ooo/{block_id}"]["patch"]["responses"]
    assert "201" in paths["/v1/users/{user_id}"]["put"]["responses"]


def test_the_status_event_schema_is_served_without_a_token(client: TestClient) -> None:
    from syncd.core.events import STATUS_EVENT_SCHEMA

    answer = client.get("/v1/schema/status-event.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/schema+json")
    assert answer.json() == STATUS_EVENT_SCHEMA
