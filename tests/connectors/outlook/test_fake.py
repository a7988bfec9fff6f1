"""The fake Microsoft identity platform + Graph server, driven through the real msal and plain requests/httpx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import msal
import pytest
import requests
import trustme

from tests.fakes.graph import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_ID,
    GRAPH_DEFAULT_SCOPE,
    FakeGraph,
)

ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"
PROP_ID = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name SyncdBlockId"
WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
REPO = Path(__file__).resolve().parents[3]


def _event(day: int, subject: str = "Meeting", *, hour: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2026-03-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2026-03-{day:02d}T{hour + 1:02d}:00:00", "timeZone": "UTC"},
        **extra,
    }


def _session(fake: FakeGraph) -> requests.Session:
    """A requests session that trusts the fake's CA.

    ``trust_env = False`` matters: with REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the environment,
    requests replaces ``Session.verify`` by the environment's bundle.
    """
    session = requests.Session()
    session.trust_env = False
    session.verify = fake.ca_bundle_path
    return session


class Graph:
    """A thin Graph client over requests for the tests."""

    def __init__(self, fake: FakeGraph, token: str) -> None:
        self.fake = fake
        self.session = _session(fake)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.fake.graph_url}/{path.lstrip('/')}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path), **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url(path), json=body, **kwargs)

    def patch(self, path: str, body: Any, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.url(path), json=body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url(path), **kwargs)

    def delta_round(self, first: str, *, params: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str, int]:
        """Follow nextLinks to the deltaLink: (items, deltaLink, pages)."""
        items: list[dict[str, Any]] = []
        response = self.get(first, params=params, headers=headers)
        pages = 1
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["value"]
            if "@odata.deltaLink" in body:
                assert "@odata.nextLink" not in body
                return items, body["@odata.deltaLink"], pages
            response = self.get(body["@odata.nextLink"], headers=headers)
            pages += 1


class Receiver:
    """A webhook endpoint on 127.0.0.1: answers validation handshakes and records notifications."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode  # echo | wrong | error
        self.validations: list[str] = []
        self.notifications: list[dict[str, Any]] = []
        self.raw_queries: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = urlsplit(self.path).query
                receiver.raw_queries.append(query)
                token = parse_qs(query).get("validationToken")
                if token:
                    receiver.validations.append(token[0])
                    if receiver.mode == "error":
                        self._answer(500, b"no", "text/plain")
                    else:
                        text = token[0] if receiver.mode == "echo" else "something else"
                        self._answer(200, text.encode(), "text/plain; charset=utf-8")
                    return
                receiver.notifications.append(json.loads(body))
                self._answer(202, b"", "text/plain")

            def _answer(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def make_app(fake: FakeGraph) -> Iterator[Callable[..., msal.ConfidentialClientApplication]]:
    sessions: list[requests.Session] = []

    def make(client_id: str | None = None, credential: Any = None, *,
             authority: str | None = None) -> msal.ConfidentialClientApplication:
        session = _session(fake)
        sessions.append(session)
        return msal.ConfidentialClientApplication(
            client_id or fake.client_id,
            client_credential=fake.client_secret if credential is None else credential,
            authority=authority or fake.authority,
            http_client=session,
            instance_discovery=False,
        )

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def make_graph(fake: FakeGraph) -> Iterator[Callable[[str], Graph]]:
    clients: list[Graph] = []

    def make(token: str) -> Graph:
        client = Graph(fake, token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.session.close()


@pytest.fixture
def app_graph(make_app: Callable[..., msal.ConfidentialClientApplication],
              make_graph: Callable[[str], Graph]) -> Graph:
    result = make_app().acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    return make_graph(result["access_token"])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


# ---------------------------------------------------------------------------------------------- identity
def test_msal_client_credentials_with_discovery_and_token_cache(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication]
) -> None:
    app = make_app()
    first = app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert first["token_type"] == "Bearer"
    assert first["token_source"] == "identity_provider"
    second = app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert second["token_source"] == "cache"
    assert second["access_token"] == first["access_token"]

    assert fake.request_count(kind="discovery") == 1
    discovery = [r.path for r in fake.requests if r.kind == "discovery"]
    assert discovery == [f"/{fake.tenant_id}/v2.0/.well-known/openid-configuration"]
    assert fake.request_count(kind="token") == 1
    form = fake.token_requests[0]
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == fake.client_id
    assert form["client_secret"] == fake.client_secret
    assert form["scope"] == GRAPH_DEFAULT_SCOPE


def test_msal_verify_parameter_is_overridden_by_requests_ca_bundle_env(
    fake: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without the environment variables, msal's own requests session honours verify=...
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(fake.client_id, client_credential=fake.client_secret,
                                             authority=fake.authority, verify=fake.ca_bundle_path,
                                             instance_discovery=False)
    try:
        assert "access_token" in app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    finally:
        app.http_client.close()
    # ...but with REQUESTS_CA_BUNDLE set (as on this machine and in CI) requests replaces it.
    with trustme.CA().cert_pem.tempfile() as other_bundle:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_bundle)
        with pytest.raises(requests.exceptions.SSLError):
            msal.ConfidentialClientApplication(fake.client_id, client_credential=fake.client_secret,
                                               authority=fake.authority, verify=fake.ca_bundle_path,
                                               instance_discovery=False)


def test_identity_errors_carry_aadsts_codes(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication]
) -> None:
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        make_app(authority=f"{fake.base_url}/no-such-tenant")
    # the tenant domain is an alias of the tenant id
    assert "access_token" in make_app(authority=f"{fake.base_url}/{fake.tenant_domain}").acquire_token_for_client(
        [GRAPH_DEFAULT_SCOPE])

    wrong_secret = make_app(credential="not-the-secret").acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert wrong_secret["error"] == "invalid_client"
    assert wrong_secret["error_codes"] == [7000215]
    assert wrong_secret["error_description"].startswith("AADSTS7000215:")

    unknown_app = make_app("00000000-1111-2222-3333-444444444444").acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert unknown_app["error"] == "unauthorized_client"
    assert unknown_app["error_codes"] == [700016]

    bad_scope = make_app().acquire_token_for_client(["https://graph.microsoft.com/Calendars.ReadWrite"])
    assert bad_scope["error"] == "invalid_scope"
    assert bad_scope["error_codes"] == [1002012]


def test_certificate_client_assertion(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication]
) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    cert = ca.issue_cert("syncd-client", key_type=trustme.KeyType.RSA)
    cert_pem = cert.cert_chain_pems[0].bytes().decode()
    fake.add_app("cert-app", certificate_pem=cert_pem)
    credential = {"private_key": cert.private_key_pem.bytes().decode(), "public_certificate": cert_pem}
    result = make_app("cert-app", credential).acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert "access_token" in result, result
    assert fake.token_requests[-1]["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

    other = ca.issue_cert("someone-else", key_type=trustme.KeyType.RSA)
    other_pem = other.cert_chain_pems[0].bytes().decode()
    rejected = make_app("cert-app", {"private_key": other.private_key_pem.bytes().decode(),
                                     "public_certificate": other_pem}).acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert rejected["error"] == "invalid_client"
    assert rejected["error_codes"] == [700027]


def test_refresh_token_grant_rotation_revocation_and_msal_error_cache(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication], make_graph: Callable[[str], Graph]
) -> None:
    fake.add_refresh_token("rt-bob", BOB)
    fake.add_event(BOB, _event(3, "Bob's"))
    app = make_app()
    result = app.acquire_token_by_refresh_token("rt-bob", [GRAPH_DEFAULT_SCOPE])
    assert "access_token" in result, result
    rotated = result["refresh_token"]
    assert rotated != "rt-bob"
    assert result["id_token_claims"]["preferred_username"] == BOB
    assert [a["username"] for a in app.get_accounts()] == [BOB]

    bob = make_graph(result["access_token"])
    items, _link, _pages = bob.delta_round("me/calendarView/delta", params=WINDOW)
    assert [i["subject"] for i in items] == ["Bob's"]
    assert bob.get(f"users/{BOB}/mailboxSettings").status_code == 200
    denied = bob.get(f"users/{ALICE}/calendarView/delta", params=WINDOW)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "ErrorAccessDenied"

    # the old and the rotated token both keep working until revoked
    assert "access_token" in make_app().acquire_token_by_refresh_token(rotated, [GRAPH_DEFAULT_SCOPE])
    fake.revoke_refresh_token("rt-bob")
    before = fake.request_count(kind="token")
    revoked = app.acquire_token_by_refresh_token(rotated, [GRAPH_DEFAULT_SCOPE])
    assert revoked["error"] == "invalid_grant"
    assert revoked["error_codes"] == [50173]
    assert revoked["error_description"].startswith("AADSTS50173:")
    assert fake.request_count(kind="token") == before + 1
    # msal caches an HTTP 400 from the token endpoint for 60 s: the same request is not sent again
    again = app.acquire_token_by_refresh_token(rotated, [GRAPH_DEFAULT_SCOPE])
    assert again["error_codes"] == [50173]
    assert fake.request_count(kind="token") == before + 1

    unknown = make_app().acquire_token_by_refresh_token("never-issued", [GRAPH_DEFAULT_SCOPE])
    assert unknown["error"] == "invalid_grant"


def test_access_token_invalidation_expiry_and_msal_cache(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication], make_graph: Callable[[str], Graph]
) -> None:
    app = make_app()
    token = app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])["access_token"]
    graph = make_graph(token)
    assert graph.get(f"users/{ALICE}/events").status_code == 200
    fake.invalidate_access_tokens()
    rejected = graph.get(f"users/{ALICE}/events")
    assert rejected.status_code == 401
    assert rejected.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert rejected.headers["WWW-Authenticate"].startswith("Bearer")
    # msal still hands out the cached (now rejected) token; forcing a new one means dropping it first
    assert app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])["access_token"] == token
    app.remove_tokens_for_client()
    fresh = app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])["access_token"]
    assert fresh != token
    assert make_graph(fresh).get(f"users/{ALICE}/events").status_code == 200

    fake.token_lifetime = 0
    expired = make_graph(fake.issue_access_token()).get(f"users/{ALICE}/events")
    assert expired.status_code == 401
    assert "expired" in expired.json()["error"]["message"]
    missing = make_graph("").get(f"users/{ALICE}/events")
    assert missing.status_code == 401


def test_token_endpoint_faults_and_msal_throttling(
    fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication]
) -> None:
    app = make_app()
    fake.fail_next(1, 503, "temporarily_unavailable", retry_after=30, where="token")
    with pytest.raises(msal.exceptions.MsalServiceError):
        app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    sent = fake.request_count(kind="token")
    # msal remembers the 5xx for Retry-After seconds and fails again without asking
    with pytest.raises(msal.exceptions.MsalServiceError):
        app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
    assert fake.request_count(kind="token") == sent
    # a new application object has its own HTTP cache
    assert "access_token" in make_app().acquire_token_for_client([GRAPH_DEFAULT_SCOPE])


def test_instance_discovery_endpoint_and_a_dropped_token_request(
    fake: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(
        fake.client_id, client_credential=fake.client_secret, authority=fake.authority,
        verify=fake.ca_bundle_path, instance_discovery=f"{fake.base_url}/common/discovery/instance")
    try:
        assert [r.path for r in fake.requests if r.kind == "discovery"] == [
            "/common/discovery/instance", f"/{fake.tenant_id}/v2.0/.well-known/openid-configuration"]
        # msal's own session has max_retries=1, but urllib3 does not retry a POST that was sent:
        # the connection error escapes from acquire_token_for_client
        fake.drop_next(1, where="token")
        with pytest.raises(requests.exceptions.ConnectionError):
            app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
        assert "access_token" in app.acquire_token_for_client([GRAPH_DEFAULT_SCOPE])
        assert [r.status for r in fake.requests if r.kind == "token"] == [0, 200]
    finally:
        app.http_client.close()


def test_revoking_user_sessions(fake: FakeGraph, make_app: Callable[..., msal.ConfidentialClientApplication],
                                make_graph: Callable[[str], Graph]) -> None:
    fake.add_refresh_token("rt-1", ALICE)
    fake.add_refresh_token("rt-2", ALICE)
    token = make_app().acquire_token_by_refresh_token("rt-1", [GRAPH_DEFAULT_SCOPE])["access_token"]
    fake.revoke_user_sessions(ALICE, aadsts=700082)
    assert make_graph(token).get("me/events").status_code == 401
    result = make_app().acquire_token_by_refresh_token("rt-2", [GRAPH_DEFAULT_SCOPE])
    assert (result["error"], result["error_codes"]) == ("invalid_grant", [700082])


def test_chunked_request_bodies(fake: FakeGraph) -> None:
    token = fake.issue_access_token()

    def chunks() -> Iterator[bytes]:
        data = json.dumps(_event(2, "chunked")).encode()
        yield data[:10]
        yield data[10:]

    with _session(fake) as session:
        response = session.post(f"{fake.graph_url}/users/{ALICE}/events", data=chunks(),
                                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 201
    assert fake.events(ALICE)[0]["subject"] == "chunked"


def test_app_token_cannot_use_me(app_graph: Graph) -> None:
    response = app_graph.get("me/calendarView/delta", params=WINDOW)
    assert response.status_code == 400
    assert "delegated" in response.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------- events
def test_create_event_with_transaction_id_dedupe_and_extended_property(fake: FakeGraph, app_graph: Graph) -> None:
    body = {
        "subject": "Out of office",
        "showAs": "oof",
        "isReminderOn": False,
        "transactionId": "syncd-blk-1",
        "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-03-06T18:00:00", "timeZone": "W. Europe Standard Time"},
        "singleValueExtendedProperties": [{"id": PROP_ID, "value": "blk-1"}],
    }
    created = app_graph.post(f"users/{ALICE}/events", body)
    assert created.status_code == 201
    event = created.json()
    assert event["showAs"] == "oof"
    assert event["isReminderOn"] is False
    assert event["type"] == "singleInstance"
    assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
    assert event["start"] == {"dateTime": "2026-03-02T08:00:00.0000000", "timeZone": "UTC"}
    assert event["originalStartTimeZone"] == "W. Europe Standard Time"
    assert event["lastModifiedDateTime"].endswith("Z")
    assert "singleValueExtendedProperties" not in event

    retried = app_graph.post(f"users/{ALICE}/events", body)
    assert retried.status_code == 201
    assert retried.json()["id"] == event["id"]
    assert len(fake.events(ALICE)) == 1
    assert fake.events(ALICE)[0]["singleValueExtendedProperties"] == [{"id": PROP_ID, "value": "blk-1"}]

    expand = f"singleValueExtendedProperties($filter=id eq '{PROP_ID}')"
    got = app_graph.get(f"users/{ALICE}/events/{event['id']}", params={"$expand": expand},
                        headers={"Prefer": 'outlook.timezone="Europe/Berlin"'})
    assert got.status_code == 200
    assert got.json()["singleValueExtendedProperties"] == [{"id": PROP_ID, "value": "blk-1"}]
    assert got.json()["start"] == {"dateTime": "2026-03-02T09:00:00.0000000", "timeZone": "Europe/Berlin"}
    assert got.headers["Preference-Applied"] == 'outlook.timezone="Europe/Berlin"'
    # also via /calendar/events and /calendars/{id}/events
    calendar = app_graph.get(f"users/{ALICE}/calendar").json()
    assert calendar["isDefaultCalendar"] is True
    assert app_graph.post(f"users/{ALICE}/calendar/events", _event(9)).status_code == 201
    assert app_graph.post(f"users/{ALICE}/calendars/{calendar['id']}/events", _event(10)).status_code == 201
    assert app_graph.post(f"users/{ALICE}/calendars/nope/events", _event(10)).status_code == 404


def test_event_validation(app_graph: Graph) -> None:
    def error(body: dict[str, Any]) -> tuple[int, str]:
        response = app_graph.post(f"users/{ALICE}/events", body)
        return response.status_code, response.json()["error"]["code"]

    all_day = {"subject": "Away", "isAllDay": True,
               "start": {"dateTime": "2026-03-02T00:00:00", "timeZone": "Pacific Standard Time"},
               "end": {"dateTime": "2026-03-04T00:00:00", "timeZone": "Pacific Standard Time"}}
    created = app_graph.post(f"users/{ALICE}/events", all_day)
    assert created.status_code == 201
    assert created.json()["start"]["dateTime"] == "2026-03-02T08:00:00.0000000"  # midnight PST, rendered in UTC
    assert created.json()["isAllDay"] is True
    not_midnight = {**all_day, "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "Pacific Standard Time"}}
    assert error(not_midnight) == (400, "ErrorInvalidRequest")
    assert error(_event(2, start={"dateTime": "2026-03-02T10:00:00", "timeZone": "Mars/Olympus"})) == (
        400, "TimeZoneNotSupportedException")
    assert error(_event(2, showAs="vacation")) == (400, "RequestBodyRead")
    assert error(_event(2, colour="blue")) == (400, "RequestBodyRead")
    assert error({"subject": "no times"}) == (400, "ErrorInvalidRequest")
    backwards = _event(2, end={"dateTime": "2026-03-02T08:00:00", "timeZone": "UTC"})
    assert error(backwards) == (400, "ErrorInvalidRequest")
    iana = app_graph.post(f"users/{ALICE}/events",
                          _event(2, start={"dateTime": "2026-03-02T10:00:00", "timeZone": "America/Los_Angeles"},
                                 end={"dateTime": "2026-03-02T11:00:00", "timeZone": "Pacific Standard Time"}))
    assert iana.json()["start"]["dateTime"] == "2026-03-02T18:00:00.0000000"


def test_get_patch_delete_with_etags(fake: FakeGraph, app_graph: Graph) -> None:
    created = app_graph.post(f"users/{ALICE}/events", _event(2, "v1")).json()
    path = f"users/{ALICE}/events/{created['id']}"
    patched = app_graph.patch(path, {"subject": "v2", "showAs": "oof"}, headers={"If-Match": created["@odata.etag"]})
    assert patched.status_code == 200
    assert patched.json()["subject"] == "v2"
    assert patched.json()["changeKey"] != created["changeKey"]
    assert patched.json()["lastModifiedDateTime"] >= created["lastModifiedDateTime"]

    stale = app_graph.patch(path, {"subject": "v3"}, headers={"If-Match": created["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    stale_delete = app_graph.delete(path, headers={"If-Match": created["@odata.etag"]})
    assert stale_delete.status_code == 412
    assert app_graph.get(path).json()["subject"] == "v2"

    fake.edit_event(ALICE, created["id"], {"subject": "edited by the human"})
    assert app_graph.get(path).json()["subject"] == "edited by the human"

    current = app_graph.get(path).json()["@odata.etag"]
    assert app_graph.delete(path, headers={"If-Match": current}).status_code == 204
    missing = app_graph.get(path)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"
    assert app_graph.delete(path).status_code == 404
    assert app_graph.patch(path, {"subject": "x"}).status_code == 404


def test_extended_property_filter_and_expand(app_graph: Graph) -> None:
    def create(value: str | None) -> str:
        extra = {"singleValueExtendedProperties": [{"id": PROP_ID, "value": value}]} if value else {}
        response = app_graph.post(f"users/{ALICE}/events", _event(2, **extra))
        assert response.status_code == 201
        return str(response.json()["id"])

    one, two, _none = create("blk-1"), create("blk-2"), create(None)

    def filtered(condition: str) -> list[str]:
        response = app_graph.get(f"users/{ALICE}/events", params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP_ID}'{condition})"})
        assert response.status_code == 200, response.text
        assert all("singleValueExtendedProperties" not in e for e in response.json()["value"])
        return [e["id"] for e in response.json()["value"]]

    assert filtered(" and ep/value eq 'blk-1'") == [one]
    assert filtered(" and ep/value eq 'BLK-2'") == [two]  # values compare case-insensitively
    assert filtered("") == [one, two]
    assert filtered(" and ep/value ne 'blk-1'") == [two]
    assert filtered(" and startswith(ep/value, 'blk')") == [one, two]
    assert filtered(" and contains(ep/value, '2')") == [two]
    other_case = PROP_ID.replace("SyncdBlockId", "syncdblockid")
    response = app_graph.get(f"users/{ALICE}/events", params={
        "$filter": f"singleValueExtendedProperties/any(ep:ep/id eq '{other_case}' and ep/value eq 'blk-1')"})
    assert response.json()["value"] == []  # the Name part of the id is case-sensitive
    assert app_graph.get(f"users/{ALICE}/events", params={"$filter": "subject eq 'x'"}).status_code == 400

    expanded = app_graph.get(f"users/{ALICE}/events", params={
        "$filter": f"singleValueExtendedProperties/any(ep: ep/id eq '{PROP_ID}' and ep/value eq 'blk-2')",
        "$expand": f"singleValueExtendedProperties($filter=id eq '{PROP_ID}')"}).json()["value"]
    assert expanded[0]["singleValueExtendedProperties"] == [{"id": PROP_ID, "value": "blk-2"}]

    # patch upserts the property by id
    app_graph.patch(f"users/{ALICE}/events/{one}", {"singleValueExtendedProperties": [{"id": PROP_ID,
                                                                                        "value": "blk-9"}]})
    assert filtered(" and ep/value eq 'blk-9'") == [one]
    assert filtered(" and ep/value eq 'blk-1'") == []


def test_list_events_paging_and_select(fake: FakeGraph, app_graph: Graph) -> None:
    ids = [fake.add_event(ALICE, _event(d))["id"] for d in range(1, 6)]
    page = app_graph.get(f"users/{ALICE}/events", params={"$top": "2", "$select": "subject,start"}).json()
    assert [e["id"] for e in page["value"]] == ids[:2]
    assert set(page["value"][0]) == {"@odata.etag", "id", "subject", "start"}
    seen = [e["id"] for e in page["value"]]
    while "@odata.nextLink" in page:
        page = app_graph.get(page["@odata.nextLink"]).json()
        seen += [e["id"] for e in page["value"]]
    assert seen == ids


# ---------------------------------------------------------------------------------------------- delta
def test_delta_paging_then_incremental_changes(fake: FakeGraph, app_graph: Graph) -> None:
    ids = [fake.add_event(ALICE, _event(d, f"E{d}"))["id"] for d in range(2, 7)]
    fake.edit_event(ALICE, ids[0], {"singleValueExtendedProperties": [{"id": PROP_ID, "value": "blk-x"}]})
    first = app_graph.get(f"users/{ALICE}/calendarView/delta", params=WINDOW,
                          headers={"Prefer": "odata.maxpagesize=2"})
    assert "odata.maxpagesize=2" in first.headers["Preference-Applied"]
    items, delta_link, pages = app_graph.delta_round(f"users/{ALICE}/calendarView/delta", params=WINDOW,
                                                     headers={"Prefer": "odata.maxpagesize=2"})
    assert pages == 3
    assert [i["id"] for i in items] == ids
    assert all(i["@odata.type"] == "#microsoft.graph.event" for i in items)
    assert all("singleValueExtendedProperties" not in i for i in items)
    assert "$deltatoken=" in delta_link
    again = app_graph.get(first.json()["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"})
    assert again.json()["value"] == items[2:4]  # pages can be re-read

    quiet, quiet_link, _ = app_graph.delta_round(delta_link)
    assert quiet == []

    fake.edit_event(ALICE, ids[1], {"subject": "changed"})
    fake.delete_event(ALICE, ids[2])
    fake.edit_event(ALICE, ids[3], {"start": {"dateTime": "2026-05-01T10:00:00", "timeZone": "UTC"},
                                    "end": {"dateTime": "2026-05-01T11:00:00", "timeZone": "UTC"}})
    added = fake.add_event(ALICE, _event(20, "new"))
    outside = fake.add_event(ALICE, {**_event(1), "start": {"dateTime": "2026-06-01T10:00:00", "timeZone": "UTC"},
                                     "end": {"dateTime": "2026-06-01T11:00:00", "timeZone": "UTC"}})
    changes, next_link, _ = app_graph.delta_round(quiet_link)
    by_id = {c["id"]: c for c in changes}
    assert by_id[ids[1]]["subject"] == "changed"
    assert by_id[added["id"]]["subject"] == "new"
    removed = {"@odata.type": "#microsoft.graph.event", "@removed": {"reason": "deleted"}}
    assert by_id[ids[2]] == {**removed, "id": ids[2]}
    assert by_id[ids[3]] == {**removed, "id": ids[3]}  # moved out of the window
    assert by_id[outside["id"]] == {**removed, "id": outside["id"]}  # outside the window: noise to filter
    assert set(by_id) == {ids[1], ids[2], ids[3], added["id"], outside["id"]}

    # an older deltaLink is still valid and reports everything since its own round
    replay, _, _ = app_graph.delta_round(quiet_link)
    assert {c["id"] for c in replay} == set(by_id)
    assert app_graph.delta_round(next_link)[0] == []


def test_delta_token_expiry(fake: FakeGraph, app_graph: Graph) -> None:
    fake.add_event(ALICE, _event(2))
    _items, delta_link, _ = app_graph.delta_round(f"users/{ALICE}/calendarView/delta", params=WINDOW)
    fake.expire_delta_tokens(ALICE)
    gone = app_graph.get(delta_link)
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "resyncRequired"
    location = urlsplit(gone.headers["Location"])
    assert location.path == f"/v1.0/users/{ALICE}/calendarView/delta"
    assert parse_qs(location.query)["startDateTime"] == [WINDOW["startDateTime"]]
    items, delta_link, _ = app_graph.delta_round(gone.headers["Location"])  # the full resync
    assert len(items) == 1

    fake.expire_delta_tokens(ALICE, code="syncStateNotFound")
    other = app_graph.get(delta_link)
    assert (other.status_code, other.json()["error"]["code"]) == (410, "syncStateNotFound")
    garbage = app_graph.get(f"users/{ALICE}/calendarView/delta", params={"$deltatoken": "garbage"})
    assert (garbage.status_code, garbage.json()["error"]["code"]) == (410, "syncStateNotFound")
    # a user's token does not work for another mailbox
    _items, alice_link, _ = app_graph.delta_round(f"users/{ALICE}/calendarView/delta", params=WINDOW)
    assert app_graph.get(alice_link.replace(ALICE, BOB)).status_code == 410


def test_delta_time_zone_preference_and_unsupported_options(fake: FakeGraph, app_graph: Graph) -> None:
    fake.add_event(ALICE, _event(2, hour=9))
    path = f"users/{ALICE}/calendarView/delta"
    utc = app_graph.get(path, params=WINDOW, headers={"Prefer": 'outlook.timezone="UTC"'}).json()["value"][0]
    assert utc["start"] == {"dateTime": "2026-03-02T09:00:00.0000000", "timeZone": "UTC"}
    pacific = app_graph.get(path, params=WINDOW, headers={"Prefer": 'outlook.timezone="Pacific Standard Time"'})
    assert pacific.json()["value"][0]["start"] == {"dateTime": "2026-03-02T01:00:00.0000000",
                                                   "timeZone": "Pacific Standard Time"}
    lower_case = app_graph.get(path, params={"startdatetime": WINDOW["startDateTime"],
                                             "enddatetime": WINDOW["endDateTime"]})
    assert lower_case.status_code == 200
    assert app_graph.get(path, params={**WINDOW, "$select": "subject"}).status_code == 400
    assert app_graph.get(path).status_code == 400  # the window is required


def test_recurring_series_occurrences_exceptions_and_cancellations(fake: FakeGraph, app_graph: Graph) -> None:
    series = {
        **_event(2, "Standup", hour=9),
        "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-03-02T09:15:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday", "wednesday"],
                        "firstDayOfWeek": "monday"},
            "range": {"type": "numbered", "startDate": "2026-03-02", "numberOfOccurrences": 10},
        },
    }
    master = app_graph.post(f"users/{ALICE}/events", series).json()
    assert master["type"] == "seriesMaster"
    items, delta_link, _ = app_graph.delta_round(f"users/{ALICE}/calendarView/delta", params=WINDOW)
    assert [i["type"] for i in items] == ["occurrence"] * 9  # the 10th is in April
    assert {i["seriesMasterId"] for i in items} == {master["id"]}
    starts = [i["start"]["dateTime"][:16] for i in items]
    assert starts[:3] == ["2026-03-02T08:00", "2026-03-04T08:00", "2026-03-09T08:00"]
    assert starts[-1] == "2026-03-30T07:00"  # Berlin switched to summer time on 29 March
    assert items[0]["originalStart"] == "2026-03-02T08:00:00Z"

    second, third = items[1]["id"], items[2]["id"]
    moved = app_graph.patch(f"users/{ALICE}/events/{second}", {
        "subject": "Standup (moved)",
        "start": {"dateTime": "2026-03-04T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-03-04T10:15:00", "timeZone": "W. Europe Standard Time"}})
    assert moved.status_code == 200
    assert moved.json()["type"] == "exception"
    assert app_graph.delete(f"users/{ALICE}/events/{third}").status_code == 204
    assert app_graph.get(f"users/{ALICE}/events/{third}").status_code == 404

    changes, _link, _ = app_graph.delta_round(delta_link)
    by_id = {c["id"]: c for c in changes}
    assert set(by_id) == {second, third}
    assert by_id[second]["type"] == "exception"
    assert by_id[second]["start"]["dateTime"].startswith("2026-03-04T09:00")
    assert by_id[third]["@removed"] == {"reason": "deleted"}

    instances = app_graph.get(f"users/{ALICE}/events/{master['id']}/instances", params=WINDOW).json()["value"]
    assert len(instances) == 8
    view = app_graph.get(f"users/{ALICE}/calendarView", params={**WINDOW, "$top": "50"}).json()["value"]
    assert [v["id"] for v in view] == [v["id"] for v in instances]

    assert app_graph.delete(f"users/{ALICE}/events/{master['id']}").status_code == 204
    gone, _link, _ = app_graph.delta_round(_link)
    assert {g["id"] for g in gone} == {v["id"] for v in instances}
    assert all("@removed" in g for g in gone)


@pytest.mark.parametrize(
    ("pattern", "rng", "expected_days"),
    [
        ({"type": "daily", "interval": 2}, {"type": "endDate", "startDate": "2026-03-02", "endDate": "2026-03-10"},
         [2, 4, 6, 8, 10]),
        ({"type": "daily", "interval": 1}, {"type": "numbered", "startDate": "2026-03-28", "numberOfOccurrences": 3},
         [28, 29, 30]),
        ({"type": "weekly", "interval": 2, "daysOfWeek": ["friday"]}, {"type": "noEnd", "startDate": "2026-03-02"},
         [6, 20]),
        ({"type": "absoluteMonthly", "interval": 1, "dayOfMonth": 15}, {"type": "noEnd", "startDate": "2026-01-15"},
         [15]),
        ({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["monday"], "index": "last"},
         {"type": "noEnd", "startDate": "2026-01-01"}, [30]),
    ],
)
def test_recurrence_patterns(fake: FakeGraph, pattern: dict[str, Any], rng: dict[str, Any],
                             expected_days: list[int]) -> None:
    start = rng["startDate"]
    fake.add_event(ALICE, {"subject": "Series", "start": {"dateTime": f"{start}T12:00:00", "timeZone": "UTC"},
                           "end": {"dateTime": f"{start}T13:00:00", "timeZone": "UTC"},
                           "recurrence": {"pattern": pattern, "range": rng}})
    view = fake.view(ALICE, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    assert [int(v["start"]["dateTime"][8:10]) for v in view] == expected_days


def test_invalid_recurrence_is_rejected(app_graph: Graph) -> None:
    body = _event(2, recurrence={"pattern": {"type": "weekly", "interval": 1},
                                 "range": {"type": "noEnd", "startDate": "2026-03-02"}})
    response = app_graph.post(f"users/{ALICE}/events", body)
    assert response.status_code == 400


# ---------------------------------------------------------------------------------------------- mailbox settings
def test_mailbox_settings_and_automatic_replies(fake: FakeGraph, app_graph: Graph) -> None:
    settings = app_graph.get(f"users/{ALICE}/mailboxSettings").json()
    assert settings["timeZone"] == "UTC"
    assert settings["automaticRepliesSetting"]["status"] == "disabled"

    fake.set_automatic_replies(ALICE, "scheduled", datetime(2026, 3, 2, 8, tzinfo=UTC),
                               datetime(2026, 3, 6, 17, tzinfo=UTC), external_message="Away")
    replies = app_graph.get(f"users/{ALICE}/mailboxSettings/automaticRepliesSetting").json()
    assert replies["status"] == "scheduled"
    assert replies["scheduledStartDateTime"] == {"dateTime": "2026-03-02T08:00:00.0000000", "timeZone": "UTC"}
    assert replies["scheduledEndDateTime"] == {"dateTime": "2026-03-06T17:00:00.0000000", "timeZone": "UTC"}
    assert replies["externalReplyMessage"] == "Away"

    fake.set_mailbox_time_zone(ALICE, "W. Europe Standard Time")
    assert app_graph.get(f"users/{ALICE}/mailboxSettings/timeZone").json()["value"] == "W. Europe Standard Time"
    patched = app_graph.patch(f"users/{ALICE}/mailboxSettings", {"timeZone": "Pacific Standard Time"})
    assert patched.json()["timeZone"] == "Pacific Standard Time"
    assert app_graph.patch(f"users/{ALICE}/mailboxSettings", {"timeZone": "Nowhere/Zone"}).status_code == 400


def test_unknown_users_and_blocked_mailboxes(fake: FakeGraph, app_graph: Graph) -> None:
    object_id = fake.add_user(BOB, time_zone="Tokyo Standard Time")
    assert app_graph.get(f"users/{object_id}/mailboxSettings").json()["timeZone"] == "Tokyo Standard Time"
    fake.auto_create_users = False
    unknown = app_graph.get("users/nobody@contoso.com/events")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ErrorInvalidUser")
    fake.block_mailbox(BOB)
    blocked = app_graph.get(f"users/{BOB}/calendarView/delta", params=WINDOW)
    assert (blocked.status_code, blocked.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    fake.unblock_mailbox(BOB)
    assert app_graph.get(f"users/{BOB}/calendarView/delta", params=WINDOW).status_code == 200


# ---------------------------------------------------------------------------------------------- batch
def test_batch_per_part_status_and_counting(fake: FakeGraph, app_graph: Graph) -> None:
    fake.add_event(ALICE, _event(2, "alice"))
    fake.add_event(BOB, _event(3, "bob"))
    query = "startDateTime=2026-03-01T00:00:00Z&endDateTime=2026-04-01T00:00:00Z"
    fake.reset_counts()
    fake.fail_next(1, 429, "TooManyRequests", retry_after=3, where="part", path_contains=BOB)
    response = app_graph.post("$batch", {"requests": [
        {"id": "1", "method": "GET", "url": f"/users/{ALICE}/calendarView/delta?{query}",
         "headers": {"Prefer": 'outlook.timezone="UTC"'}},
        {"id": "2", "method": "GET", "url": f"users/{BOB}/calendarView/delta?{query}"},
        {"id": "3", "method": "GET", "url": f"/users/{ALICE}/events/does-not-exist"},
        {"id": "4", "method": "POST", "url": f"/users/{BOB}/events", "body": _event(5, "via batch"),
         "headers": {"Content-Type": "application/json"}},
        {"id": "5", "method": "GET", "url": f"/users/{BOB}/events", "dependsOn": ["3"]},
    ]})
    assert response.status_code == 200
    parts = {p["id"]: p for p in response.json()["responses"]}
    assert parts["1"]["status"] == 200
    assert [e["subject"] for e in parts["1"]["body"]["value"]] == ["alice"]
    assert parts["1"]["headers"]["Preference-Applied"] == 'outlook.timezone="UTC"'
    assert parts["2"]["status"] == 429
    assert parts["2"]["headers"]["Retry-After"] == "3"
    assert parts["2"]["body"]["error"]["code"] == "TooManyRequests"
    assert parts["3"]["status"] == 404
    assert parts["4"]["status"] == 201
    assert parts["5"]["status"] == 424
    assert "body" not in parts["1"]["headers"]
    assert [e["subject"] for e in fake.events(BOB)] == ["bob", "via batch"]

    assert fake.request_count() == 1
    assert fake.request_count(only_batch_parts=True) == 4  # the 424 part never ran
    assert fake.request_count(include_batch_parts=True) == 5
    assert fake.request_counts()["batch_requests"] == 1

    too_many = [{"id": str(n), "method": "GET", "url": f"/users/{ALICE}/events"} for n in range(21)]
    assert app_graph.post("$batch", {"requests": too_many}).status_code == 400
    duplicate = [{"id": "a", "method": "GET", "url": "/me/events"}, {"id": "A", "method": "GET", "url": "/me/events"}]
    assert app_graph.post("$batch", {"requests": duplicate}).status_code == 400
    no_type = [{"id": "a", "method": "POST", "url": f"/users/{ALICE}/events", "body": _event(2)}]
    assert app_graph.post("$batch", {"requests": no_type}).status_code == 400
    # a fault aimed at requests fails the whole batch envelope
    fake.fail_next(1, 503, "ServiceNotAvailable", retry_after=1)
    whole = app_graph.post("$batch", {"requests": too_many[:2]})
    assert (whole.status_code, whole.headers["Retry-After"]) == (503, "1")


# ---------------------------------------------------------------------------------------------- faults
def test_faults_fail_slow_drop_and_latency(fake: FakeGraph, app_graph: Graph) -> None:
    path = f"users/{ALICE}/events"
    fake.fail_next(2, 503, "ServiceNotAvailable", retry_after=2)
    for _ in range(2):
        failed = app_graph.get(path)
        assert (failed.status_code, failed.headers["Retry-After"]) == (503, "2")
        assert failed.json()["error"]["code"] == "ServiceNotAvailable"
    assert app_graph.get(path).status_code == 200

    fake.drop_next(1)
    with pytest.raises(requests.exceptions.ConnectionError):
        app_graph.get(path)
    assert app_graph.get(path).status_code == 200
    assert fake.request_counts()["dropped"] == 1

    fake.slow_next(1, 2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        app_graph.get(path, timeout=0.3)
    fake.latency = 0.01
    assert app_graph.get(path).status_code == 200

    fake.fail_next(1, 429, "ApplicationThrottled", where="any", path_contains="/mailboxSettings")
    assert app_graph.get(path).status_code == 200  # not matched
    assert app_graph.get(f"users/{ALICE}/mailboxSettings").status_code == 429


def test_httpx_client_with_the_fake_ca(fake: FakeGraph) -> None:
    token = fake.issue_access_token()
    fake.add_event(ALICE, _event(2))
    with httpx.Client(base_url=fake.graph_url, verify=fake.client_ssl_context(),
                      headers={"Authorization": f"Bearer {token}"}) as client:
        response = client.get(f"/users/{ALICE}/calendarView/delta", params=WINDOW)
    assert response.status_code == 200
    assert len(response.json()["value"]) == 1


# ---------------------------------------------------------------------------------------------- subscriptions
def _subscription(resource: str, receiver: Receiver, *, minutes: int = 60, lifecycle: bool = True,
                  change_type: str = "created,updated,deleted") -> dict[str, Any]:
    body = {
        "changeType": change_type,
        "notificationUrl": receiver.url,
        "resource": resource,
        "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "clientState": "secret-state",
    }
    if lifecycle:
        body["lifecycleNotificationUrl"] = receiver.url + "?kind=lifecycle"
    return body


def test_subscription_handshake_and_change_notifications(fake: FakeGraph, app_graph: Graph,
                                                         receiver: Receiver) -> None:
    created = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", receiver))
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["clientState"] == "secret-state"
    assert sub["changeType"] == "created,updated,deleted"
    # both URLs were validated; the token needs URL-decoding (it contains spaces and colons)
    assert len(receiver.validations) == 2
    assert receiver.validations[0].startswith("Validation: ")
    assert "%20" in receiver.raw_queries[0] or "+" in receiver.raw_queries[0]
    assert [v.ok for v in fake.validations] == [True, True]

    event = fake.add_event(ALICE, _event(2))
    fake.edit_event(ALICE, event["id"], {"subject": "changed"})
    fake.delete_event(ALICE, event["id"])
    fake.add_event(BOB, _event(2))  # another mailbox: no notification
    deliveries = fake.wait_notifications(3)
    items = [d.item for d in deliveries]
    assert [i["changeType"] for i in items] == ["created", "updated", "deleted"]
    object_id = fake.user_id(ALICE)
    assert items[0]["resource"] == f"Users/{object_id}/Events/{event['id']}"
    assert items[0]["resourceData"]["id"] == event["id"]
    assert items[0]["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"
    assert items[0]["clientState"] == "secret-state"
    assert items[0]["tenantId"] == fake.tenant_id
    assert items[0]["subscriptionId"] == sub["id"]
    assert all(d.delivered and not d.lifecycle for d in deliveries)
    assert receiver.notifications == [d.payload for d in deliveries]

    renewed = app_graph.patch(f"subscriptions/{sub['id']}", {
        "expirationDateTime": (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"] > sub["expirationDateTime"]
    assert app_graph.get(f"subscriptions/{sub['id']}").status_code == 200
    assert [s["id"] for s in app_graph.get("subscriptions").json()["value"]] == [sub["id"]]
    assert app_graph.delete(f"subscriptions/{sub['id']}").status_code == 204
    assert app_graph.get(f"subscriptions/{sub['id']}").status_code == 404

    # only a live subscription is notified: a new one on Bob sees Bob's change, Alice's is gone
    bob_sub = app_graph.post("subscriptions", _subscription(f"/users/{BOB}/events", receiver, lifecycle=False,
                                                            change_type="updated")).json()
    fake.add_event(ALICE, _event(4))
    bob_event = fake.add_event(BOB, _event(5))  # "created" is not subscribed
    fake.edit_event(BOB, bob_event["id"], {"subject": "bob changed"})
    latest = fake.wait_notifications(4)[3].item
    assert (latest["subscriptionId"], latest["changeType"]) == (bob_sub["id"], "updated")


def test_subscription_validation_failures(fake: FakeGraph, app_graph: Graph) -> None:
    wrong = Receiver(mode="wrong")
    broken = Receiver(mode="error")
    try:
        for hook in (wrong, broken):
            response = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", hook,
                                                                     lifecycle=False))
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "ValidationError"
        closed_url = broken.url
    finally:
        wrong.close()
        broken.close()
    unreachable = app_graph.post("subscriptions", {**_subscription(f"users/{ALICE}/events", wrong, lifecycle=False),
                                                   "notificationUrl": closed_url})
    assert unreachable.status_code == 400
    assert fake.subscriptions == {}

    hook = Receiver()
    try:
        too_long = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", hook, minutes=10081))
        assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "InvalidRequest")
        past = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", hook, minutes=-5))
        assert past.status_code == 400
        messages = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/messages", hook))
        assert messages.status_code == 400
        assert hook.validations == []
    finally:
        hook.close()


def test_lifecycle_notifications(fake: FakeGraph, app_graph: Graph, receiver: Receiver) -> None:
    sub = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", receiver)).json()
    assert app_graph.post(f"subscriptions/{sub['id']}/reauthorize").status_code == 204
    assert fake.send_lifecycle_notification(sub["id"], "reauthorizationRequired")
    assert fake.send_lifecycle_notification(sub["id"], "missed")
    assert fake.send_lifecycle_notification(sub["id"], "subscriptionRemoved")
    deliveries = fake.wait_notifications(3)
    assert [d.item["lifecycleEvent"] for d in deliveries] == ["reauthorizationRequired", "missed",
                                                               "subscriptionRemoved"]
    assert all(d.lifecycle and d.url.endswith("?kind=lifecycle") for d in deliveries)
    assert deliveries[0].item["clientState"] == "secret-state"
    assert app_graph.get(f"subscriptions/{sub['id']}").status_code == 404

    quiet = app_graph.post("subscriptions", _subscription(f"users/{ALICE}/events", receiver,
                                                          lifecycle=False)).json()
    assert fake.send_lifecycle_notification(quiet["id"], "missed") is False


def test_delegated_subscription_on_me(fake: FakeGraph, make_graph: Callable[[str], Graph],
                                      receiver: Receiver) -> None:
    bob = make_graph(fake.issue_access_token(BOB))
    created = bob.post("subscriptions", _subscription("me/events", receiver, lifecycle=False))
    assert created.status_code == 201
    assert bob.post("subscriptions", _subscription(f"users/{ALICE}/events", receiver)).status_code == 403
    fake.add_event(BOB, _event(2))
    assert fake.wait_notifications(1)[0].item["subscriptionId"] == created.json()["id"]


# ---------------------------------------------------------------------------------------------- control / CLI
def test_control_namespace_in_process(fake: FakeGraph) -> None:
    with _session(fake) as session:
        def control(command: str, **args: Any) -> requests.Response:
            return session.post(f"{fake.base_url}/_fake/{command}", json=args)

        fake.latency = 5.0  # the control namespace is never delayed
        assert control("set_latency", seconds=0).json() == {"result": None}
        ids = control("add_events", events=[{"user": ALICE, "event": _event(2)},
                                            {"user": BOB, "event": _event(3)}]).json()["result"]
        assert len(ids) == 2
        assert control("edit_event", user=ALICE, event_id=ids[0], changes={"subject": "x"}).json()["result"][
            "subject"] == "x"
        assert [e["subject"] for e in control("events", user=ALICE).json()["result"]] == ["x"]
        control("delete_event", user=BOB, event_id=ids[1])
        assert fake.events(BOB) == []
        assert control("nope").status_code == 404
        assert control("edit_event", user=ALICE).status_code == 400
        assert control("request_counts").json()["result"]["graph_requests"] == 0


def test_cli_entry_point_and_control_commands(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    env["PYTHONPATH"] = str(REPO)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.graph", "--port", "0", "--latency", "0.01"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[0] == "READY", ready
        base_url, ca_bundle = ready[1], ready[2]
        assert base_url.startswith("https://127.0.0.1:")
        with requests.Session() as session:
            session.trust_env = False
            session.verify = ca_bundle

            def control(command: str, **args: Any) -> Any:
                response = session.post(f"{base_url}/_fake/{command}", json=args)
                assert response.status_code == 200, response.text
                return response.json()["result"]

            control("add_events", events=[{"user": f"u{n}@contoso.com", "event": _event(2)} for n in range(3)])
            control("add_refresh_token", refresh_token="rt-u0", user="u0@contoso.com")
            form = {"grant_type": "refresh_token", "refresh_token": "rt-u0", "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET, "scope": GRAPH_DEFAULT_SCOPE}
            token = session.post(f"{base_url}/{DEFAULT_TENANT_ID}/oauth2/v2.0/token", data=form).json()["access_token"]
            session.headers["Authorization"] = f"Bearer {token}"
            delta = session.get(f"{base_url}/v1.0/me/calendarView/delta", params=WINDOW).json()
            assert len(delta["value"]) == 1
            control("expire_delta_tokens", user="u0@contoso.com")
            assert session.get(delta["@odata.deltaLink"]).status_code == 410
            control("set_latency", seconds=0)
            counts = control("request_counts")
            assert counts["graph_requests"] == 2
            assert counts["token_requests"] == 1
            control("reset_counts")
            assert control("request_counts")["graph_requests"] == 0
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert not Path(ca_bundle).exists()  # the CA directory is removed on shutdown


def test_event_ids_survive_url_quoting(fake: FakeGraph, app_graph: Graph) -> None:
    created = fake.add_event(ALICE, _event(2))
    assert app_graph.get(f"users/{quote(ALICE)}/events/{quote(created['id'], safe='')}").status_code == 200
