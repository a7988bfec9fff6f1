"""The fake Google Calendar server, driven through the real Google client libraries."""

from __future__ import annotations

import email.utils
import http.client
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fakes.google_calendar import (
    ApiError,
    ControlError,
    FakeGoogleCalendar,
    NotificationRecord,
    call_control,
    serve_in_subprocess,
)

SCOPES = ["https://www.googleapis.com/auth/calendar.events"]
ALICE = "alice@example.com"
BOB = "bob@example.com"

OOO = {
    "id": "sdblk0000000001",
    "summary": "Out of office",
    "eventType": "outOfOffice",
    "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-06T18:00:00+01:00", "timeZone": "Europe/Berlin"},
    "outOfOfficeProperties": {"autoDeclineMode": "declineNone", "declineMessage": "Away"},
    "transparency": "opaque",
    "extendedProperties": {"private": {"syncdBlock": "blk-1"}},
}


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "summary": f"Meeting {n}",
        "start": {"dateTime": f"2026-03-{n + 1:02d}T10:00:00Z"},
        "end": {"dateTime": f"2026-03-{n + 1:02d}T11:00:00Z"},
        **extra,
    }


def _reason(err: HttpError) -> str:
    return json.loads(err.content)["error"]["errors"][0]["reason"]


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server


@pytest.fixture
def make_service(fake: FakeGoogleCalendar, private_key_pem: str) -> Iterator[Callable[..., Any]]:
    services: list[Any] = []

    def make(user: str = ALICE, *, refresh_token: str | None = None, timeout: float | None = None) -> Any:
        if refresh_token is not None:
            creds: Any = user_credentials.Credentials(
                token=None,
                refresh_token=refresh_token,
                client_id="client-id.apps.googleusercontent.com",
                client_secret="client-secret",
                token_uri=fake.token_uri,
            )
        else:
            info = {
                "type": "service_account",
                "project_id": "syncd-test",
                "private_key_id": "k1",
                "private_key": private_key_pem,
                "client_email": "syncd@syncd-test.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": fake.token_uri,
            }
            creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES).with_subject(user)
        if timeout is None:
            transport: dict[str, Any] = {"credentials": creds}
        else:  # build() takes credentials or an http, not both
            transport = {"http": google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(timeout=timeout))}
        service = build(
            "calendar",
            "v3",
            static_discovery=True,
            client_options={"api_endpoint": fake.api_endpoint},
            **transport,
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def test_insert_out_of_office_and_list_by_event_type(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any]
) -> None:
    cal = make_service()
    created = cal.events().insert(calendarId="primary", body=OOO).execute()
    assert created["id"] == OOO["id"]
    assert created["eventType"] == "outOfOffice"
    assert created["etag"].startswith('"')
    assert created["outOfOfficeProperties"]["autoDeclineMode"] == "declineNone"
    cal.events().insert(calendarId="primary", body=_event(1)).execute()

    listed = cal.events().list(calendarId="primary", eventTypes=["outOfOffice"]).execute()
    assert [e["id"] for e in listed["items"]] == [OOO["id"]]
    assert listed["items"][0]["extendedProperties"]["private"] == {"syncdBlock": "blk-1"}
    by_prop = cal.events().list(calendarId=ALICE, privateExtendedProperty="syncdBlock=blk-1").execute()
    assert [e["id"] for e in by_prop["items"]] == [OOO["id"]]
    assert len(cal.events().list(calendarId="primary").execute()["items"]) == 2

    # the token's user owns the calendar; the fake saw the impersonated subject
    assert {r.user for r in fake.requests if r.path.startswith("/calendar/")} == {ALICE}
    assert fake.token_requests[0]["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert fake.events(BOB, "primary") == []


def test_out_of_office_cannot_be_all_day(make_service: Callable[..., Any]) -> None:
    cal = make_service()
    body = {**OOO, "id": None, "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}
    del body["id"]
    with pytest.raises(HttpError) as info:
        cal.events().insert(calendarId="primary", body=body).execute()
    assert info.value.status_code == 400


def test_full_then_incremental_sync_shows_edit_and_deletion(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any]
) -> None:
    cal = make_service()
    a = fake.add_event(ALICE, "primary", _event(1))
    b = fake.add_event(ALICE, "primary", _event(2))
    full = cal.events().list(calendarId="primary").execute()
    assert {e["id"] for e in full["items"]} == {a["id"], b["id"]}
    token = full["nextSyncToken"]
    assert "nextPageToken" not in full

    quiet = cal.events().list(calendarId="primary", syncToken=token).execute()
    assert quiet["items"] == []

    fake.edit_event(ALICE, "primary", a["id"], {"summary": "Moved"})
    fake.delete_event(ALICE, "primary", b["id"])
    delta = cal.events().list(calendarId="primary", syncToken=token).execute()
    by_id = {e["id"]: e for e in delta["items"]}
    assert by_id[a["id"]]["summary"] == "Moved"
    assert by_id[a["id"]]["etag"] != a["etag"]
    assert by_id[b["id"]] == {"kind": "calendar#event", "etag": by_id[b["id"]]["etag"], "id": b["id"],
                              "status": "cancelled"}
    assert delta["nextSyncToken"]

    with pytest.raises(HttpError) as info:
        cal.events().list(calendarId="primary", syncToken=token, timeMin="2026-01-01T00:00:00Z").execute()
    assert info.value.status_code == 400

    # deleted events only show in full listings with showDeleted
    assert [e["id"] for e in cal.events().list(calendarId="primary").execute()["items"]] == [a["id"]]
    with_deleted = cal.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert {e["id"]: e["status"] for e in with_deleted} == {a["id"]: "confirmed", b["id"]: "cancelled"}


def test_expired_sync_token_is_410_full_sync_required(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any]
) -> None:
    cal = make_service()
    fake.add_event(ALICE, "primary", _event(1))
    token = cal.events().list(calendarId="primary").execute()["nextSyncToken"]
    fake.expire_sync_tokens(ALICE, "primary")
    with pytest.raises(HttpError) as info:
        cal.events().list(calendarId="primary", syncToken=token).execute()
    assert info.value.status_code == 410
    assert _reason(info.value) == "fullSyncRequired"
    with pytest.raises(HttpError) as info:
        cal.events().list(calendarId="primary", syncToken="garbage").execute()
    assert info.value.status_code == 410


def test_duplicate_client_id_is_409(make_service: Callable[..., Any]) -> None:
    cal = make_service()
    cal.events().insert(calendarId="primary", body=OOO).execute()
    with pytest.raises(HttpError) as info:
        cal.events().insert(calendarId="primary", body=OOO).execute()
    assert info.value.status_code == 409
    assert _reason(info.value) == "duplicate"
    with pytest.raises(HttpError) as info:
        cal.events().insert(calendarId="primary", body={**OOO, "id": "Not_Base32!"}).execute()
    assert info.value.status_code == 400


def test_patch_with_stale_etag_is_412(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    created = cal.events().insert(calendarId="primary", body=OOO).execute()
    fresh = cal.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "OOO v2"})
    fresh.headers["If-Match"] = created["etag"]
    patched = fresh.execute()
    assert patched["summary"] == "OOO v2"
    assert patched["extendedProperties"]["private"] == {"syncdBlock": "blk-1"}  # patch merges

    stale = cal.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "OOO v3"})
    stale.headers["If-Match"] = created["etag"]
    with pytest.raises(HttpError) as info:
        stale.execute()
    assert info.value.status_code == 412
    assert _reason(info.value) == "conditionNotMet"
    assert cal.events().get(calendarId="primary", eventId=created["id"]).execute()["summary"] == "OOO v2"

    without_props = {k: v for k, v in OOO.items() if k != "extendedProperties"}
    put = cal.events().update(calendarId="primary", eventId=created["id"], body=without_props | {"summary": "replaced"})
    put.headers["If-Match"] = patched["etag"]
    replaced = put.execute()
    assert replaced["summary"] == "replaced"
    assert "extendedProperties" not in replaced


def test_delete_twice_is_410_and_unknown_is_404(make_service: Callable[..., Any]) -> None:
    cal = make_service()
    created = cal.events().insert(calendarId="primary", body=_event(1)).execute()
    assert cal.events().delete(calendarId="primary", eventId=created["id"]).execute() == ""
    with pytest.raises(HttpError) as info:
        cal.events().delete(calendarId="primary", eventId=created["id"]).execute()
    assert info.value.status_code == 410
    assert _reason(info.value) == "deleted"
    with pytest.raises(HttpError) as info:
        cal.events().get(calendarId="primary", eventId="nosuchevent").execute()
    assert info.value.status_code == 404


def test_paging_with_max_results(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    ids = [fake.add_event(ALICE, "primary", _event(n))["id"] for n in range(5)]
    seen: list[str] = []
    pages = 0
    request = cal.events().list(calendarId="primary", maxResults=2)
    last: dict[str, Any] = {}
    while request is not None:
        last = request.execute()
        pages += 1
        assert len(last["items"]) <= 2
        assert ("nextPageToken" in last) != ("nextSyncToken" in last)
        seen += [e["id"] for e in last["items"]]
        request = cal.events().list_next(request, last)
    assert seen == ids
    assert pages == 3
    assert fake.request_count("GET", "/events") == 3


def test_batch_lists_for_two_users(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    alice, bob = make_service(ALICE), make_service(BOB)
    fake.add_event(ALICE, "primary", _event(1))
    fake.add_event(BOB, "primary", _event(2))
    fake.add_event(BOB, "primary", _event(3))
    # tokens first, so the batch itself is the only API request we count
    alice.events().list(calendarId="primary", maxResults=1).execute()
    bob.events().list(calendarId="primary", maxResults=1).execute()
    before = fake.request_count()

    results: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        results[request_id] = exception or response

    batch = BatchHttpRequest(callback=collect, batch_uri=fake.batch_uri)
    batch.add(alice.events().list(calendarId="primary"), request_id="alice-primary")
    batch.add(alice.events().list(calendarId=ALICE, eventTypes=["outOfOffice"]), request_id="alice-ooo")
    # parts built from another service carry that service's Authorization header
    batch.add(bob.events().list(calendarId="primary"), request_id="bob-primary")
    batch.add(alice.events().list(calendarId=BOB), request_id="alice-reads-bob")
    batch.execute(http=alice._http)

    assert fake.request_count() == before + 1
    assert len(results["alice-primary"]["items"]) == 1
    assert results["alice-ooo"]["items"] == []
    assert len(results["bob-primary"]["items"]) == 2
    assert isinstance(results["alice-reads-bob"], HttpError)
    assert results["alice-reads-bob"].status_code == 404
    assert fake.request_count(include_batch_parts=True) == before + 5


def test_injected_429_surfaces_with_retry_after(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    cal.events().list(calendarId="primary").execute()
    fake.fail_next(1, 429, "rateLimitExceeded", retry_after=7)
    with pytest.raises(HttpError) as info:
        cal.events().list(calendarId="primary").execute()
    assert info.value.status_code == 429
    assert info.value.resp["retry-after"] == "7"
    assert _reason(info.value) == "rateLimitExceeded"
    assert cal.events().list(calendarId="primary").execute()["items"] == []


def test_refresh_token_credentials_and_revocation(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    fake.add_refresh_token("1//refresh-bob", BOB)
    cal = make_service(refresh_token="1//refresh-bob")
    fake.add_event(BOB, "primary", _event(1))
    assert len(cal.events().list(calendarId="primary").execute()["items"]) == 1

    # an expired access token is refreshed transparently on 401
    fake.invalidate_access_tokens(BOB)
    assert len(cal.events().list(calendarId="primary").execute()["items"]) == 1

    fake.revoke_refresh_token("1//refresh-bob")
    with pytest.raises(google.auth.exceptions.RefreshError) as info:
        cal.events().list(calendarId="primary").execute()
    assert "invalid_grant" in str(info.value)


def test_watch_and_stop_channel(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    channel = cal.events().watch(
        calendarId="primary", body={"id": "chan-1", "type": "web_hook", "address": "https://syncd.example/hook"}
    ).execute()
    assert channel["resourceId"]
    assert fake.channels["chan-1"]["calendarId"] == ALICE
    cal.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    assert fake.channels["chan-1"]["stopped"] is True
    # the fake never leaves the machine: the sync message to a non-loopback address is recorded, not sent
    [sync] = fake.wait_notifications(1)
    assert (sync.channel_id, sync.resource_state, sync.status) == ("chan-1", "sync", None)
    assert sync.error is not None and sync.error.startswith("undeliverable")


def test_latency_hook(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    import time

    cal = make_service()
    cal.events().list(calendarId="primary").execute()
    fake.latency = 0.2
    started = time.monotonic()
    cal.events().list(calendarId="primary").execute()
    assert time.monotonic() - started >= 0.2


# ---------------------------------------------------------------------- recurring events
STANDUP: dict[str, Any] = {
    "id": "standup001",
    "summary": "Standup",
    "start": {"dateTime": "2026-03-02T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-03-02T10:30:00+01:00", "timeZone": "Europe/Berlin"},
    # Mondays until the end of April, not on 9 March; Berlin moves to summer time on 29 March
    "recurrence": ["RRULE:FREQ=WEEKLY;UNTIL=20260430T000000Z", "EXDATE;TZID=Europe/Berlin:20260309T100000"],
}
MAR16 = "standup001_20260316T090000Z"  # 10:00 CET
MAR23 = "standup001_20260323T090000Z"
MAR30 = "standup001_20260330T080000Z"  # 10:00 CEST


def _status(call: Callable[[], Any]) -> int:
    with pytest.raises(HttpError) as info:
        call()
    return int(info.value.status_code)


def test_recurring_instance_reads_as_a_copy_of_its_master(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any]
) -> None:
    cal = make_service()
    master = cal.events().insert(calendarId="primary", body=STANDUP).execute()
    assert master["recurrence"] == STANDUP["recurrence"]
    token = cal.events().list(calendarId="primary").execute()["nextSyncToken"]

    instance = cal.events().get(calendarId="primary", eventId=MAR16).execute()
    assert instance["id"] == MAR16
    assert instance["recurringEventId"] == master["id"]
    assert instance["originalStartTime"] == {"dateTime": "2026-03-16T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    assert instance["start"] == instance["originalStartTime"]
    assert instance["end"] == {"dateTime": "2026-03-16T10:30:00+01:00", "timeZone": "Europe/Berlin"}
    assert instance["iCalUID"] == master["iCalUID"]
    assert instance["etag"] == master["etag"]
    assert instance["summary"] == "Standup"
    assert "recurrence" not in instance
    # the series is expanded in its time zone: after the DST switch 10:00 local is 08:00 UTC
    summer = cal.events().get(calendarId="primary", eventId=MAR30).execute()
    assert summer["start"]["dateTime"] == "2026-03-30T10:00:00+02:00"

    for not_an_occurrence in (
        "standup001_20260330T090000Z",  # 11:00 local in summer time
        "standup001_20260309T090000Z",  # EXDATE
        "standup001_20260223T090000Z",  # before the first
        "standup001_20260504T080000Z",  # after UNTIL
        "standup001_20260316",  # all-day form for a timed series
    ):
        assert _status(cal.events().get(calendarId="primary", eventId=not_an_occurrence).execute) == 404
    single = cal.events().insert(calendarId="primary", body=_event(1, id="single0001")).execute()
    assert _status(cal.events().get(calendarId="primary", eventId=f"{single['id']}_20260302T100000Z").execute) == 404

    # reading an instance stores nothing
    assert cal.events().list(calendarId="primary", syncToken=token).execute()["items"] == [single]
    assert {e["id"] for e in fake.events(ALICE, "primary")} == {master["id"], single["id"]}


def test_writes_to_instances_store_exceptions(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    master = cal.events().insert(calendarId="primary", body=STANDUP).execute()
    token = cal.events().list(calendarId="primary").execute()["nextSyncToken"]

    moved = {"summary": "Standup (late)",
             "start": {"dateTime": "2026-03-16T11:00:00+01:00", "timeZone": "Europe/Berlin"},
             "end": {"dateTime": "2026-03-16T11:30:00+01:00", "timeZone": "Europe/Berlin"}}
    patch = cal.events().patch(calendarId="primary", eventId=MAR16, body=moved)
    patch.headers["If-Match"] = master["etag"]  # a not-yet-stored instance has its master's etag
    exception = patch.execute()
    assert exception["summary"] == "Standup (late)"
    assert exception["recurringEventId"] == master["id"]
    assert exception["originalStartTime"]["dateTime"] == "2026-03-16T10:00:00+01:00"
    assert exception["etag"] != master["etag"]
    assert cal.events().get(calendarId="primary", eventId=MAR16).execute()["summary"] == "Standup (late)"

    stale = cal.events().patch(calendarId="primary", eventId=MAR23, body={"summary": "x"})
    stale.headers["If-Match"] = '"1"'
    assert _status(stale.execute) == 412
    body = {k: v for k, v in STANDUP.items() if k not in ("id", "recurrence")}
    body["start"] = {"dateTime": "2026-03-23T10:00:00+01:00", "timeZone": "Europe/Berlin"}
    body["end"] = {"dateTime": "2026-03-23T10:15:00+01:00", "timeZone": "Europe/Berlin"}
    replaced = cal.events().update(calendarId="primary", eventId=MAR23, body=body | {"summary": "Short"}).execute()
    assert (replaced["summary"], replaced["recurringEventId"]) == ("Short", master["id"])
    assert _status(cal.events().patch(calendarId="primary", eventId=MAR23,
                                      body={"recurrence": ["RRULE:FREQ=DAILY"]}).execute) == 400

    assert cal.events().delete(calendarId="primary", eventId=MAR30).execute() == ""
    assert _status(cal.events().get(calendarId="primary", eventId=MAR30).execute) == 410
    assert _status(cal.events().delete(calendarId="primary", eventId=MAR30).execute) == 410

    # a full listing (singleEvents=false) includes the cancelled instance even without showDeleted
    full = {e["id"]: e for e in cal.events().list(calendarId="primary").execute()["items"]}
    assert set(full) == {master["id"], MAR16, MAR23, MAR30}
    assert full[MAR30] == {
        "kind": "calendar#event",
        "etag": full[MAR30]["etag"],
        "id": MAR30,
        "status": "cancelled",
        "recurringEventId": master["id"],
        "originalStartTime": {"dateTime": "2026-03-30T10:00:00+02:00", "timeZone": "Europe/Berlin"},
    }
    delta = {e["id"]: e for e in cal.events().list(calendarId="primary", syncToken=token).execute()["items"]}
    assert set(delta) == {MAR16, MAR23, MAR30}
    assert delta[MAR30] == full[MAR30]

    # ...but not the underlying recurring event once it is deleted, nor with singleEvents=true
    cal.events().delete(calendarId="primary", eventId=master["id"]).execute()
    assert master["id"] not in {e["id"] for e in cal.events().list(calendarId="primary").execute()["items"]}
    shown = cal.events().list(calendarId="primary", showDeleted=True).execute()["items"]
    assert {e["id"]: e["status"] for e in shown}[master["id"]] == "cancelled"
    singles = cal.events().list(calendarId="primary", singleEvents=True).execute()["items"]
    assert {e["id"] for e in singles} == {MAR16, MAR23}
    assert _status(cal.events().get(calendarId="primary", eventId="standup001_20260406T080000Z").execute) == 410


def test_hooks_on_instances_and_the_ical_uid_filter(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    master = fake.add_event(ALICE, "primary", STANDUP | {"iCalUID": "standup@example.com"})
    assert master["iCalUID"] == "standup@example.com"  # a client-supplied iCalUID is kept
    other = fake.add_event(ALICE, "primary", _event(1))
    edited = fake.edit_event(ALICE, "primary", MAR16, {"summary": "Retro"})
    assert (edited["recurringEventId"], edited["iCalUID"]) == (master["id"], "standup@example.com")
    fake.delete_event(ALICE, "primary", MAR23)
    assert {e["id"]: e["status"] for e in fake.events(ALICE, "primary", include_deleted=True)} == {
        master["id"]: "confirmed", other["id"]: "confirmed", MAR16: "confirmed", MAR23: "cancelled"}

    listed = cal.events().list(calendarId="primary", iCalUID="standup@example.com").execute()
    assert {e["id"] for e in listed["items"]} == {master["id"], MAR16, MAR23}
    by_generated = cal.events().list(calendarId="primary", iCalUID=other["iCalUID"]).execute()["items"]
    assert [e["id"] for e in by_generated] == [other["id"]]
    assert _status(cal.events().list(calendarId="primary", iCalUID="standup@example.com",
                                     syncToken=listed["nextSyncToken"]).execute) == 400
    with pytest.raises(HttpError) as info:
        cal.events().list(calendarId="primary", singleEvents=True).execute()
    assert (info.value.status_code, _reason(info.value)) == (400, "notImplementedInFake")
    with pytest.raises(ApiError) as hook_error:
        fake.edit_event(ALICE, "primary", "standup001_20260317T090000Z", {"summary": "Tuesday?"})
    assert hook_error.value.status == 404


def test_all_day_series_and_time_zone_rules(make_service: Callable[..., Any]) -> None:
    cal = make_service()
    holiday = {
        "id": "confer001",
        "summary": "Conference",
        "start": {"date": "2026-03-02"},
        "end": {"date": "2026-03-03"},
        "recurrence": ["RRULE:FREQ=DAILY;COUNT=5", "EXDATE;VALUE=DATE:20260304"],
    }
    cal.events().insert(calendarId="primary", body=holiday).execute()
    day = cal.events().get(calendarId="primary", eventId="confer001_20260303").execute()
    assert (day["start"], day["end"], day["originalStartTime"]) == (
        {"date": "2026-03-03"}, {"date": "2026-03-04"}, {"date": "2026-03-03"})
    for missing in ("confer001_20260304", "confer001_20260307", "confer001_20260303T000000Z"):
        assert _status(cal.events().get(calendarId="primary", eventId=missing).execute) == 404
    assert cal.events().delete(calendarId="primary", eventId="confer001_20260306").execute() == ""

    floating = {**STANDUP, "id": "floating01", "start": {"dateTime": "2026-03-02T10:00:00+01:00"}}
    with pytest.raises(HttpError) as info:
        cal.events().insert(calendarId="primary", body=floating).execute()
    assert (info.value.status_code, _reason(info.value)) == (400, "required")
    nowhere = {**STANDUP, "id": "mars00001", "start": {**STANDUP["start"], "timeZone": "Mars/Olympus"}}
    with pytest.raises(HttpError) as info:
        cal.events().insert(calendarId="primary", body=nowhere).execute()
    assert info.value.status_code == 400 and "time zone" in json.loads(info.value.content)["error"]["message"]


# ---------------------------------------------------------------------- push notifications
class _Receiver:
    """A webhook on 127.0.0.1 that records what it is sent; ``gate`` holds its answers back."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.gate.wait(10)
                seen = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append(seen | {":path": self.path, ":body": body.decode()})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    hook = _Receiver()
    hook.thread.start()
    yield hook
    hook.close()


def _seen(records: list[NotificationRecord]) -> list[tuple[str, str, int]]:
    return [(r.channel_id, r.resource_state, r.message_number) for r in records]


def test_push_notifications_sync_then_exists_per_change(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any], receiver: _Receiver
) -> None:
    alice, bob = make_service(ALICE), make_service(BOB)

    def watch(service: Any, channel_id: str, **extra: Any) -> dict[str, Any]:
        body = {"id": channel_id, "type": "web_hook", "address": receiver.url, **extra}
        return dict(service.events().watch(calendarId="primary", body=body).execute())

    chan_a = watch(alice, "chan-a", token="target=syncd-a")
    watch(bob, "chan-bob")
    assert _seen(fake.wait_notifications(2)) == [("chan-a", "sync", 1), ("chan-bob", "sync", 1)]

    created = alice.events().insert(calendarId="primary", body=_event(1)).execute()  # API call
    fake.edit_event(ALICE, "primary", created["id"], {"summary": "Moved"})  # the human, via the hook
    watch(alice, "chan-b")
    alice.events().delete(calendarId="primary", eventId=created["id"]).execute()
    records = fake.wait_notifications(7)
    assert _seen(records[2:]) == [
        ("chan-a", "exists", 2), ("chan-a", "exists", 3), ("chan-b", "sync", 1),
        ("chan-a", "exists", 4), ("chan-b", "exists", 2),
    ]
    assert all(r.status == 200 and r.error is None for r in records)

    first, second = receiver.received[0], receiver.received[2]
    assert first[":path"] == "/hook" and first[":body"] == ""
    assert first["x-goog-channel-id"] == "chan-a"
    assert first["x-goog-channel-token"] == "target=syncd-a"
    assert first["x-goog-resource-id"] == chan_a["resourceId"]
    assert first["x-goog-resource-uri"] == chan_a["resourceUri"]
    assert (first["x-goog-resource-state"], first["x-goog-message-number"]) == ("sync", "1")
    expiration = email.utils.parsedate_to_datetime(first["x-goog-channel-expiration"])
    assert int(expiration.timestamp()) == int(chan_a["expiration"]) // 1000
    assert (second["x-goog-resource-state"], second["x-goog-message-number"]) == ("exists", "2")
    assert "x-goog-channel-token" not in receiver.received[4]  # chan-b has no token

    # a stopped channel, then an expired one, get nothing more
    alice.channels().stop(body={"id": "chan-a", "resourceId": chan_a["resourceId"]}).execute()
    fake.add_event(ALICE, "primary", _event(2))
    assert _seen(fake.wait_notifications(8)[7:]) == [("chan-b", "exists", 3)]
    fake.expire_channel("chan-b")
    watch(alice, "chan-c")
    fake.add_events([(ALICE, "primary", _event(3)), (ALICE, "primary", _event(4))])  # one message per calendar
    assert _seen(fake.wait_notifications(10)[8:]) == [("chan-c", "sync", 1), ("chan-c", "exists", 2)]
    assert [r.channel_id for r in fake.notifications].count("chan-bob") == 1
    assert len(receiver.received) == 10


def test_api_calls_never_wait_for_notification_delivery(
    fake: FakeGoogleCalendar, make_service: Callable[..., Any], receiver: _Receiver
) -> None:
    cal = make_service()
    receiver.gate.clear()  # the webhook holds its answer until released
    cal.events().watch(calendarId="primary",
                       body={"id": "chan-slow", "type": "web_hook", "address": receiver.url}).execute()
    cal.events().insert(calendarId="primary", body=_event(1)).execute()
    assert fake.notifications == []  # both calls returned while the sync message is still in flight
    receiver.gate.set()
    assert _seen(fake.wait_notifications(2)) == [("chan-slow", "sync", 1), ("chan-slow", "exists", 2)]


# ---------------------------------------------------------------------- more faults
def test_dropped_connections(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service()
    cal.events().list(calendarId="primary").execute()
    before = fake.request_count()

    fake.drop_next(1)  # httplib2 retries once on a connection closed before any status line
    assert cal.events().list(calendarId="primary").execute()["items"] == []
    assert [r.status for r in fake.requests[before:]] == [0, 200]

    fake.drop_next(2)
    fake.fail_next(1, 503, "backendError")
    with pytest.raises(http.client.RemoteDisconnected):
        cal.events().list(calendarId="primary").execute()
    assert _status(cal.events().list(calendarId="primary").execute) == 503  # drops left the fault pending
    assert cal.events().list(calendarId="primary").execute()["items"] == []

    fake.drop_next(2)  # batches too
    batch = BatchHttpRequest(callback=lambda *args: None, batch_uri=fake.batch_uri)
    batch.add(cal.events().list(calendarId="primary"))
    with pytest.raises(http.client.RemoteDisconnected):
        batch.execute(http=cal._http)
    assert [r.status for r in fake.requests[before:]] == [0, 200, 0, 0, 503, 200, 0, 0]
    assert fake.request_counts()["token"] == 1  # /token is never faulted


def test_slow_requests_hit_client_timeouts(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    cal = make_service(timeout=2.0)
    cal.events().list(calendarId="primary").execute()
    fake.slow_next(1, 60)  # far beyond the client's timeout; stop() cuts the wait short
    with pytest.raises(TimeoutError):
        cal.events().list(calendarId="primary").execute()
    assert cal.events().list(calendarId="primary").execute()["items"] == []  # only one request was slowed


# ---------------------------------------------------------------------- another process
def _seed(n: int) -> dict[str, Any]:
    return {"summary": f"Seed {n}", "start": {"dateTime": "2026-03-02T10:00:00Z"},
            "end": {"dateTime": "2026-03-02T11:00:00Z"}}


def test_fake_in_a_subprocess_driven_by_control_commands() -> None:
    with serve_in_subprocess(latency=0.05) as remote:
        remote.control("add_refresh_token", refresh_token="1//bench", user=ALICE)
        ids = remote.control("add_events", items=[[ALICE, "primary", _seed(n)] for n in range(10_000)])["ids"]
        assert len(set(ids)) == 10_000
        creds = user_credentials.Credentials(
            token=None, refresh_token="1//bench", client_id="client-id.apps.googleusercontent.com",
            client_secret="client-secret", token_uri=remote.token_uri)
        cal = build("calendar", "v3", credentials=creds, static_discovery=True,
                    client_options={"api_endpoint": remote.api_endpoint})
        try:
            remote.control("reset_counts")
            seen: list[str] = []
            request = cal.events().list(calendarId="primary", maxResults=2500)
            page: dict[str, Any] = {}
            while request is not None:
                page = request.execute()
                seen += [e["id"] for e in page["items"]]
                request = cal.events().list_next(request, page)
            assert seen == ids
            assert remote.control("request_counts") == {"requests": 4, "batch_parts": 0, "token": 1}

            batch = BatchHttpRequest(callback=lambda *args: None, batch_uri=remote.batch_uri)
            for event_id in ids[:3]:
                batch.add(cal.events().get(calendarId="primary", eventId=event_id))
            batch.execute(http=cal._http)
            assert remote.control("request_counts") == {"requests": 5, "batch_parts": 3, "token": 1}

            remote.control("edit_event", user=ALICE, calendar="primary", event_id=ids[0], changes={"summary": "Hi"})
            remote.control("delete_event", user=ALICE, calendar="primary", event_id=ids[1])
            delta = cal.events().list(calendarId="primary", syncToken=page["nextSyncToken"]).execute()["items"]
            assert {e["id"]: e["status"] for e in delta} == {ids[0]: "confirmed", ids[1]: "cancelled"}
            remote.control("expire_sync_tokens", user=ALICE, calendar="primary")
            assert _status(cal.events().list(calendarId="primary", syncToken=page["nextSyncToken"]).execute) == 410

            remote.control("fail_next", n=1, status=429, reason="rateLimitExceeded", retry_after=3)
            assert _status(cal.events().get(calendarId="primary", eventId=ids[2]).execute) == 429

            # control calls skip the latency: with a minute of it they still answer within their timeout
            remote.control("set_latency", seconds=60)
            assert call_control(remote.base_url, "request_counts", timeout=10)["requests"] == 8
            remote.control("set_latency", seconds=0)

            with pytest.raises(ControlError) as info:
                remote.control("no_such_command")
            assert info.value.status == 404
            with pytest.raises(ControlError) as info:
                remote.control("add_event", user=ALICE)
            assert info.value.status == 400
            with pytest.raises(ControlError) as info:
                remote.control("edit_event", user=ALICE, calendar="primary", event_id="nosuchevent", changes={})
            assert info.value.status == 404 and info.value.body["error"]["errors"][0]["reason"] == "notFound"
        finally:
            cal.close()


def test_command_line_entry_point_prints_ready_and_stops_on_sigterm() -> None:
    root = Path(__file__).resolve().parents[3]
    command = [sys.executable, "-m", "tests.fakes.google_calendar", "--port", "0", "--latency", "0.05"]
    with subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            ready, base_url = proc.stdout.readline().split()
            assert ready == "READY" and base_url.startswith("http://127.0.0.1:")
            token = call_control(base_url, "issue_access_token", {"user": ALICE})["access_token"]
            assert token.startswith("ya29.")
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
