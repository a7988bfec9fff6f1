"""Public holidays and company days off end to end, through the real ASGI app on SQLite and
PostgreSQL: Stockholm with Swedish holidays (the daemon's default) and New York with those of
the state of New York (a per-user override); the timeline, the status, the published events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from store.db import Database
from store.models import OutboxRow
from syncd.api import create_app
from syncd.config import ApiConfig
from syncd.core.daysoff import DaysOffSpec, HolidayRule
from syncd.core.events import STATUS_EVENT_SCHEMA
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.api.test_api import TOKENS, R, W, error
from tests.conftest import Clock, make_config, user

WEEKDAYS_9_17 = {d: ((time(9), time(17)),) for d in range(5)}
DAEMON_DAYS_OFF = DaysOffSpec(HolidayRule("SE"), frozenset({date(2026, 12, 24)}))


def local(tz: str, y: int, mo: int, d: int, h: int = 0) -> datetime:
    return datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def sthlm(y: int, mo: int, d: int, h: int = 0) -> str:
    return iso(local("Europe/Stockholm", y, mo, d, h))


def nyc(y: int, mo: int, d: int, h: int = 0) -> str:
    return iso(local("America/New_York", y, mo, d, h))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build(database: Database, clock: Clock, **daemon: Any) -> Syncd:
    users = [user("alice", "work", tz="Europe/Stockholm", working_hours=WEEKDAYS_9_17),
             user("dana", "work", tz="America/New_York", working_hours=WEEKDAYS_9_17,
                  days_off=DaysOffSpec(HolidayRule("US", "NY")))]
    config = dataclasses.replace(make_config(users, days_off=DAEMON_DAYS_OFF, **daemon), api=ApiConfig(tokens=TOKENS))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    return service


@pytest.fixture
def service(database: Database, clock: Clock) -> Syncd:
    clock.set(datetime(2026, 12, 21, 12, tzinfo=UTC))  # the Monday before Christmas
    return build(database, clock)


@pytest.fixture
def client(service: Syncd, database: Database, clock: Clock) -> Iterator[TestClient]:
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as c:
        yield c


def events(database: Database) -> list[dict[str, Any]]:
    with database.session() as s:
        return [r.payload for r in s.scalars(select(OutboxRow).order_by(OutboxRow.seq))]


def timeline(client: TestClient, uid: str, start: str, end: str) -> list[tuple[Any, ...]]:
    response = client.get(f"/v1/users/{uid}/availability", params={"from": start, "to": end}, headers=R)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["user"], body["from"], body["to"]) == (uid, start, end)
    intervals = body["intervals"]
    assert intervals[0]["start"] == start and intervals[-1]["end"] == end
    assert all(a["end"] == b["start"] for a, b in zip(intervals, intervals[1:], strict=False))
    return [(i["start"], i["status"], i["reason"], i.get("holiday")) for i in intervals]


def test_christmas_in_two_countries_on_the_timeline(client: TestClient) -> None:
    # Stockholm: the company's day off on the 24th, then Juldagen and Annandag jul, in local days.
    assert timeline(client, "alice", sthlm(2026, 12, 23), sthlm(2026, 12, 28)) == [
        (sthlm(2026, 12, 23), "available", None, None),
        (sthlm(2026, 12, 24), "away", "day_off", None),
        (sthlm(2026, 12, 25), "away", "holiday", "Juldagen"),
        (sthlm(2026, 12, 26), "away", "holiday", "Annandag jul"),
        (sthlm(2026, 12, 27), "available", None, None),
    ]
    # New York: the same company day off (the daemon's days off are everyone's), its own Christmas,
    # no Boxing Day; the days begin at New York's midnight, six hours after Stockholm's.
    assert timeline(client, "dana", nyc(2026, 12, 23), nyc(2026, 12, 28)) == [
        (nyc(2026, 12, 23), "available", None, None),
        (nyc(2026, 12, 24), "away", "day_off", None),
        (nyc(2026, 12, 25), "away", "holiday", "Christmas Day"),
        (nyc(2026, 12, 26), "available", None, None),
    ]


def test_holiday_transitions_are_published_with_their_names(service: Syncd, database: Database,
                                                            clock: Clock) -> None:
    validator = jsonschema.Draft202012Validator(STATUS_EVENT_SCHEMA)
    for instant in (local("Europe/Stockholm", 2026, 12, 24), local("America/New_York", 2026, 12, 24),
                    local("America/New_York", 2026, 12, 26), local("Europe/Stockholm", 2026, 12, 27)):
        clock.set(instant - timedelta(seconds=30))
        service.stage_ahead()  # as the daemon does: queued ahead, due at the instant
        clock.set(instant)
        service.advance_due()
    service.advance_all()
    got = events(database)
    for event in got:
        validator.validate(event)
    assert [(e["user"]["id"], e["status"], e["reason"], e["effective_at"], e.get("holiday")) for e in got] == [
        ("alice", "away", "day_off", sthlm(2026, 12, 24), None),
        ("dana", "away", "day_off", nyc(2026, 12, 24), None),
        ("dana", "available", "holiday", nyc(2026, 12, 26), "Christmas Day"),
        ("alice", "available", "holiday", sthlm(2026, 12, 27), "Annandag jul"),
    ]


def test_a_holiday_starting_the_absence_is_named_in_the_event(service: Syncd, database: Database,
                                                              clock: Clock) -> None:
    clock.set(local("America/New_York", 2027, 11, 25, 1))  # after a long quiet spell: published on the way
    service.advance_all()
    dana = [e for e in events(database) if e["user"]["id"] == "dana"]
    assert [(e["status"], e["reason"], e["effective_at"], e.get("holiday")) for e in dana][-1] == \
        ("away", "holiday", nyc(2027, 11, 25), "Thanksgiving Day")
    status = service.status("dana")
    assert (status.status, status.reason, status.until) == ("away", "holiday",
                                                             local("America/New_York", 2027, 11, 26))


def test_away_until_after_a_holiday_monday(client: TestClient) -> None:
    # Memorial Day is Monday 2027-05-31: OOO Friday to Sunday, back on Tuesday at 00:00 in New York.
    block = client.post("/v1/users/dana/ooo", json={"date": "2027-05-28", "to_date": "2027-05-30"}, headers=W)
    assert block.status_code == 201, block.text
    body = client.get("/v1/users/dana/status", params={"at": nyc(2027, 5, 28, 12)}, headers=R).json()
    assert (body["status"], body["reason"], body["until"]) == ("away", "ooo_started", nyc(2027, 6, 1))
    on_the_holiday = client.get("/v1/users/dana/status", params={"at": nyc(2027, 5, 31, 12)}, headers=R).json()
    assert (on_the_holiday["status"], on_the_holiday["reason"]) == ("away", "holiday")


def test_away_until_the_first_working_hour_after_easter(database: Database, clock: Clock) -> None:
    clock.set(datetime(2026, 3, 30, 12, tzinfo=UTC))
    service = build(database, clock, away_outside_working_hours=True)
    with TestClient(create_app(service, metrics=Metrics(database, clock))) as client:
        # OOO on Skärtorsdag (a working day); Långfredag, the weekend and Annandag påsk follow.
        added = client.post("/v1/users/alice/ooo", json={"date": "2026-04-02"}, headers=W)
        assert added.status_code == 201, added.text
        body = client.get("/v1/users/alice/status", params={"at": sthlm(2026, 4, 2, 12)}, headers=R).json()
        assert (body["status"], body["until"]) == ("away", sthlm(2026, 4, 7, 9))


def test_a_manual_change_on_a_holiday_holds_until_the_next_transition(client: TestClient, clock: Clock) -> None:
    clock.set(local("Europe/Stockholm", 2026, 12, 25, 10))
    response = client.put("/v1/users/alice/status", json={"status": "available"}, headers=W)
    assert response.status_code == 200 and response.json()["reason"] == "manual", response.text
    # Juldagen into Annandag jul is no transition (away both days): the manual change holds through both.
    assert timeline(client, "alice", sthlm(2026, 12, 25), sthlm(2026, 12, 28)) == [
        (sthlm(2026, 12, 25), "away", "holiday", "Juldagen"),
        (sthlm(2026, 12, 25, 10), "available", "manual", None),
        (sthlm(2026, 12, 27), "available", None, None),
    ]
    assert client.get("/v1/users/alice/status", params={"at": sthlm(2026, 12, 26, 12)}, headers=R).json()[
        "status"] == "available"


def test_timeline_limits_and_errors(client: TestClient) -> None:
    start = "2026-12-01T00:00:00Z"
    body = error(client.get("/v1/users/alice/availability", params={"from": start, "to": "2027-03-02T00:00:01Z"},
                            headers=R), 422)
    assert "at most 90 days" in body["message"]
    assert timeline(client, "alice", start, "2027-03-01T00:00:00Z")[0][0] == start  # exactly 90 days is fine
    body = error(client.get("/v1/users/alice/availability", params={"from": start, "to": start}, headers=R), 422)
    assert "must be after" in body["message"]
    error(client.get("/v1/users/alice/availability", params={"from": "2026-12-01T00:00:00", "to": start},
                     headers=R), 422)
    error(client.get("/v1/users/alice/availability", params={"to": start}, headers=R), 422)
    error(client.get("/v1/users/nobody/availability", params={"from": start, "to": "2026-12-02T00:00:00Z"},
                     headers=R), 404)
    error(client.get("/v1/users/alice/availability", params={"from": start, "to": "2026-12-02T00:00:00Z"}), 401)


def test_api_users_take_holidays_and_days_off(client: TestClient) -> None:
    body = {"email": "olav@example.com", "timezone": "Europe/Oslo", "holidays": {"country": "NO"},
            "days_off": ["2026-12-31"]}
    response = client.put("/v1/users/olav", json=body, headers=W)
    assert response.status_code == 201, response.text
    got = response.json()
    assert (got["holidays"], got["days_off"]) == ({"country": "NO", "subdivision": "", "observed": True},
                                                  ["2026-12-31"])
    oslo = [(i[0], i[2], i[3]) for i in timeline(client, "olav", "2026-12-30T23:00:00Z", "2027-01-02T23:00:00Z")]
    assert oslo == [("2026-12-30T23:00:00Z", "day_off", None), ("2026-12-31T23:00:00Z", "holiday", "Første nyttårsdag"),
                    ("2027-01-01T23:00:00Z", None, None)]
    # No holidays at all for this one, but still the company's day off on the 24th.
    response = client.put("/v1/users/olav", json={**body, "holidays": False, "days_off": []}, headers=W)
    assert response.json()["holidays"] is False
    assert [i[2] for i in timeline(client, "olav", "2026-12-23T23:00:00Z", "2026-12-26T23:00:00Z")] == \
        ["day_off", None]
    for bad, message in (({"country": "XX"}, "holidays.country: unknown country 'XX'"),
                         ({"country": "US", "subdivision": "ZZ"}, "holidays.subdivision: US has no subdivision 'ZZ'"),
                         ({"country": "SE", "observed": 1}, "holidays.observed: expected true or false"),
                         (True, "holidays: expected a table")):
        answer = error(client.put("/v1/users/olav", json={**body, "holidays": bad}, headers=W), 422)
        assert answer["message"].startswith(message), answer
    error(client.put("/v1/users/olav", json={**body, "holidays": 0}, headers=W), 422)  # not read as false
    answer = error(client.put("/v1/users/olav", json={**body, "days_off": ["2026-12-32"]}, headers=W), 422)
    assert answer["message"].startswith("days_off[0]: '2026-12-32' is not a date"), answer


def test_users_first_seen_on_a_holiday_are_announced_away_with_its_name(database: Database, clock: Clock) -> None:
    clock.set(local("Europe/Stockholm", 2026, 12, 25, 3))  # Juldagen in Stockholm; Christmas Eve (the day off) in NY
    build(database, clock)
    assert [(e["user"]["id"], e["reason"], e["effective_at"], e.get("holiday")) for e in events(database)] == [
        ("alice", "holiday", iso(clock()), "Juldagen"), ("dana", "day_off", iso(clock()), None)]
