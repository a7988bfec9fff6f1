"""Team absence feeds through the real ASGI app, on SQLite and PostgreSQL: making, listing and
revoking them (admin scope), and the feed itself, fetched by its secret URL alone and read
back with icalendar."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import pytest
from fastapi.testclient import TestClient

from store.db import Database
from syncd.api import create_app
from syncd.config import ApiConfig, ApiToken
from syncd.service import Syncd
from syncd.service import feeds as feeds_module
from tests.conftest import Clock, make_config, user
from tests.known_secrets import register

PUBLIC = "https://syncd.example.com/hd"
TOKENS = (ApiToken("hd", "w-token", ("write",)), ApiToken("root", "a-token", ("admin",)))
W = {"Authorization": "Bearer w-token"}
A = {"Authorization": "Bearer a-token"}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def build(database: Database, clock: Clock, public_url: str | None = PUBLIC) -> TestClient:
    config = dataclasses.replace(make_config([user("alice", "work")]),
                                 api=ApiConfig(tokens=TOKENS, public_url=public_url))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    return TestClient(create_app(service))


@pytest.fixture(autouse=True)
def quiet_test_client() -> Iterator[None]:
    """The test's HTTP client logs every URL it requests, feed tokens included; syncd logs none,
    which is what the secrets check is for."""
    client_log = logging.getLogger("httpx2")
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    yield
    client_log.setLevel(level)


@pytest.fixture
def client(database: Database, clock: Clock) -> Iterator[TestClient]:
    with build(database, clock) as c:
        for uid in ("ada", "bo", "cy"):
            assert c.put(f"/v1/users/{uid}", json={"email": f"{uid}@example.com", "timezone": "Europe/Stockholm"},
                         headers=W).status_code == 201
        assert c.put("/v1/teams/support", json={"members": ["ada", "bo"]}, headers=W).status_code == 201
        yield c


def block(c: TestClient, uid: str, **body: Any) -> dict[str, Any]:
    response = c.post(f"/v1/users/{uid}/ooo", json=body, headers=W)
    assert response.status_code == 201, response.text
    return dict(response.json())


def make_feed(c: TestClient, **body: Any) -> dict[str, Any]:
    response = c.post("/v1/teams/support/feeds", json=body, headers=A)
    assert response.status_code == 201, response.text
    made = dict(response.json())
    register(made["url"].rsplit("/", 1)[1].removesuffix(".ics"))  # no log line may show it
    return made


def path_of(url: str) -> str:
    assert url.startswith(f"{PUBLIC}/feeds/") and url.endswith(".ics")
    return url.removeprefix(PUBLIC)


def events(body: bytes) -> dict[str, icalendar.Event]:
    cal = icalendar.Calendar.from_ical(body)
    return {str(e["UID"]): e for e in cal.walk("VEVENT")}


def test_feed_holds_the_members_blocks_in_its_window(client: TestClient) -> None:
    timed = block(client, "ada", start=iso(T0 + timedelta(days=1)), end=iso(T0 + timedelta(days=1, hours=4)),
                  title="Dentist")
    all_day = block(client, "bo", date="2026-03-05", to_date="2026-03-06", title="Skiing in Åre")
    earlier = block(client, "ada", start=iso(T0 - timedelta(days=20)), end=iso(T0 - timedelta(days=19)))
    block(client, "ada", start=iso(T0 - timedelta(days=40)), end=iso(T0 - timedelta(days=39)))  # before the window
    block(client, "bo", start=iso(T0 + timedelta(days=400)), end=iso(T0 + timedelta(days=401)))  # after it
    block(client, "cy", start=iso(T0 + timedelta(days=1)), end=iso(T0 + timedelta(days=2)))  # not in the team
    gone = block(client, "bo", start=iso(T0 + timedelta(days=3)), end=iso(T0 + timedelta(days=4)))
    assert client.delete(f"/v1/ooo/{gone['id']}", headers=W).status_code == 204

    made = make_feed(client)
    assert made["team"] == "support" and made["show_titles"] is False and made["created_at"] == iso(T0)
    response = client.get(path_of(made["url"]))  # no Authorization header
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    assert response.headers["cache-control"] == "private, no-cache"
    cal = icalendar.Calendar.from_ical(response.content)
    assert str(cal["X-WR-CALNAME"]) == "support — away"
    assert b"\r\nX-PUBLISHED-TTL:PT1H\r\n" in response.content  # calendar apps refresh hourly
    assert b"\r\nREFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n" in response.content
    found = events(response.content)
    assert set(found) == {f"{b['id']}@syncd" for b in (timed, all_day, earlier)}
    ada = found[f"{timed['id']}@syncd"]
    assert str(ada["SUMMARY"]) == "ada — away"
    assert ada.decoded("DTSTART") == T0 + timedelta(days=1) and ada.decoded("DTEND") == T0 + timedelta(days=1, hours=4)
    bo = found[f"{all_day['id']}@syncd"]
    assert str(bo["SUMMARY"]) == "bo — away"
    assert bo["DTSTART"].params.get("VALUE") == "DATE"
    assert bo.decoded("DTSTART") == date(2026, 3, 5) and bo.decoded("DTEND") == date(2026, 3, 7)  # exclusive
    assert b"Dentist" not in response.content and "Åre".encode() not in response.content
    assert str(ada["TRANSP"]) == "TRANSPARENT"


def test_titles_only_when_asked(client: TestClient) -> None:
    b = block(client, "bo", date="2026-03-05", title="Skiing in Åre")
    response = client.get(path_of(make_feed(client, show_titles=True)["url"]))
    assert str(events(response.content)[f"{b['id']}@syncd"]["SUMMARY"]) == "bo — away: Skiing in Åre"
    plain = client.get(path_of(make_feed(client)["url"]))
    assert str(events(plain.content)[f"{b['id']}@syncd"]["SUMMARY"]) == "bo — away"
    assert plain.headers["etag"] != response.headers["etag"]  # different bytes, different tags


def test_etag_answers_304_until_something_changes(client: TestClient, clock: Clock) -> None:
    b = block(client, "ada", start=iso(T0 + timedelta(days=1)), end=iso(T0 + timedelta(days=2)))
    path = path_of(make_feed(client)["url"])
    first = client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    clock.advance(timedelta(minutes=10))
    again = client.get(path)
    assert again.content == first.content and again.headers["etag"] == etag  # stable: UIDs, stamps, order
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        same = client.get(path, headers={"If-None-Match": header})
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
    moved = client.patch(f"/v1/ooo/{b['id']}", json={"start": iso(T0 + timedelta(days=1)),
                                                    "end": iso(T0 + timedelta(days=3))},
                         headers={**W, "If-Match": str(b["revision"])})
    assert moved.status_code == 200, moved.text
    changed = client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    event = events(changed.content)[f"{b['id']}@syncd"]
    assert event.decoded("DTEND") == T0 + timedelta(days=3) and int(event["SEQUENCE"]) == 1


def test_list_shows_no_secret_and_revoke_works_at_once(client: TestClient) -> None:
    one, two = make_feed(client), make_feed(client, show_titles=True)
    assert one["url"] != two["url"]
    listed = client.get("/v1/teams/support/feeds", headers=A)
    assert listed.status_code == 200
    assert {f["id"] for f in listed.json()} == {one["id"], two["id"]}
    assert all(set(f) == {"id", "team", "show_titles", "created_at"} for f in listed.json())
    for made in (one, two):
        assert made["url"].rsplit("/", 1)[1].removesuffix(".ics") not in listed.text
    assert client.get(path_of(one["url"])).status_code == 200
    assert client.delete(f"/v1/teams/support/feeds/{one['id']}", headers=A).status_code == 204
    revoked = client.get(path_of(one["url"]))
    assert revoked.status_code == 404 and revoked.json()["error"] == "not_found"
    assert client.get(path_of(two["url"])).status_code == 200  # the other one still works
    again = client.delete(f"/v1/teams/support/feeds/{one['id']}", headers=A)
    assert again.status_code == 404 and "GET /v1/teams/support/feeds" in again.json()["message"]
    assert [f["id"] for f in client.get("/v1/teams/support/feeds", headers=A).json()] == [two["id"]]


def test_wrong_tokens_all_get_the_same_404(client: TestClient) -> None:
    make_feed(client)
    answers = [client.get(f"/feeds/{name}") for name in (
        "A" * 43 + ".ics",  # the right shape, no such feed
        "short.ics", "A" * 43, "A" * 43 + ".ICS", "x" * 500 + ".ics", "A" * 42 + "!.ics")]
    for response in answers:
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "not_found"
        assert "\n" not in response.json()["message"]


def test_feed_calls_need_the_admin_scope_and_a_team(client: TestClient) -> None:
    assert client.post("/v1/teams/support/feeds", json={}, headers=W).status_code == 403
    assert client.get("/v1/teams/support/feeds", headers=W).status_code == 403
    assert client.post("/v1/teams/support/feeds", json={}).status_code == 401
    missing = client.post("/v1/teams/ghosts/feeds", json={}, headers=A)
    assert missing.status_code == 404 and "PUT /v1/teams/ghosts" in missing.json()["message"]
    assert client.post("/v1/teams/support/feeds", json={"show_titles": "maybe"}, headers=A).status_code == 422
    assert client.post("/v1/teams/support/feeds", json={"titles": True}, headers=A).status_code == 422


def test_a_feed_needs_the_public_url(database: Database, clock: Clock) -> None:
    with build(database, clock, public_url=None) as c:
        c.put("/v1/teams/t", json={"members": ["alice"]}, headers=W)
        response = c.post("/v1/teams/t/feeds", json={}, headers=A)
        assert response.status_code == 409 and "api.public_url" in response.json()["message"]


def test_feed_size_is_capped_at_the_earliest_blocks(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    made = [block(client, "ada", start=iso(T0 + timedelta(days=d)), end=iso(T0 + timedelta(days=d, hours=1)))
            for d in (5, 1, 3, 2)]
    monkeypatch.setattr(feeds_module, "MAX_BLOCKS", 3)  # the documented bound, made small
    found = events(client.get(path_of(make_feed(client)["url"])).content)
    assert set(found) == {f"{made[i]['id']}@syncd" for i in (1, 3, 2)}
