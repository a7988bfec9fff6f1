"""The browser side of the fake Google identity platform: the consent page driven like a browser (plain HTTP for the
page and its form), then google-auth-oauthlib's ``Flow`` and google-auth for the code exchange and the ID token."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import google.auth.transport.requests
import google_auth_httplib2
import httplib2
import jwt
import pytest
import requests
from google.oauth2 import id_token as google_id_token
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build

from tests.fakes.consent_page import ConsentRecord, read_form
from tests.fakes.google_calendar import FakeGoogleCalendar, call_control, serve_in_subprocess

CLIENT_ID = "1234-syncd.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-fake-consent-secret"
REDIRECT = "http://127.0.0.1:8765/oauth/google/callback"
EMAIL_SCOPE = "https://www.googleapis.com/auth/userinfo.email"
CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
SCOPES = ["openid", EMAIL_SCOPE, CALENDAR_SCOPE]
ALICE = "alice@example.com"
BOB = "bob@example.com"
VERIFIER = "v" * 43 + "-._~0123456789"


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar(tls=True) as server:
        server.add_oauth_client(CLIENT_ID, CLIENT_SECRET, redirect_uris=[REDIRECT])
        yield server


@pytest.fixture
def browser(fake: FakeGoogleCalendar) -> Iterator[requests.Session]:
    """What the helpdesk agent's browser does, as plain HTTP: it trusts the fake's CA and shows us redirects."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify=
    session.verify = fake.ca_bundle_path
    yield session
    session.close()


@pytest.fixture
def make_flow(fake: FakeGoogleCalendar) -> Iterator[Callable[..., Flow]]:
    flows: list[Flow] = []

    def make(redirect_uri: str = REDIRECT, secret: str = CLIENT_SECRET) -> Flow:
        config = {"web": {"client_id": CLIENT_ID, "client_secret": secret, "auth_uri": fake.auth_uri,
                          "token_uri": fake.token_uri}}
        flows.append(Flow.from_client_config(config, scopes=SCOPES, redirect_uri=redirect_uri,
                                             autogenerate_code_verifier=True))
        return flows[-1]

    yield make
    for flow in flows:
        flow.oauth2session.close()


@pytest.fixture
def calendar(fake: FakeGoogleCalendar) -> Iterator[Callable[[Any], Any]]:
    """The Calendar API client syncd builds, over the credentials a consent gave (closed after the test)."""
    services: list[Any] = []

    def make(credentials: Any) -> Any:
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(ca_certs=fake.ca_bundle_path))
        services.append(build("calendar", "v3", http=http, static_discovery=True,
                              client_options={"api_endpoint": fake.api_endpoint}))
        return services[-1]

    yield make
    for service in services:
        service.close()


def _answer(browser: requests.Session, fake: FakeGoogleCalendar, url: str, button: str = "allow",
            **typed: str) -> dict[str, str]:
    """Open the consent page at ``url``, type ``typed``, press ``button``; the redirect's query parameters."""
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 200, page.text
    form = read_form(page.text)
    decision = browser.post(f"{fake.base_url}{form.action}", data=form.submit(button, **typed), allow_redirects=False)
    assert decision.status_code == 302, decision.text
    location = decision.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def _auth_url(fake: FakeGoogleCalendar, **params: str) -> str:
    base = {"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "response_type": "code", "scope": " ".join(SCOPES),
            "state": "s-1", "login_hint": ALICE}
    return f"{fake.auth_uri}?{urlencode({**base, **params})}"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


def _exchange(fake: FakeGoogleCalendar, browser: requests.Session, code: str, **form: str | None) -> requests.Response:
    """A token request as a client posting its secret in the body (``client_secret_post``)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "code_verifier": VERIFIER, **form}
    return browser.post(fake.token_uri, data={k: v for k, v in data.items() if v is not None})


def _verify(fake: FakeGoogleCalendar, browser: requests.Session, token: str) -> dict[str, Any]:
    request = google.auth.transport.requests.Request(browser)
    return dict(google_id_token.verify_token(token, request, audience=CLIENT_ID, certs_url=fake.certs_uri))


def test_consent_with_google_auth_oauthlib_connects_a_calendar(
    fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow],
    calendar: Callable[[Any], Any],
) -> None:
    flow = make_flow()
    url, state = flow.authorization_url(access_type="offline", prompt="consent", login_hint=ALICE)
    page = browser.get(url)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    form = read_form(page.text)
    assert form.fields["email"] == ALICE
    assert set(form.buttons) == {"allow", "deny"}
    assert "<script" not in page.text
    for scope in SCOPES:
        assert f"<li>{scope}</li>" in page.text

    answer = _answer(browser, fake, url)
    assert answer["state"] == state
    assert answer["scope"].split() == SCOPES
    assert (answer["authuser"], answer["prompt"]) == ("0", "consent")
    assert answer["code"].startswith("4/")

    token = flow.fetch_token(code=answer["code"], verify=fake.ca_bundle_path)
    assert token["token_type"] == "Bearer" and token["expires_in"] == fake.token_lifetime
    assert token["refresh_token"] and token["access_token"]
    assert fake.token_requests[-1]["grant_type"] == "authorization_code"
    assert "client_secret" not in fake.token_requests[-1]  # requests-oauthlib authenticates with HTTP Basic
    claims = _verify(fake, browser, token["id_token"])
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["aud"] == claims["azp"] == CLIENT_ID
    assert (claims["email"], claims["email_verified"]) == (ALICE, True)
    assert claims["exp"] - claims["iat"] == 3600
    assert "nonce" not in claims
    assert fake.consents == [ConsentRecord(ALICE, CLIENT_ID, tuple(SCOPES))]

    service = calendar(flow.credentials)
    created = service.events().insert(calendarId="primary", body={
        "summary": "Connected", "start": {"dateTime": "2026-03-02T10:00:00Z"},
        "end": {"dateTime": "2026-03-02T11:00:00Z"}}).execute()
    assert [e["id"] for e in fake.events(ALICE, "primary")] == [created["id"]]
    # the refresh token is the fake's own: once the access token is forgotten, the library refreshes and goes on
    fake.invalidate_access_tokens(ALICE)
    assert service.events().list(calendarId="primary").execute()["items"][0]["summary"] == "Connected"
    assert fake.token_requests[-1]["grant_type"] == "refresh_token"


def test_the_email_typed_on_the_page_wins_over_login_hint(
    fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow],
    calendar: Callable[[Any], Any],
) -> None:
    flow = make_flow()
    url, _state = flow.authorization_url(access_type="offline", login_hint=ALICE, nonce="n-0S6_WzA2Mj")
    answer = _answer(browser, fake, url, email=BOB)
    token = flow.fetch_token(code=answer["code"], verify=fake.ca_bundle_path)
    claims = _verify(fake, browser, token["id_token"])
    assert (claims["email"], claims["nonce"]) == (BOB, "n-0S6_WzA2Mj")
    assert claims["sub"] != _verify(fake, browser, _signed_in(fake, browser, make_flow, ALICE))["sub"]
    calendar(flow.credentials).events().insert(calendarId="primary", body={
        "summary": "Bob's", "start": {"date": "2026-03-02"}, "end": {"date": "2026-03-03"}}).execute()
    assert [e["summary"] for e in fake.events(BOB, "primary")] == ["Bob's"]
    assert fake.events(ALICE, "primary") == []


def _signed_in(fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow], email: str) -> str:
    flow = make_flow()
    url, _state = flow.authorization_url()
    token = flow.fetch_token(code=_answer(browser, fake, url, email=email)["code"], verify=fake.ca_bundle_path)
    return str(token["id_token"])


def test_unverified_email_hook(
    fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow]
) -> None:
    fake.unverify_email(BOB.upper())
    claims = _verify(fake, browser, _signed_in(fake, browser, make_flow, BOB))
    assert (claims["email"], claims["email_verified"]) == (BOB, False)
    assert _verify(fake, browser, _signed_in(fake, browser, make_flow, ALICE))["email_verified"] is True


def test_pkce_verifier_missing_or_wrong_is_invalid_grant(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    code = _answer(browser, fake, _auth_url(fake, code_challenge=_challenge(VERIFIER),
                                            code_challenge_method="S256"))["code"]
    missing = _exchange(fake, browser, code, code_verifier=None)
    assert missing.status_code == 400
    assert missing.json() == {"error": "invalid_grant", "error_description": "Missing code verifier."}
    wrong = _exchange(fake, browser, code, code_verifier="w" * 43)
    assert wrong.json() == {"error": "invalid_grant", "error_description": "Invalid code verifier."}
    # refused exchanges do not use the code up
    ok = _exchange(fake, browser, code)
    assert ok.status_code == 200, ok.text
    assert set(ok.json()) == {"access_token", "expires_in", "scope", "token_type", "id_token"}  # online: no refresh

    # without a challenge, sending a verifier is refused too; Google's default method is plain
    plain = _answer(browser, fake, _auth_url(fake, code_challenge=VERIFIER))["code"]
    assert _exchange(fake, browser, plain).status_code == 200
    none = _answer(browser, fake, _auth_url(fake))["code"]
    assert _exchange(fake, browser, none).json()["error_description"] == "code_verifier or verifier is not needed."
    assert _exchange(fake, browser, none, code_verifier=None).status_code == 200


def test_a_replayed_code_is_refused_and_revokes_what_it_issued(
    fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow]
) -> None:
    flow = make_flow()
    url, _state = flow.authorization_url(access_type="offline", login_hint=ALICE)
    code = _answer(browser, fake, url)["code"]
    token = flow.fetch_token(code=code, verify=fake.ca_bundle_path)
    api = f"{fake.api_endpoint}calendars/primary/events"
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert browser.get(api, headers=bearer).status_code == 200

    replay = browser.post(fake.token_uri, data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": REDIRECT, "code_verifier": flow.code_verifier},
                          auth=(CLIENT_ID, CLIENT_SECRET))
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert browser.get(api, headers=bearer).status_code == 401
    refresh = browser.post(fake.token_uri, data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"],
                                                 "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert refresh.json()["error"] == "invalid_grant"


def test_redirect_uri_mismatch_at_both_steps(
    fake: FakeGoogleCalendar, browser: requests.Session, make_flow: Callable[..., Flow]
) -> None:
    elsewhere = "http://127.0.0.1:8765/somewhere-else"
    flow = make_flow(redirect_uri=elsewhere)
    url, _state = flow.authorization_url()
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 400
    assert "Location" not in page.headers
    assert "Error 400: redirect_uri_mismatch" in page.text
    assert elsewhere in page.text

    fake.add_oauth_client(CLIENT_ID, CLIENT_SECRET, redirect_uris=[REDIRECT, elsewhere])
    code = _answer(browser, fake, _auth_url(fake, code_challenge=_challenge(VERIFIER),
                                            code_challenge_method="S256"))["code"]
    mismatch = _exchange(fake, browser, code, redirect_uri=elsewhere)
    assert (mismatch.status_code, mismatch.json()["error"]) == (400, "redirect_uri_mismatch")
    assert _exchange(fake, browser, code, redirect_uri=None).json()["error"] == "invalid_request"
    assert _exchange(fake, browser, code).status_code == 200


def test_deny_sends_access_denied_with_the_state_unchanged(
    fake: FakeGoogleCalendar, browser: requests.Session
) -> None:
    state = "csrf token/with spaces & symbols=é+%"
    answer = _answer(browser, fake, _auth_url(fake, state=state, login_hint=ALICE), button="deny")
    assert answer == {"error": "access_denied", "state": state}
    assert fake.consents == []
    # the request is answered: its form cannot be posted again
    page = browser.get(_auth_url(fake))
    form = read_form(page.text)
    post = f"{fake.base_url}{form.action}"
    assert browser.post(post, data=form.submit("deny"), allow_redirects=False).status_code == 302
    assert browser.post(post, data=form.submit("allow"), allow_redirects=False).status_code == 400


@pytest.mark.parametrize(("params", "status", "error"), [
    ({"client_id": "unknown.apps.googleusercontent.com"}, 401, "invalid_client"),
    ({"client_id": ""}, 400, "invalid_request"),
    ({"response_type": ""}, 400, "invalid_request"),
    ({"response_type": "token"}, 400, "unsupported_response_type"),
    ({"scope": ""}, 400, "invalid_request"),
    ({"scope": "openid https://example.com/not-a-google-scope"}, 400, "invalid_scope"),
    ({"access_type": "forever"}, 400, "invalid_request"),
    ({"prompt": "consent none"}, 400, "invalid_request"),
    ({"prompt": "always"}, 400, "invalid_request"),
    ({"code_challenge": VERIFIER, "code_challenge_method": "S512"}, 400, "invalid_request"),
    ({"code_challenge": "too-short"}, 400, "invalid_request"),
    ({"code_challenge_method": "S256"}, 400, "invalid_request"),
])
def test_malformed_requests_are_shown_on_an_error_page(
    fake: FakeGoogleCalendar, browser: requests.Session, params: dict[str, str], status: int, error: str
) -> None:
    page = browser.get(_auth_url(fake, **params), allow_redirects=False)
    assert page.status_code == status
    assert "Location" not in page.headers
    assert f"Error {status}: {error}" in page.text


def test_prompt_none_cannot_be_answered_without_a_browser_session(
    fake: FakeGoogleCalendar, browser: requests.Session
) -> None:
    answer = browser.get(_auth_url(fake, prompt="none"), allow_redirects=False)
    assert answer.status_code == 302
    assert parse_qs(urlsplit(answer.headers["Location"]).query) == {"error": ["login_required"], "state": ["s-1"]}


def test_echoed_values_are_escaped_on_the_pages(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    hostile = '"><script>alert(1)</script>'
    page = browser.get(_auth_url(fake, login_hint=hostile)).text
    assert "<script>" not in page
    assert read_form(page).fields["email"] == hostile
    problem = browser.get(_auth_url(fake, redirect_uri=REDIRECT + hostile)).text
    assert "<script>" not in problem


def test_client_authentication_at_the_token_endpoint(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    code = _answer(browser, fake, _auth_url(fake))["code"]
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    wrong = browser.post(fake.token_uri, data=base, auth=(CLIENT_ID, "not-the-secret"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    unknown = browser.post(fake.token_uri, data={**base, "client_id": "nobody", "client_secret": "x"})
    assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
    no_secret = browser.post(fake.token_uri, data={**base, "client_id": CLIENT_ID})
    assert (no_secret.status_code, no_secret.json()["error"]) == (400, "invalid_request")
    no_client = browser.post(fake.token_uri, data=base)
    assert no_client.json()["error"] == "invalid_request"
    assert browser.post(fake.token_uri, data=base, auth=(CLIENT_ID, CLIENT_SECRET)).status_code == 200


def test_expired_unknown_and_hooked_codes(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    unknown = _exchange(fake, browser, "4/0-no-such-code", code_verifier=None)
    assert unknown.json() == {"error": "invalid_grant", "error_description": "Bad Request"}

    fake.fail_next_code_exchange()
    code = _answer(browser, fake, _auth_url(fake))["code"]
    failed = _exchange(fake, browser, code, code_verifier=None)
    assert (failed.status_code, failed.json()["error"]) == (400, "invalid_grant")
    assert _exchange(fake, browser, code, code_verifier=None).status_code == 200  # the code was not used up

    fake.code_lifetime = 0.0
    late = _answer(browser, fake, _auth_url(fake))["code"]
    assert _exchange(fake, browser, late, code_verifier=None).json()["error"] == "invalid_grant"


def test_scopes_granted_in_long_form_and_include_granted_scopes(
    fake: FakeGoogleCalendar, browser: requests.Session
) -> None:
    first = _answer(browser, fake, _auth_url(fake, scope="email profile", login_hint=ALICE))
    assert first["scope"].split() == [EMAIL_SCOPE, "https://www.googleapis.com/auth/userinfo.profile"]
    tokens = _exchange(fake, browser, first["code"], code_verifier=None).json()
    assert "id_token" not in tokens  # no openid, no ID token
    later = _answer(browser, fake, _auth_url(fake, scope=f"openid {CALENDAR_SCOPE}", include_granted_scopes="true",
                                             login_hint=ALICE))
    assert set(later["scope"].split()) == {EMAIL_SCOPE, "https://www.googleapis.com/auth/userinfo.profile", "openid",
                                          CALENDAR_SCOPE}
    claims = _verify(fake, browser, _exchange(fake, browser, later["code"], code_verifier=None).json()["id_token"])
    assert claims["email"] == ALICE and claims["name"] == "Alice"


def test_signing_certificates_discovery_and_jwks(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    certs = browser.get(fake.certs_uri).json()
    (kid, pem), = certs.items()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    discovery = browser.get(f"{fake.base_url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == "https://accounts.google.com"
    assert (discovery["authorization_endpoint"], discovery["token_endpoint"]) == (fake.auth_uri, fake.token_uri)
    jwks = jwt.PyJWKSet.from_dict(browser.get(discovery["jwks_uri"]).json())
    code = _answer(browser, fake, _auth_url(fake))["code"]
    token = _exchange(fake, browser, code, code_verifier=None).json()["id_token"]
    assert jwt.get_unverified_header(token)["kid"] == kid == jwks.keys[0].key_id
    claims = jwt.decode(token, jwks[kid].key, algorithms=["RS256"], audience=CLIENT_ID,
                        issuer="https://accounts.google.com")
    assert claims["email"] == ALICE
    assert browser.get(fake.certs_uri).json() == certs  # one key for the fake's lifetime


def test_control_namespace_hooks(fake: FakeGoogleCalendar, browser: requests.Session) -> None:
    context = fake.client_ssl_context()
    call_control(fake.base_url, "add_oauth_client", {"client_id": "other", "client_secret": "other-secret-1",
                                                     "redirect_uris": [REDIRECT]}, context=context)
    call_control(fake.base_url, "unverify_email", {"email": BOB}, context=context)
    call_control(fake.base_url, "fail_next_code_exchange", {"error": "invalid_grant"}, context=context)
    code = _answer(browser, fake, _auth_url(fake, client_id="other"), email=BOB)["code"]
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    assert browser.post(fake.token_uri, data=data, auth=("other", "other-secret-1")).status_code == 400
    token = browser.post(fake.token_uri, data=data, auth=("other", "other-secret-1")).json()["id_token"]
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))["email_verified"] is False
    consents = call_control(fake.base_url, "consents", context=context)["items"]
    assert consents == [{"email": BOB, "client_id": "other", "scopes": SCOPES}]


def test_plain_http_stays_the_default_and_tls_works_in_a_subprocess() -> None:
    with FakeGoogleCalendar() as plain:
        assert plain.base_url.startswith("http://") and plain.ca_bundle_path == ""
        assert plain.auth_uri == f"{plain.base_url}/o/oauth2/v2/auth"
        with pytest.raises(RuntimeError):
            plain.client_ssl_context()
    with serve_in_subprocess(tls=True) as remote:
        assert remote.base_url.startswith("https://") and remote.ca_bundle_path
        remote.control("add_oauth_client", client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT])
        session = requests.Session()
        session.trust_env = False
        page = session.get(f"{remote.auth_uri}?{urlencode({'client_id': CLIENT_ID, 'redirect_uri': REDIRECT})}",
                           verify=remote.ca_bundle_path)
        assert page.status_code == 400  # no response_type: Google's error page, over HTTPS
        assert "invalid_request" in page.text
