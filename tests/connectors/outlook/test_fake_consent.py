"""The browser side of the fake Microsoft identity platform: the consent page driven like a browser (plain HTTPS
requests for the page and its form), then msal's auth code flow for the exchange, PyJWT for the ID token and Graph
calls with the issued token."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import msal
import pytest
import requests

from tests.fakes.consent_page import ConsentRecord, read_form
from tests.fakes.graph import GRAPH_DEFAULT_SCOPE, FakeGraph
from tests.fakes.http_support import call_control

REDIRECT = "http://127.0.0.1:8766/oauth/microsoft/callback"
SCOPES = ["Calendars.ReadWrite", "MailboxSettings.Read"]
ALICE = "alice@contoso.com"
BOB = "bob@contoso.com"
VERIFIER = "v" * 43 + "-._~0123456789"
WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}


@pytest.fixture
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        server.add_app(server.client_id, secret=server.client_secret, redirect_uris=[REDIRECT])
        yield server


@pytest.fixture
def browser(fake: FakeGraph) -> Iterator[requests.Session]:
    """The agent's browser as plain HTTPS requests: it trusts the fake's CA and shows us the redirects."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify=
    session.verify = fake.ca_bundle_path
    yield session
    session.close()


@pytest.fixture
def make_app(fake: FakeGraph, browser: requests.Session) -> Callable[..., Any]:
    def make(client_id: str | None = None, secret: str | None = "default") -> Any:
        if secret is None:
            return msal.PublicClientApplication(client_id or fake.client_id, authority=fake.authority,
                                                http_client=browser, instance_discovery=False)
        return msal.ConfidentialClientApplication(
            client_id or fake.client_id, client_credential=fake.client_secret if secret == "default" else secret,
            authority=fake.authority, http_client=browser, instance_discovery=False)

    return make


def _answer(browser: requests.Session, fake: FakeGraph, url: str, button: str = "allow",
            **typed: str) -> dict[str, str]:
    """Open the consent page at ``url``, type ``typed``, press ``button``: what reaches the redirect URI (the
    redirect's query, or for ``response_mode=form_post`` the fields the relay page posts with ``#continue``)."""
    page = browser.get(url, allow_redirects=False)
    assert page.status_code == 200, page.text
    form = read_form(page.text)
    decision = browser.post(f"{fake.base_url}{form.action}", data=form.submit(button, **typed), allow_redirects=False)
    if decision.status_code == 200:
        relay = read_form(decision.text)
        assert (relay.action, relay.method) == (REDIRECT, "post")
        return relay.submit("continue")
    assert decision.status_code == 302, decision.text
    location = decision.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def _flow(app: Any, login_hint: str = ALICE) -> dict[str, Any]:
    """msal's flow as syncd starts it; ``form_post`` is the mode msal asks for (it warns about any other)."""
    return dict(app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, login_hint=login_hint,
                                            response_mode="form_post"))


def _authorize_url(fake: FakeGraph, **params: str) -> str:
    base = {"client_id": fake.client_id, "response_type": "code", "redirect_uri": REDIRECT, "login_hint": ALICE,
            "scope": "openid offline_access Calendars.ReadWrite", "state": "s-1",
            "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("="),
            "code_challenge_method": "S256"}
    return f"{fake.authority}/oauth2/v2.0/authorize?{urlencode({k: v for k, v in {**base, **params}.items() if v})}"


def _redeem(fake: FakeGraph, browser: requests.Session, code: str, **form: str | None) -> requests.Response:
    data = {"grant_type": "authorization_code", "client_id": fake.client_id, "client_secret": fake.client_secret,
            "code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER, **form}
    return browser.post(fake.token_endpoint, data={k: v for k, v in data.items() if v is not None})


def _verified_claims(fake: FakeGraph, browser: requests.Session, token: str, client_id: str) -> dict[str, Any]:
    """The ID token checked as a relying party would: keys from the discovery's jwks_uri, RS256, aud, iss."""
    discovery = browser.get(f"{fake.authority}/v2.0/.well-known/openid-configuration").json()
    keys = jwt.PyJWKSet.from_dict(browser.get(discovery["jwks_uri"]).json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    return dict(jwt.decode(token, key.key, algorithms=["RS256"], audience=client_id, issuer=discovery["issuer"]))


def _graph(fake: FakeGraph, browser: requests.Session, token: str, path: str, **params: str) -> requests.Response:
    return browser.get(f"{fake.graph_url}/{path}", params=params, headers={"Authorization": f"Bearer {token}"})


def test_msal_auth_code_flow_connects_a_mailbox(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    fake.add_event(ALICE, {"subject": "Standup", "start": {"dateTime": "2026-03-02T09:00:00", "timeZone": "UTC"},
                           "end": {"dateTime": "2026-03-02T09:15:00", "timeZone": "UTC"}})
    app = make_app()
    flow = _flow(app)
    sent = dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    assert (sent["response_mode"], sent["client_info"], sent["code_challenge_method"]) == ("form_post", "1", "S256")
    assert set(sent["scope"].split()) == {*SCOPES, "openid", "profile", "offline_access"}
    page = browser.get(flow["auth_uri"])
    assert page.status_code == 200 and "<script" not in page.text
    form = read_form(page.text)
    assert form.fields["email"] == ALICE and set(form.buttons) == {"allow", "deny"}
    assert "<li>Calendars.ReadWrite</li>" in page.text and "<li>offline_access</li>" in page.text

    answer = _answer(browser, fake, flow["auth_uri"])
    assert answer["state"] == flow["state"]
    assert answer["session_state"] and answer["client_info"]
    result = app.acquire_token_by_auth_code_flow(flow, answer)
    assert result["token_type"] == "Bearer" and result["ext_expires_in"] == fake.token_lifetime
    assert result["scope"] == "Calendars.ReadWrite MailboxSettings.Read openid profile"
    assert result["id_token_claims"]["preferred_username"] == ALICE
    assert json.loads(base64.urlsafe_b64decode(result["client_info"] + "==")) == {
        "uid": fake.user_id(ALICE), "utid": fake.tenant_id}
    assert fake.consents == [ConsentRecord(ALICE, fake.client_id, tuple(sent["scope"].split()))]

    claims = _verified_claims(fake, browser, result["id_token"], fake.client_id)
    assert (claims["oid"], claims["tid"], claims["nonce"]) == (fake.user_id(ALICE), fake.tenant_id, sent["nonce"])
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"] and claims["sub"]
    me = _graph(fake, browser, result["access_token"], "me").json()
    assert (me["id"], me["mail"], me["userPrincipalName"], me["displayName"]) == (
        fake.user_id(ALICE), ALICE, ALICE, "Alice")
    view = _graph(fake, browser, result["access_token"], "me/calendarView", **WINDOW)
    assert [e["subject"] for e in view.json()["value"]] == ["Standup"]
    assert [a["username"] for a in app.get_accounts()] == [ALICE]
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], SCOPES)
    assert _graph(fake, browser, refreshed["access_token"], "me").json()["mail"] == ALICE


def test_msal_default_query_mode_redirects(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    app = make_app()
    with pytest.warns(UserWarning, match="form_post"):  # msal's nudge towards form_post
        flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=REDIRECT, login_hint=ALICE)
    assert "response_mode" not in dict(parse_qsl(urlsplit(flow["auth_uri"]).query))
    page = browser.get(flow["auth_uri"])
    form = read_form(page.text)
    answer = browser.post(f"{fake.base_url}{form.action}", data=form.submit("allow"), allow_redirects=False)
    assert answer.status_code == 302  # Entra's default for codes: the query of the redirect URI
    result = app.acquire_token_by_auth_code_flow(flow, dict(parse_qsl(urlsplit(answer.headers["Location"]).query)))
    assert result["id_token_claims"]["preferred_username"] == ALICE


def test_the_email_typed_on_the_page_wins_over_login_hint(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    app = make_app()
    flow = _flow(app, login_hint=ALICE)
    result = app.acquire_token_by_auth_code_flow(flow, _answer(browser, fake, flow["auth_uri"], email=BOB))
    assert result["id_token_claims"]["preferred_username"] == BOB
    assert _verified_claims(fake, browser, result["id_token"], fake.client_id)["preferred_username"] == BOB
    assert _graph(fake, browser, result["access_token"], "me").json()["userPrincipalName"] == BOB
    denied = _graph(fake, browser, result["access_token"], f"users/{ALICE}/calendarView", **WINDOW)
    assert denied.status_code == 403


def test_pkce_verifier_missing_or_wrong_is_refused(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    app = make_app()
    flow = _flow(app)
    answer = _answer(browser, fake, flow["auth_uri"])
    missing = _redeem(fake, browser, answer["code"], code_verifier=None).json()
    assert (missing["error"], missing["error_codes"]) == ("invalid_grant", [50148])
    wrong = app.acquire_token_by_auth_code_flow({**flow, "code_verifier": "w" * 43}, answer)
    assert (wrong["error"], wrong["error_codes"]) == ("invalid_grant", [501481])
    assert wrong["error_description"].startswith("AADSTS501481:")
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, answer)  # refusals leave the code usable

    # Entra also supports plain challenges; a challenge without a method is plain
    code = _answer(browser, fake, _authorize_url(fake, code_challenge=VERIFIER, code_challenge_method=""))["code"]
    assert _redeem(fake, browser, code).status_code == 200


def test_a_code_is_redeemed_once_and_not_late(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    app = make_app()
    flow = _flow(app)
    answer = _answer(browser, fake, flow["auth_uri"])
    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, answer)
    again = app.acquire_token_by_auth_code_flow(flow, answer)
    assert (again["error"], again["error_codes"]) == ("invalid_grant", [54005])

    fake.code_lifetime = 0.0
    late = _answer(browser, fake, _authorize_url(fake))["code"]
    assert _redeem(fake, browser, late).json()["error_codes"] == [70008]
    assert _redeem(fake, browser, "1.A-no-such-code").json()["error_codes"] == [9002313]


def test_redirect_uri_mismatch_at_both_steps(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    elsewhere = "http://127.0.0.1:8766/elsewhere"
    page = browser.get(_authorize_url(fake, redirect_uri=elsewhere), allow_redirects=False)
    assert page.status_code == 200 and "Location" not in page.headers  # shown, never redirected
    assert "AADSTS50011" in page.text and elsewhere in page.text

    fake.add_app(fake.client_id, secret=fake.client_secret, redirect_uris=[REDIRECT, elsewhere])
    code = _answer(browser, fake, _authorize_url(fake))["code"]
    mismatch = _redeem(fake, browser, code, redirect_uri=elsewhere)
    assert (mismatch.status_code, mismatch.json()["error_codes"]) == (401, [500112])
    assert _redeem(fake, browser, code, redirect_uri=None).json()["error_codes"] == [900144]
    assert _redeem(fake, browser, code).status_code == 200


def test_deny_answers_access_denied(fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]) -> None:
    app = make_app()
    flow = _flow(app)
    answer = _answer(browser, fake, flow["auth_uri"], button="deny")
    assert answer["error"] == "access_denied" and answer["state"] == flow["state"]
    assert answer["error_description"].startswith("AADSTS65004: User declined to consent")
    assert app.acquire_token_by_auth_code_flow(flow, answer)["error"] == "access_denied"
    assert fake.consents == []


@pytest.mark.parametrize(("params", "aadsts"), [
    ({"client_id": "00000000-1111-2222-3333-444444444444"}, "AADSTS700016"),
    ({"client_id": ""}, "AADSTS900144"),
    ({"redirect_uri": "https://evil.example/cb"}, "AADSTS50011"),
])
def test_unknown_clients_and_redirects_get_an_error_page(
    fake: FakeGraph, browser: requests.Session, params: dict[str, str], aadsts: str
) -> None:
    page = browser.get(_authorize_url(fake, **params), allow_redirects=False)
    assert page.status_code == 200 and "Location" not in page.headers
    assert aadsts in page.text


def test_an_app_without_redirect_uris_and_an_unknown_tenant(fake: FakeGraph, browser: requests.Session) -> None:
    fake.add_app("no-redirects", secret="no-redirects-secret")
    assert "AADSTS500113" in browser.get(_authorize_url(fake, client_id="no-redirects")).text
    unknown = _authorize_url(fake).replace(f"/{fake.tenant_id}/", "/not-a-tenant/")
    assert "AADSTS90002" in browser.get(unknown).text


@pytest.mark.parametrize(("params", "error", "aadsts"), [
    ({"scope": ""}, "invalid_request", 900144),
    ({"scope": "openid https://outlook.office.com/Calendars.Read"}, "invalid_resource", 500011),
    ({"scope": f"{GRAPH_DEFAULT_SCOPE} Calendars.Read"}, "invalid_scope", 70011),
    ({"response_type": ""}, "invalid_request", 900144),
    ({"response_type": "id_token"}, "unsupported_response_type", 700054),
    ({"response_type": "nonsense"}, "unsupported_response_type", 70005),
    ({"response_mode": "postcard"}, "invalid_request", 70007),
    ({"code_challenge_method": "S512"}, "invalid_request", 90023),
    ({"code_challenge": "short"}, "invalid_request", 501491),
    ({"prompt": "never"}, "invalid_request", 90023),
    ({"prompt": "none"}, "login_required", 50058),
])
def test_other_problems_go_back_to_the_redirect_uri(
    fake: FakeGraph, browser: requests.Session, params: dict[str, str], error: str, aadsts: int
) -> None:
    answer = browser.get(_authorize_url(fake, **params), allow_redirects=False)
    assert answer.status_code == 302
    query = dict(parse_qsl(urlsplit(answer.headers["Location"]).query))
    assert (query["error"], query["state"]) == (error, "s-1")
    assert query["error_description"].startswith(f"AADSTS{aadsts}:")


def test_form_post_and_fragment_response_modes(fake: FakeGraph, browser: requests.Session) -> None:
    page = browser.get(_authorize_url(fake, response_mode="form_post"))
    posted = browser.post(f"{fake.base_url}{read_form(page.text).action}",
                          data=read_form(page.text).submit("allow"), allow_redirects=False)
    assert posted.status_code == 200 and "<script" not in posted.text
    relay = read_form(posted.text)
    assert (relay.action, relay.method, set(relay.buttons)) == (REDIRECT, "post", {"continue"})
    assert relay.fields["state"] == "s-1" and _redeem(fake, browser, relay.fields["code"]).status_code == 200

    page = browser.get(_authorize_url(fake, response_mode="fragment"))
    answer = browser.post(f"{fake.base_url}{read_form(page.text).action}", data=read_form(page.text).submit("allow"),
                          allow_redirects=False)
    location = urlsplit(answer.headers["Location"])
    assert not location.query and dict(parse_qsl(location.fragment))["state"] == "s-1"


def test_scope_at_redemption_is_limited_to_the_consent(fake: FakeGraph, browser: requests.Session) -> None:
    code = _answer(browser, fake, _authorize_url(fake))["code"]
    wider = _redeem(fake, browser, code, scope="Calendars.ReadWrite Mail.Send").json()
    assert (wider["error"], wider["error_codes"]) == ("invalid_grant", [70000])
    assert _redeem(fake, browser, code, scope="").json()["error_codes"] == [28003]
    narrow = _redeem(fake, browser, code, scope="https://graph.microsoft.com/Calendars.ReadWrite openid").json()
    assert narrow["scope"] == "Calendars.ReadWrite openid"
    assert "refresh_token" not in narrow and "id_token" in narrow  # no offline_access asked for at redemption


def test_public_clients_redeem_without_a_secret(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    fake.add_app("public-app", redirect_uris=[REDIRECT])
    app = make_app("public-app", secret=None)
    flow = _flow(app)
    result = app.acquire_token_by_auth_code_flow(flow, _answer(browser, fake, flow["auth_uri"]))
    assert result["id_token_claims"]["aud"] == "public-app"
    assert "client_secret" not in fake.token_requests[-1]
    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], SCOPES)
    assert "access_token" in refreshed, refreshed

    code = _answer(browser, fake, _authorize_url(fake, client_id="public-app"))["code"]
    with_secret = _redeem(fake, browser, code, client_id="public-app", client_secret="anything")
    assert with_secret.json()["error_codes"] == [700025]
    wrong_secret = _redeem(fake, browser, code, client_secret="not-the-secret")  # the confidential default app
    assert wrong_secret.json()["error_codes"] == [7000215]


def test_sign_in_problems_keep_the_page_open(fake: FakeGraph, browser: requests.Session) -> None:
    fake.auto_create_users = False
    fake.add_user(ALICE)
    page = browser.get(_authorize_url(fake))
    form = read_form(page.text)
    post = f"{fake.base_url}{form.action}"
    unknown = browser.post(post, data=form.submit("allow", email="nobody@contoso.com"), allow_redirects=False)
    assert unknown.status_code == 200 and "AADSTS50034" in unknown.text
    assert read_form(unknown.text).fields["email"] == "nobody@contoso.com"
    blank = browser.post(post, data=form.submit("allow", email=" "), allow_redirects=False)
    assert blank.status_code == 200 and 'id="problem"' in blank.text
    assert browser.post(post, data=form.submit("allow"), allow_redirects=False).status_code == 302


def test_fail_next_code_exchange_hook_and_control_commands(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    context = fake.client_ssl_context()
    call_control(fake.base_url, "add_app", {"client_id": "remote-app", "secret": "remote-app-secret",
                                            "redirect_uris": [REDIRECT]}, context=context)
    call_control(fake.base_url, "fail_next_code_exchange", {"aadsts": 70008}, context=context)
    app = make_app("remote-app", secret="remote-app-secret")
    flow = _flow(app)
    answer = _answer(browser, fake, flow["auth_uri"], email=BOB)
    failed = app.acquire_token_by_auth_code_flow(flow, answer)
    assert (failed["error"], failed["error_codes"]) == ("invalid_grant", [70008])
    fake.fail_next_code_exchange(error="invalid_grant", aadsts=54005, description="Already redeemed.")
    second = _flow(app)
    retry = app.acquire_token_by_auth_code_flow(second, _answer(browser, fake, second["auth_uri"]))
    assert retry["error_codes"] == [54005]
    third = _flow(app)
    assert "access_token" in app.acquire_token_by_auth_code_flow(third, _answer(browser, fake, third["auth_uri"]))
    consents = call_control(fake.base_url, "consents", context=context)["result"]
    assert [c["email"] for c in consents] == [BOB, ALICE, ALICE]
    assert all(c["client_id"] == "remote-app" for c in consents)


def test_discovery_keys_and_refresh_grant_id_tokens_are_signed(
    fake: FakeGraph, browser: requests.Session, make_app: Callable[..., Any]
) -> None:
    discovery = browser.get(f"{fake.authority}/v2.0/.well-known/openid-configuration").json()
    assert discovery["issuer"] == f"{fake.base_url}/{fake.tenant_id}/v2.0" == fake.issuer
    assert discovery["authorization_endpoint"] == f"{fake.authority}/oauth2/v2.0/authorize"
    common = browser.get(f"{fake.base_url}/common/v2.0/.well-known/openid-configuration").json()
    assert common["issuer"] == f"{fake.base_url}/{{tenantid}}/v2.0"
    (key,) = browser.get(discovery["jwks_uri"]).json()["keys"]
    assert (key["kty"], key["use"], key["kid"]) == ("RSA", "sig", key["x5t"])

    fake.add_refresh_token("rt-alice-consent", ALICE)
    result = make_app().acquire_token_by_refresh_token("rt-alice-consent", SCOPES)
    claims = _verified_claims(fake, browser, result["id_token"], fake.client_id)
    assert claims["preferred_username"] == ALICE
    assert _graph(fake, browser, make_app().acquire_token_for_client([GRAPH_DEFAULT_SCOPE])["access_token"],
                  f"users/{BOB}").json()["userPrincipalName"] == BOB
