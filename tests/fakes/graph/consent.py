"""The browser side of the Microsoft identity platform's authorization code flow (OAuth 2.0 with OpenID Connect, v2.0
endpoints): ``/{tenant}/oauth2/v2.0/authorize`` with its consent page and the form it posts
(``.../authorize/decision``), and the ``authorization_code`` grant on the token endpoint.

Like Entra, the authorization endpoint explains a wrong tenant, client or redirect URI on an error page of its own
(HTTP 200, as Entra's documentation says its displayed errors are) and never sends the browser back; once those
check out, every other problem goes back to the redirect URI as ``error`` and ``error_description`` (with the AADSTS
code) plus ``state``, in the requested ``response_mode`` (``query``, the default for codes, ``fragment`` or
``form_post``: a page whose form the user sends on with ``#continue``, since the fake's pages run no script).

The code grant authenticates the client like the other grants (secret in the body or HTTP Basic, or a certificate
assertion; a public client, registered with neither, sends nothing), redeems a code once and within
``code_lifetime`` seconds, requires the ``redirect_uri`` of the authorization request, checks the PKCE verifier
(``S256`` or ``plain``, as Entra supports both) and limits ``scope`` to what was consented.  The answer carries a
delegated access token for the mailbox typed on the consent page, a refresh token (only with ``offline_access``), a
signed ID token (with ``openid``) and ``client_info`` when the client asked for it (msal does).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from tests.fakes.consent_page import (
    AuthorizationRequest,
    ConsentRecord,
    IssuedCode,
    consent_page,
    error_page,
    form_post_page,
    html_headers,
    pkce_matches,
    pkce_value_ok,
    redirect_url,
    single_values,
)
from tests.fakes.graph.common import GraphError, _b64url, _Response
from tests.fakes.graph.identity import (
    GRAPH_DEFAULT_SCOPE,
    GRAPH_RESOURCE,
    IdentityMixin,
    _App,
    _OAuthError,
    _RefreshToken,
)
from tests.fakes.graph.mailbox import MailboxMixin
from tests.known_secrets import register

#: status of the error pages the authorization endpoint shows (Entra documents 200 for errors shown on a page)
ERROR_PAGE_STATUS = 200
_OIDC_SCOPES = ("openid", "profile", "email", "offline_access")
_PROMPTS = ("login", "none", "consent", "select_account", "create")
_RESPONSE_MODES = ("query", "fragment", "form_post")
_TITLE = "Sign in - Fake Microsoft identity platform"
_GRAPH_PREFIX = f"{GRAPH_RESOURCE}/".lower()


def _short(scope: str) -> str:
    """A Graph scope without its resource (``https://graph.microsoft.com/Calendars.Read`` -> ``Calendars.Read``)."""
    return scope[len(_GRAPH_PREFIX):] if scope.lower().startswith(_GRAPH_PREFIX) else scope


def _answer(redirect_uri: str, mode: str, params: list[tuple[str, str]]) -> _Response:
    """Send ``params`` back to the client in ``mode``: a redirect (query or fragment) or a form-post page."""
    if mode == "form_post":
        return _Response(200, form_post_page(title=_TITLE, action=redirect_uri, fields=params), html_headers())
    location = redirect_url(redirect_uri, params, fragment=mode == "fragment")
    return _Response(302, None, {"Location": location, "Cache-Control": "no-store"})


class _PageError(Exception):
    """A problem shown on the sign-in page; the browser is not sent back to the client."""

    def __init__(self, error: _OAuthError) -> None:
        super().__init__(str(error))
        self.error = error

    def response(self) -> _Response:
        body = self.error.body()
        details = {"Error": body["error"], "Trace ID": body["trace_id"], "Correlation ID": body["correlation_id"],
                   "Timestamp": body["timestamp"]}
        page = error_page(title=_TITLE, heading="Signing in did not work",
                          message=f"AADSTS{self.error.aadsts}: {self.error.description}", details=details)
        return _Response(ERROR_PAGE_STATUS, page, html_headers())


class _RedirectError(Exception):
    """A problem answered to the client's redirect URI (``error``, ``error_description``, ``state``)."""

    def __init__(self, redirect_uri: str, mode: str, state: str | None, error: _OAuthError) -> None:
        super().__init__(str(error))
        self.redirect_uri, self.mode, self.state, self.error = redirect_uri, mode, state, error

    def response(self) -> _Response:
        body = self.error.body()
        params = [("error", body["error"]), ("error_description", body["error_description"])]
        return _answer(self.redirect_uri, self.mode, params + ([("state", self.state)] if self.state is not None
                                                               else []))


class ConsentMixin(IdentityMixin, MailboxMixin):
    """The authorization endpoint, the consent decision and the authorization-code grant."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code_lifetime = 600.0  # seconds an authorization code can be redeemed
        self.consents: list[ConsentRecord] = []
        self._pending: dict[str, AuthorizationRequest] = {}  # request id (hidden field) -> request
        self._codes: dict[str, IssuedCode] = {}
        self._code_failures: list[_OAuthError] = []

    # ------------------------------------------------------------------------------------ hooks
    def fail_next_code_exchange(self, n: int = 1, error: str = "invalid_grant", aadsts: int = 70008,
                                description: str = "The provided authorization code or refresh token has expired "
                                                   "due to inactivity.") -> None:
        """The next ``n`` authorization-code redemptions (after client authentication) answer 400 ``error`` with
        ``AADSTS<aadsts>``; the code itself stays unredeemed."""
        with self._lock:
            self._code_failures.extend(_OAuthError(400, error, aadsts, description) for _ in range(n))

    # ------------------------------------------------------------------------------------ routing
    def _authorize_endpoint(self, method: str, tenant: str, rest: list[str], query: str, body: bytes) -> _Response:
        """``/{tenant}/oauth2/v2.0/authorize`` (GET, or POST with a form body) and ``.../authorize/decision``."""
        if not rest and method in ("GET", "POST"):
            return self._authorization(tenant, query if method == "GET" else body.decode("utf-8", "replace"))
        if rest == ["decision"] and method == "POST":
            return self._decision(tenant, body)
        return GraphError(404, "NotFound", f"No such endpoint {'/'.join(['authorize', *rest])}").response()

    # ------------------------------------------------------------------------------------ authorization endpoint
    def _authorization(self, tenant: str, raw: str) -> _Response:
        params, repeated = single_values(raw)
        with self._lock:
            try:
                request = self._authorization_request(tenant, params, repeated)
            except (_PageError, _RedirectError) as err:
                return err.response()
            request_id = secrets.token_urlsafe(24)
            self._pending[request_id] = request
        return self._consent_page(request_id, request, request.login_hint)

    def _consent_page(self, request_id: str, request: AuthorizationRequest, email: str, problem: str = ""
                      ) -> _Response:
        tenant = request.extra["tenant"]
        page = consent_page(title=_TITLE, service="Sign in with your work account", client=request.client_id,
                            action=f"/{tenant}/oauth2/v2.0/authorize/decision", request_id=request_id, email=email,
                            scopes=request.scopes, problem=problem)
        return _Response(200, page, html_headers())

    def _authorization_request(self, tenant: str, params: dict[str, str], repeated: list[str]
                               ) -> AuthorizationRequest:
        """The request once Entra would accept it; ``_PageError`` or ``_RedirectError`` otherwise."""
        if not self._tenant_ok(tenant):
            raise _PageError(_OAuthError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found."))
        app = self._authorizing_app(params.get("client_id"))
        redirect_uri, sent = self._authorizing_redirect(app, params.get("redirect_uri"))
        mode, state = params.get("response_mode") or "query", params.get("state")
        try:
            if mode not in _RESPONSE_MODES:
                mode = "query"
                raise _OAuthError(400, "invalid_request", 70007, "The provided value for the input parameter "
                                                                 "'response_mode' is not valid.")
            if repeated:
                raise _OAuthError(400, "invalid_request", 9002313, f"Invalid request. Parameter(s) sent more than "
                                                                   f"once: {', '.join(repeated)}.")
            self._check_response_type(params.get("response_type"))
            scopes = self._requested_scopes(params.get("scope"))
            challenge, method = self._pkce_parameters(params)
            if self._prompt(params.get("prompt")) == "none":  # the fake keeps no browser session to sign in with
                raise _OAuthError(400, "login_required", 50058, "A silent sign-in request was sent but no user is "
                                                                "signed in.")
        except _OAuthError as err:
            raise _RedirectError(redirect_uri, mode, state, err) from err
        extra = {"tenant": tenant, "response_mode": mode, "client_info": params.get("client_info", "")}
        return AuthorizationRequest(app.client_id, redirect_uri, scopes, state=state, nonce=params.get("nonce"),
                                    code_challenge=challenge, code_challenge_method=method,
                                    login_hint=params.get("login_hint", ""), redirect_uri_sent=sent, extra=extra)

    def _authorizing_app(self, client_id: str | None) -> _App:
        if not client_id:
            raise _PageError(_OAuthError(400, "invalid_request", 900144, "The request body must contain the "
                                                                         "following parameter: 'client_id'."))
        app = self._apps.get(client_id)
        if app is None:
            raise _PageError(_OAuthError(400, "unauthorized_client", 700016, f"Application with identifier "
                                         f"'{client_id}' was not found in the directory '{self.tenant_domain}'."))
        return app

    @staticmethod
    def _authorizing_redirect(app: _App, redirect_uri: str | None) -> tuple[str, bool]:
        """The redirect URI to answer to (the first registered one when none is sent) and whether it was sent."""
        if not app.redirect_uris:
            raise _PageError(_OAuthError(400, "invalid_request", 500113, "No reply address is registered for the "
                                                                         "application."))
        if redirect_uri is None:
            return app.redirect_uris[0], False
        if redirect_uri not in app.redirect_uris:
            raise _PageError(_OAuthError(400, "invalid_request", 50011, f"The redirect URI '{redirect_uri}' "
                                         f"specified in the request does not match the redirect URIs configured for "
                                         f"the application '{app.client_id}'."))
        return redirect_uri, True

    @staticmethod
    def _check_response_type(response_type: str | None) -> None:
        if not response_type:
            raise _OAuthError(400, "invalid_request", 900144, "The request body must contain the following "
                                                              "parameter: 'response_type'.")
        words = set(response_type.split())
        if words & {"token", "id_token"}:  # implicit and hybrid grants are off in the fake's app registrations
            raise _OAuthError(400, "unsupported_response_type", 700054, f"response_type '{response_type}' is not "
                                                                        f"enabled for the application.")
        if words != {"code"}:
            raise _OAuthError(400, "unsupported_response_type", 70005, f"The response_type '{response_type}' is "
                                                                       f"not supported.")

    @staticmethod
    def _requested_scopes(raw: str | None) -> tuple[str, ...]:
        scopes = tuple(dict.fromkeys((raw or "").split()))
        if not scopes:
            raise _OAuthError(400, "invalid_request", 900144, "The request body must contain the following "
                                                              "parameter: 'scope'.")
        resource = [s for s in scopes if s.lower() not in _OIDC_SCOPES]
        for scope in resource:
            if "://" in scope and not scope.lower().startswith(_GRAPH_PREFIX):
                raise _OAuthError(400, "invalid_resource", 500011, f"The resource principal named "
                                  f"{scope.rsplit('/', 1)[0]} was not found in the tenant.")
        if any(s.lower() == GRAPH_DEFAULT_SCOPE.lower() for s in resource) and len(resource) > 1:
            raise _OAuthError(400, "invalid_scope", 70011, f"The provided value for the input parameter 'scope' is "
                                                           f"not valid: .default cannot be combined with other "
                                                           f"scopes of the resource ({' '.join(scopes)}).")
        return scopes

    @staticmethod
    def _pkce_parameters(params: dict[str, str]) -> tuple[str | None, str]:
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None:
            return None, "plain"
        if method not in (None, "S256", "plain"):
            raise _OAuthError(400, "invalid_request", 90023, f"Unsupported code_challenge_method '{method}'.")
        if not pkce_value_ok(challenge):
            raise _OAuthError(400, "invalid_request", 501491, "Invalid size of Code_Challenge parameter.")
        return challenge, method or "plain"  # a challenge without a method is taken as plain text

    @staticmethod
    def _prompt(prompt: str | None) -> str:
        if prompt is not None and prompt not in _PROMPTS:
            raise _OAuthError(400, "invalid_request", 90023, f"Unsupported 'prompt' value '{prompt}'.")
        return prompt or ""

    # ------------------------------------------------------------------------------------ the user's decision
    def _decision(self, tenant: str, body: bytes) -> _Response:
        form, _repeated = single_values(body.decode("utf-8", "replace"))
        with self._lock:
            request_id = form.get("request_id", "")
            request = self._pending.get(request_id)
            if request is None or request.extra["tenant"] != tenant:
                return _PageError(_OAuthError(400, "invalid_request", 9002313, "The sign-in request is unknown or "
                                                                               "was already answered.")).response()
            decision = form.get("decision")
            if decision == "deny":
                del self._pending[request_id]
                declined = _OAuthError(400, "access_denied", 65004, "User declined to consent to access the app.")
                return _RedirectError(request.redirect_uri, request.extra["response_mode"], request.state,
                                      declined).response()
            if decision != "allow":
                return _PageError(_OAuthError(400, "invalid_request", 9002313, "Choose Allow or Deny.")).response()
            email = form.get("email", "").strip()
            problem = self._sign_in_problem(email)
            if problem:
                return self._consent_page(request_id, request, email, problem)
            del self._pending[request_id]
            return self._issue_code(request, email)

    def _sign_in_problem(self, email: str) -> str:
        local, _, domain = email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in email):
            return "Enter the email address of your work account."
        try:
            self._mailbox(email, create=self.auto_create_users)
        except GraphError:
            return f"AADSTS50034: The user account does not exist in the '{self.tenant_domain}' directory."
        return ""

    def _issue_code(self, request: AuthorizationRequest, email: str) -> _Response:
        box = self._mailbox(email, create=True)
        code = "1.A" + _b64url(secrets.token_bytes(96))
        register(code)
        self._codes[code] = IssuedCode(request, box.upn, request.scopes, time.time())
        self.consents.append(ConsentRecord(email, request.client_id, request.scopes))
        params = [("code", code)]
        if request.extra.get("client_info") == "1":
            params.append(("client_info", self._client_info(box)))
        if request.state is not None:
            params.append(("state", request.state))
        params.append(("session_state", str(uuid.uuid4())))
        return _answer(request.redirect_uri, request.extra["response_mode"], params)

    # ------------------------------------------------------------------------------------ authorization_code grant
    def _token_grant(self, tenant: str, headers: Any, form: dict[str, str]) -> _Response:
        if form.get("grant_type") != "authorization_code":
            return super()._token_grant(tenant, headers, form)
        self._check_token_tenant(tenant)
        client_id = self._authenticate_client(headers, form, public_ok=True)
        if self._code_failures:
            raise self._code_failures.pop(0)
        issued = self._redeemable(form.get("code"), client_id)
        request = issued.request
        sent = form.get("redirect_uri")
        if sent is None:
            raise _OAuthError(400, "invalid_request", 900144, "The request body must contain the following "
                                                              "parameter: 'redirect_uri'.")
        if sent != request.redirect_uri:
            raise _OAuthError(401, "invalid_client", 500112, f"The reply address '{sent}' does not match the reply "
                                                             f"address '{request.redirect_uri}' provided when "
                                                             f"requesting Authorization code.")
        self._check_verifier(form.get("code_verifier"), request)
        scopes = self._redeemed_scopes(form, issued)
        issued.redeemed = True
        return _Response(200, self._code_tokens(issued, client_id, scopes, form))

    def _redeemable(self, code: str | None, client_id: str) -> IssuedCode:
        if not code:
            raise _OAuthError(400, "invalid_request", 900144, "The request body must contain the following "
                                                              "parameter: 'code'.")
        issued = self._codes.get(code)
        if issued is None:
            raise _OAuthError(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if issued.request.client_id != client_id:
            raise _OAuthError(400, "invalid_grant", 70000, "The provided authorization code was issued to another "
                                                           "client.")
        if issued.redeemed:
            raise _OAuthError(400, "invalid_grant", 54005, "OAuth2 Authorization code was already redeemed, please "
                                                           "retry with a new valid code or use an existing refresh "
                                                           "token.")
        if time.time() - issued.issued_at > self.code_lifetime:
            raise _OAuthError(400, "invalid_grant", 70008, "The provided authorization code or refresh token has "
                                                           "expired due to inactivity. Send a new interactive "
                                                           "authorization request for this user and resource.")
        return issued

    @staticmethod
    def _check_verifier(verifier: str | None, request: AuthorizationRequest) -> None:
        if request.code_challenge is None:
            return
        if not verifier:
            raise _OAuthError(400, "invalid_grant", 50148, "The code_verifier does not match the code_challenge "
                                                           "supplied in the authorization request for PKCE.")
        if not pkce_matches(verifier, request.code_challenge, request.code_challenge_method):
            raise _OAuthError(400, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge "
                                                            "supplied in the authorization request.")

    @staticmethod
    def _redeemed_scopes(form: dict[str, str], issued: IssuedCode) -> list[str]:
        """The scopes the token is asked for: all consented ones, or (``scope``) some of them."""
        if "scope" not in form:
            return list(issued.granted)
        asked = form["scope"].split()
        if not asked:
            raise _OAuthError(400, "invalid_scope", 28003, "Provided value for the input parameter scope cannot be "
                                                           "empty when requesting an access token using the "
                                                           "provided authorization code.")
        consented = {_short(s).lower() for s in issued.granted}
        default = GRAPH_DEFAULT_SCOPE.lower()
        if any(_short(s).lower() not in consented and not (s.lower() == default and consented - set(_OIDC_SCOPES))
               for s in asked):
            raise _OAuthError(400, "invalid_grant", 70000, "The request was denied because one or more scopes "
                                                           "requested are unauthorized or expired. The user must "
                                                           "first sign in and grant the client application access "
                                                           "to the requested scope.")
        return asked

    def _code_tokens(self, issued: IssuedCode, client_id: str, scopes: list[str], form: dict[str, str]
                     ) -> dict[str, Any]:
        box = self._mailbox(issued.email, create=True)
        keys = {s.lower() for s in scopes}
        resource = [_short(s) for s in scopes if s.lower() not in _OIDC_SCOPES] or ["User.Read"]
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource + [s for s in ("openid", "profile", "email") if s in keys]),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self._issue(box.upn, client_id),
        }
        if "offline_access" in keys:
            refresh = "1.AAAA" + _b64url(secrets.token_bytes(64))
            register(refresh)
            self._refresh_tokens[refresh] = _RefreshToken(box.upn, client_id, family=refresh)
            out["refresh_token"] = refresh
        if "openid" in keys:
            out["id_token"] = self._id_token(client_id, box, nonce=issued.request.nonce, email="email" in keys)
        if form.get("client_info") == "1":
            out["client_info"] = self._client_info(box)
        return out
