"""Weights and caps over the HTTP API (SQLite and PostgreSQL): given when a rotation is made
or changed per member, shown on every member, and steering `/assign`; bad values are 422."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_api import T0, R, W, client, error, iso, put_user, service  # noqa: F401 - fixtures
from tests.conftest import Clock


@pytest.fixture
def people(client: TestClient) -> TestClient:  # noqa: F811 - the imported fixture
    for uid in ("bob", "carol"):
        assert put_user(client, uid).status_code == 201
    return client


def members(rotation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["user"]: m for m in rotation["members"]}


def assign(client: TestClient, rid: str, key: str) -> str:  # noqa: F811
    response = client.post(f"/v1/rotations/{rid}/assign", json={"idempotency_key": key}, headers=W)
    assert response.status_code == 200, response.text
    return str(response.json()["member"])


def test_weights_and_caps_in_create_and_patch(people: TestClient, clock: Clock) -> None:
    c = people
    made = c.post("/v1/rotations", json={"name": "Chats", "cap_window": "1d", "members": [
        {"user": "alice", "weight": 2}, "bob", {"user": "carol", "cap": 2}]}, headers=W)
    assert made.status_code == 201, made.text
    rotation = made.json()
    rid = rotation["id"]
    assert rotation["cap_window"] == "1d" and rotation["users"] == ["alice", "bob", "carol"]
    assert {u: (m["weight"], m["cap"]) for u, m in members(rotation).items()} == \
        {"alice": (2.0, None), "bob": (1.0, None), "carol": (1.0, 2)}

    got = Counter(assign(c, rid, f"k{i}") for i in range(8))
    assert got["carol"] == 2 and got["alice"] == 4 and got["bob"] == 2, got
    view = members(c.get(f"/v1/rotations/{rid}", headers=R).json())["carol"]
    assert view["eligible"] is False and view["reason"] == "capacity"
    preview = c.get(f"/v1/rotations/{rid}/next", headers=R).json()
    assert {"user": "carol", "reason": "capacity", "available_at": iso(T0 + timedelta(days=1))} in preview["ineligible"]

    patched = c.patch(f"/v1/rotations/{rid}/members/bob", json={"weight": 2}, headers=W)
    assert patched.status_code == 200 and members(patched.json())["bob"]["weight"] == 2.0
    assert members(patched.json())["bob"]["assignments"] == 4  # 2 at weight 1 is 4 at weight 2: load kept
    uncapped = c.patch(f"/v1/rotations/{rid}/members/carol", json={"cap": None}, headers=W).json()
    assert members(uncapped)["carol"]["cap"] is None and members(uncapped)["carol"]["eligible"] is True
    assert members(uncapped)["carol"]["weight"] == 1.0  # left out: kept
    windowless = c.patch(f"/v1/rotations/{rid}", json={"cap_window": None}, headers=W)
    assert windowless.status_code == 200 and windowless.json()["cap_window"] is None
    assert c.patch(f"/v1/rotations/{rid}", json={"cap_window": "90m"}, headers=W).json()["cap_window"] == "1h30m"


@pytest.mark.parametrize(("body", "needle"), [
    ({"weight": 0}, "weight"), ({"weight": -1}, "weight"), ({"weight": 1e9}, "weight"), ({"weight": "heavy"}, "weight"),
    ({"weight": None}, "weight cannot be null"), ({"available": None}, "available cannot be null"),
    ({"cap": 0}, "cap"), ({"cap": 1.5}, "cap"), ({}, "at least one of"), ({"count": 3}, "count"),
    ({"cap": 3}, "has none; give one"),
])
def test_bad_member_patches_are_422(people: TestClient, body: dict[str, Any], needle: str) -> None:
    rid = people.post("/v1/rotations", json={"name": "x", "members": ["bob"]}, headers=W).json()["id"]
    message = error(people.patch(f"/v1/rotations/{rid}/members/bob", json=body, headers=W), 422)["message"]
    assert needle in message, message


@pytest.mark.parametrize(("body", "needle"), [
    ({"cap_window": "soon"}, "cap_window: bad duration 'soon'"), ({"cap_window": "10s"}, "from 1m to 90d"),
    ({"cap_window": "365d"}, "from 1m to 90d"),
    ({"members": [{"user": "bob", "cap": 3}]}, "has none; give one"),
    ({"members": [{"user": "bob", "weight": 0}]}, "weight"),
    ({"members": [{"user": "bob", "shifts": 3}]}, "shifts"),
])
def test_bad_rotation_bodies_are_422(people: TestClient, body: dict[str, Any], needle: str) -> None:
    message = error(people.post("/v1/rotations", json={"name": "x", **body}, headers=W), 422)["message"]
    assert needle in message, message


def test_removing_the_window_with_caps_left_is_refused(people: TestClient) -> None:
    rid = people.post("/v1/rotations", json={"name": "x", "cap_window": "8h", "members": [
        {"user": "bob", "cap": 3}]}, headers=W).json()["id"]
    message = error(people.patch(f"/v1/rotations/{rid}", json={"cap_window": None}, headers=W), 422)["message"]
    assert "bob have a cap" in message and "remove their caps first" in message
    error(people.patch("/v1/rotations/nope", json={"cap_window": "1d"}, headers=W), 404, "not_found")
    error(people.patch(f"/v1/rotations/{rid}", json={"cap_window": "1d"}, headers=R), 403)
