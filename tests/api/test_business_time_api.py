"""Team schedules and the business-hours clock through the real ASGI app, on SQLite and
PostgreSQL: a Stockholm team on Swedish holidays (the daemon's), a New York team on its own,
a 24/7 team, and a team from the config file."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from store.db import Database
from syncd.api import create_app
from syncd.config import ApiConfig, TeamConfig
from syncd.core.daysoff import DaysOffSpec, HolidayRule
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.api.test_api import TOKENS, R, W, error
from tests.conftest import Clock, make_config, user

WEEKDAYS = {day: "09:00-17:00" for day in ("mon", "tue", "wed", "thu", "fri")}
NIGHT_DESK = TeamConfig("nights", ("alice",), "Europe/Stockholm",
                        {d: ((time(0), time(6)),) for d in range(7)}, DaysOffSpec(False))


def local(tz: str, y: int, mo: int, d: int, h: int = 0) -> str:
    return datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def client(database: Database, clock: Clock) -> Iterator[TestClient]:
    config = make_config([user("alice", tz="Europe/Stockholm"), user("dana", tz="America/New_York")],
                         days_off=DaysOffSpec(HolidayRule("SE"), frozenset({date(2026, 12, 24)})))
    config = dataclasses.replace(config, api=ApiConfig(tokens=TOKENS), teams=(NIGHT_DESK,))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as c:
        assert c.put("/v1/teams/support", json={"members": ["alice"], "timezone": "Europe/Stockholm",
                                                "working_hours": WEEKDAYS}, headers=W).status_code == 201
        assert c.put("/v1/teams/us", json={"members": ["dana"], "timezone": "America/New_York",
                                           "working_hours": WEEKDAYS, "holidays": {"country": "US", "subdivision":
                                                                                   "NY"}},
                     headers=W).status_code == 201
        assert c.put("/v1/teams/noc", json={"members": ["alice", "dana"]}, headers=W).status_code == 201
        yield c


def business_time(client: TestClient, team: str, **params: str) -> dict[str, Any]:
    response = client.get(f"/v1/teams/{team}/business-time", params=params, headers=R)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_the_team_keeps_its_schedule(client: TestClient) -> None:
    got = client.get("/v1/teams/us", headers=R).json()
    assert got == {"id": "us", "members": ["dana"], "origin": "api", "timezone": "America/New_York",
                   "working_hours": {d: ["09:00-17:00"] for d in WEEKDAYS},
                   "holidays": {"country": "US", "subdivision": "NY", "observed": True}, "days_off": [],
                   "min_available": 0}


def test_an_sla_due_time_skips_the_weekend_and_christmas(client: TestClient) -> None:
    got = business_time(client, "support", start=local("Europe/Stockholm", 2026, 6, 5, 15), add="8h")
    assert got == {"team": "support", "start": local("Europe/Stockholm", 2026, 6, 5, 15), "clock": "working_hours",
                   "add": "8h", "add_seconds": 28800, "due": local("Europe/Stockholm", 2026, 6, 8, 15)}
    # Wednesday 23 Dec 15:00: 2 h that day; the 24th (the company's), Juldagen, Annandag jul, a weekend.
    got = business_time(client, "support", start=local("Europe/Stockholm", 2026, 12, 23, 15), add="8h")
    assert got["due"] == local("Europe/Stockholm", 2026, 12, 28, 15)


def test_time_spent_across_thanksgiving_in_new_york(client: TestClient) -> None:
    got = business_time(client, "us", start=local("America/New_York", 2026, 11, 25, 9),
                        end=local("America/New_York", 2026, 11, 28, 9))
    assert got["working_seconds"] == 16 * 3600  # Wednesday and Friday; not Thanksgiving Thursday
    # The same days in Stockholm's team: three working days (no Thanksgiving there).
    got = business_time(client, "support", start=local("Europe/Stockholm", 2026, 11, 25, 9),
                        end=local("Europe/Stockholm", 2026, 11, 28, 9))
    assert got["working_seconds"] == 24 * 3600


def test_a_team_without_working_hours_answers_plain_arithmetic(client: TestClient) -> None:
    got = business_time(client, "noc", start="2026-12-24T20:00:00Z", add="1d2h")
    assert (got["clock"], got["due"]) == ("24/7", "2026-12-25T22:00:00Z")
    got = business_time(client, "noc", start="2026-12-24T20:00:00Z", end="2026-12-25T20:00:00Z")
    assert got["working_seconds"] == 86400


def test_a_team_from_the_config_file_is_read_only_and_keeps_its_schedule(client: TestClient) -> None:
    got = client.get("/v1/teams/nights", headers=R).json()
    assert (got["origin"], got["holidays"], got["working_hours"]["sun"]) == ("config", False, ["00:00-06:00"])
    # Midnight to six, every day, holidays included (the team has none): Christmas morning counts.
    assert business_time(client, "nights", start=local("Europe/Stockholm", 2026, 12, 24, 12),
                         add="7h")["due"] == local("Europe/Stockholm", 2026, 12, 26, 1)
    error(client.put("/v1/teams/nights", json={"members": []}, headers=W), 409, "config_owned")


@pytest.mark.parametrize(("params", "message"), [
    ({"start": "2026-06-01T09:00:00Z"}, "either add"),
    ({"start": "2026-06-01T09:00:00Z", "add": "8h", "end": "2026-06-02T09:00:00Z"}, "either add"),
    ({"start": "2026-06-01T09:00:00Z", "add": "8 hours"}, "add: bad duration '8 hours'"),
    ({"start": "2026-06-01T09:00:00Z", "add": "400d"}, "at most 366 days"),
    ({"start": "2026-06-01T09:00:00Z", "end": "2026-05-01T09:00:00Z"}, "before start"),
    ({"start": "2026-06-01T09:00:00Z", "end": "2027-06-03T09:00:00Z"}, "at most 366 days apart"),
    ({"start": "2026-06-01T09:00:00", "add": "8h"}, "no UTC offset"),
])
def test_bad_questions_are_422_with_a_reason(client: TestClient, params: dict[str, str], message: str) -> None:
    body = error(client.get("/v1/teams/support/business-time", params=params, headers=R), 422)
    assert message in body["message"], body


def test_bad_schedules_and_unknown_teams(client: TestClient) -> None:
    body = error(client.put("/v1/teams/t", json={"members": [], "working_hours": WEEKDAYS}, headers=W), 422)
    assert body["message"].startswith("timezone is required with working_hours")
    body = error(client.put("/v1/teams/t", json={"members": [], "holidays": {"country": "XX"}}, headers=W), 422)
    assert body["message"].startswith("holidays.country: unknown country 'XX'")
    body = error(client.put("/v1/teams/t", json={"members": [], "timezone": "Mars/Olympus"}, headers=W), 422)
    assert "unknown time zone" in body["message"]
    error(client.get("/v1/teams/nope/business-time", params={"start": "2026-06-01T09:00:00Z", "add": "1h"},
                     headers=R), 404)
    error(client.get("/v1/teams/support/business-time", params={"start": "2026-06-01T09:00:00Z", "add": "1h"}), 401)
