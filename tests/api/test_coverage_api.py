"""Team coverage over the HTTP API: the intervals, the warnings on adding and moving a block,
the coverage event schema, and the team gauge (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from store.db import Database
from syncd.api import create_app
from syncd.core.events import COVERAGE_EVENT_SCHEMA
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.api.test_api import R, W, at, error, put_user, service  # noqa: F401 (the fixture)
from tests.conftest import Clock


@pytest.fixture
def client(service: Syncd, database: Database, clock: Clock) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as c:
        for uid in ("ada", "bo", "cy"):
            assert put_user(c, uid).status_code == 201
        assert c.put("/v1/teams/support", json={"members": ["ada", "bo", "cy"], "min_available": 2},
                     headers=W).status_code == 201
        yield c


def add(client: TestClient, uid: str, start: float, end: float) -> Any:
    return client.post(f"/v1/users/{uid}/ooo", json={"start": at(start), "end": at(end)}, headers=W)


def test_coverage_intervals_over_the_api(client: TestClient) -> None:
    assert add(client, "ada", 1, 3).json()["warnings"] == []
    got = client.get("/v1/teams/support/coverage", params={"from": at(0), "to": at(4)}, headers=R)
    assert got.status_code == 200, got.text
    assert got.json() == {"team": "support", "min_available": 2, "intervals": [
        {"start": at(0), "end": at(1), "available": 3, "members_available": ["ada", "bo", "cy"], "below_min": False},
        {"start": at(1), "end": at(3), "available": 2, "members_available": ["bo", "cy"], "below_min": False},
        {"start": at(3), "end": at(4), "available": 3, "members_available": ["ada", "bo", "cy"], "below_min": False},
    ]}


def test_adding_and_moving_a_block_warns_where_the_team_falls_below(client: TestClient) -> None:
    add(client, "ada", 1, 3)
    added = add(client, "bo", 2, 5)
    assert added.status_code == 201, added.text
    assert added.json()["warnings"] == [{"team": "support", "from": at(2), "to": at(3), "available": 1,
                                         "min_available": 2}]
    moved = client.patch(f"/v1/ooo/{added.json()['id']}", json={"start": at(4), "end": at(6)}, headers=W)
    assert moved.status_code == 200 and moved.json()["warnings"] == []
    assert moved.json()["revision"] == 2  # the block is changed all the same


def test_coverage_requests_are_checked(client: TestClient) -> None:
    error(client.get("/v1/teams/support/coverage", params={"from": at(0), "to": at(0, days=91)}, headers=R),
          422, "invalid")
    error(client.get("/v1/teams/support/coverage", params={"from": at(2), "to": at(1)}, headers=R), 422, "invalid")
    error(client.get("/v1/teams/support/coverage", params={"from": "2026-03-02T09:00:00", "to": at(1)},
                     headers=R), 422)
    error(client.get("/v1/teams/ghosts/coverage", params={"from": at(0), "to": at(1)}, headers=R), 404, "not_found")
    error(client.get("/v1/teams/support/coverage", params={"from": at(0)}, headers=R), 422)
    assert client.get("/v1/teams/support/coverage", params={"from": at(0), "to": at(1)}).status_code == 401


def test_the_schema_and_the_gauge(client: TestClient, clock: Clock) -> None:
    assert client.get("/v1/schema/coverage-event.json").json() == COVERAGE_EVENT_SCHEMA
    client.put("/v1/users/bo/status", json={"status": "away"}, headers=W)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics", headers=R).text)}
    samples = {s.labels["team"]: s.value for s in families["syncd_team_available"].samples}
    assert samples == {"support": 2.0}
    clock.advance(timedelta(minutes=1))
