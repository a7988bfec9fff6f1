"""The fake Google Calendar server, driven through the real Google client libraries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import google.auth.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fakes.google_calendar import FakeGoogleCalendar

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

    def make(user: str = ALICE, *, refresh_token: str | None = None) -> Any:
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
        service = build(
            "calendar",
            "v3",
            credentials=creds,
            static_discovery=True,
            client_options={"api_endpoint": fake.api_endpoint},
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


def test_latency_hook(fake: FakeGoogleCalendar, make_service: Callable[..., Any]) -> None:
    import time

    cal = make_service()
    cal.events().list(calendarId="primary").execute()
    fake.latency = 0.2
    started = time.monotonic()
    cal.events().list(calendarId="primary").execute()
    assert time.monotonic() - started >= 0.2
