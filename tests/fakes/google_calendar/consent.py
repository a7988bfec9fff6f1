"""The browser side of Google's OAuth 2.0 ("OAuth 2.0 for Web Server Applications" and OpenID Connect): registered
web clients, the authorization endpoint with its consent page and the form it posts, the ``authorization_code`` grant
on ``/token`` (client secret in the body or HTTP Basic, single-use codes, PKCE), RS256 ID tokens, the certificates
that verify them (v1 PEM map and v3 JWKS), the discovery document, and the test hooks around them.

Google shows malformed requests (unknown client, unregistered redirect URI, bad ``response_type``, ``scope``,
``access_type``, ``prompt`` or PKCE parameters) on an error page of its own and never sends the browser back; only
the user's answer (a code, or ``error=access_denied``) and ``prompt=none`` (``error=login_required``: the fake keeps
no browser sessions) go back to the redirect URI.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.consent_page import (
    AuthorizationRequest,
    ConsentRecord,
    IssuedCode,
    SigningKey,
    consent_page,
    error_page,
    html_headers,
    left_half_hash,
    pkce_matches,
    pkce_value_ok,
    redirect_url,
    single_values,
)
from tests.fakes.google_calendar.common import _Response
from tests.fakes.google_calendar.oauth import OAuthMixin
from tests.known_secrets import register

GOOGLE_ISSUER = "https://accounts.google.com"
SCOPE_PREFIX = "https://www.googleapis.com/auth/"
#: the short OpenID Connect scopes and what Google grants for them
_GRANTED_AS = {"openid": "openid", "email": f"{SCOPE_PREFIX}userinfo.email",
               "profile": f"{SCOPE_PREFIX}userinfo.profile"}
_PROMPTS = ("none", "consent", "select_account")
AUTH_PATH = "/o/oauth2/v2/auth"
DECISION_PATH = "/o/oauth2/v2/auth/decision"


@dataclass
class _OAuthClient:
    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]


class _PageError(Exception):
    """A problem Google explains on its own error page; the browser is not sent back to the client."""

    def __init__(self, status: int, error: str, message: str, details: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message, self.details = status, error, message, details or {}

    def response(self) -> _Response:
        page = error_page(title="Sign in - Fake Google Accounts", heading=f"Error {self.status}: {self.error}",
                          message=self.message, details=self.details)
        return _Response(self.status, page, html_headers())


class _RedirectError(Exception):
    """An answer sent back to the client's redirect URI as ``error=...`` (and ``state``)."""

    def __init__(self, redirect_uri: str, error: str, state: str | None) -> None:
        super().__init__(error)
        self.redirect_uri, self.error, self.state = redirect_uri, error, state

    def response(self) -> _Response:
        params = [("error", self.error)] + ([("state", self.state)] if self.state is not None else [])
        return _redirect(redirect_url(self.redirect_uri, params))


class _TokenError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status, self.error, self.description = status, error, description

    def response(self) -> _Response:
        return _Response(self.status, {"error": self.error, "error_description": self.description})


def _redirect(location: str) -> _Response:
    return _Response(302, None, {"Location": location, "Cache-Control": "no-store"})


def _subject(email: str) -> str:
    """A stable, Google-looking (21 digits) ``sub`` for an account."""
    digest = hashlib.sha256(b"fake-google-sub:" + email.lower().encode()).digest()
    return "1" + f"{int.from_bytes(digest[:12], 'big') % 10**20:020d}"


class ConsentMixin(OAuthMixin):
    """Web clients, the consent page, the authorization-code grant and ID tokens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code_lifetime = 600.0  # seconds an authorization code can be redeemed
        self.consents: list[ConsentRecord] = []
        self._oauth_clients: dict[str, _OAuthClient] = {}
        self._pending: dict[str, AuthorizationRequest] = {}  # request id (hidden field) -> request
        self._codes: dict[str, IssuedCode] = {}
        self._grants: dict[tuple[str, str], list[str]] = {}  # (email, client) -> scopes granted so far
        self._unverified: set[str] = set()
        self._code_failures: list[tuple[str, str]] = []
        self._signing_key = SigningKey("fake-google-id-token-signer", kid_style="hex")

    # ------------------------------------------------------------------ test hooks
    def add_oauth_client(self, client_id: str, client_secret: str, redirect_uris: tuple[str, ...] | list[str] = ()
                         ) -> None:
        """Register a web application client with its secret and authorized redirect URIs (compared exactly)."""
        with self._lock:
            self._oauth_clients[client_id] = _OAuthClient(client_id, client_secret, tuple(redirect_uris))
        register(client_secret)

    def unverify_email(self, email: str) -> None:
        """ID tokens for ``email`` say ``email_verified: false`` from now on."""
        with self._lock:
            self._unverified.add(email.lower())

    def fail_next_code_exchange(self, n: int = 1, error: str = "invalid_grant", description: str = "Bad Request"
                                ) -> None:
        """The next ``n`` authorization-code exchanges (after client authentication) answer 400 ``error``; the code
        itself stays unredeemed."""
        with self._lock:
            self._code_failures.extend([(error, description)] * n)

    # ------------------------------------------------------------------ routing
    def _browser_endpoint(self, method: str, target: str, body: bytes) -> _Response | None:
        """The authorization endpoint, its decision form, certificates and discovery; None for other paths."""
        parts = urlsplit(target)
        if parts.path == AUTH_PATH and method == "GET":
            return self._authorization(parts.query)
        if parts.path == DECISION_PATH and method == "POST":
            return self._decision(body)
        if parts.path == "/oauth2/v1/certs" and method == "GET":
            key = self._signing_key
            return _Response(200, {key.kid: key.certificate_pem}, {"Cache-Control": "public, max-age=3600"})
        if parts.path == "/oauth2/v3/certs" and method == "GET":
            jwk = {**self._signing_key.public_jwk(), "kid": self._signing_key.kid, "use": "sig", "alg": "RS256"}
            return _Response(200, {"keys": [jwk]}, {"Cache-Control": "public, max-age=3600"})
        if parts.path == "/.well-known/openid-configuration" and method == "GET":
            return _Response(200, self._openid_configuration())
        return None

    def _openid_configuration(self) -> dict[str, Any]:
        return {
            "issuer": GOOGLE_ISSUER,
            "authorization_endpoint": self.auth_uri,
            "token_endpoint": self.token_uri,
            "jwks_uri": f"{self.base_url}/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "name", "sub"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }

    # ------------------------------------------------------------------ authorization endpoint
    def _authorization(self, query: str) -> _Response:
        params, repeated = single_values(query)
        with self._lock:
            try:
                request = self._authorization_request(params, repeated)
            except (_PageError, _RedirectError) as err:
                return err.response()
            request_id = secrets.token_urlsafe(24)
            self._pending[request_id] = request
        return self._consent_page(request_id, request, request.login_hint)

    def _consent_page(self, request_id: str, request: AuthorizationRequest, email: str, problem: str = ""
                      ) -> _Response:
        shown = [s if _GRANTED_AS.get(s, s) == s else f"{s} ({_GRANTED_AS[s]})" for s in request.scopes]
        page = consent_page(title="Sign in - Fake Google Accounts", service="Sign in with Google",
                            client=request.client_id, action=DECISION_PATH, request_id=request_id, email=email,
                            scopes=shown, problem=problem)
        return _Response(200, page, html_headers())

    def _authorization_request(self, params: dict[str, str], repeated: list[str]) -> AuthorizationRequest:
        """The request, once Google would accept it (``_PageError`` or ``_RedirectError`` otherwise)."""
        client_id = params.get("client_id")
        if not client_id:
            raise _PageError(400, "invalid_request", "Missing required parameter: client_id")
        client = self._oauth_clients.get(client_id)
        if client is None:
            raise _PageError(401, "invalid_client", "The OAuth client was not found.", {"client_id": client_id})
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise _PageError(400, "invalid_request", "Missing required parameter: redirect_uri")
        if redirect_uri not in client.redirect_uris:
            raise _PageError(400, "redirect_uri_mismatch", "The redirect URI in the request is not registered for "
                             "this OAuth client.", {"redirect_uri": redirect_uri, "client_id": client_id})
        if repeated:
            raise _PageError(400, "invalid_request", f"Parameter sent more than once: {', '.join(repeated)}")
        self._check_response_type(params.get("response_type"))
        scopes = self._requested_scopes(params.get("scope"))
        extra = self._checked_options(params)
        challenge, method = self._pkce_parameters(params)
        if extra["prompt"] == "none":  # no browser session here: the user would have to sign in
            raise _RedirectError(redirect_uri, "login_required", params.get("state"))
        return AuthorizationRequest(client_id, redirect_uri, scopes, state=params.get("state"),
                                    nonce=params.get("nonce"), code_challenge=challenge, code_challenge_method=method,
                                    login_hint=params.get("login_hint", ""), extra=extra)

    @staticmethod
    def _check_response_type(response_type: str | None) -> None:
        if not response_type:
            raise _PageError(400, "invalid_request", "Required parameter is missing: response_type")
        if response_type != "code":  # implicit and hybrid flows are not modelled
            raise _PageError(400, "unsupported_response_type", f"Unsupported response_type: {response_type}")

    @staticmethod
    def _requested_scopes(raw: str | None) -> tuple[str, ...]:
        scopes = tuple(dict.fromkeys((raw or "").split()))
        if not scopes:
            raise _PageError(400, "invalid_request", "Missing required parameter: scope")
        invalid = [s for s in scopes
                   if s not in _GRANTED_AS and not (s.startswith(SCOPE_PREFIX) and len(s) > len(SCOPE_PREFIX))]
        if invalid:
            valid = [s for s in scopes if s not in invalid]
            raise _PageError(400, "invalid_scope", f"Some requested scopes were invalid. {{valid=[{', '.join(valid)}]"
                                                   f", invalid=[{', '.join(invalid)}]}}")
        return scopes

    @staticmethod
    def _checked_options(params: dict[str, str]) -> dict[str, str]:
        access_type = params.get("access_type", "online")
        if access_type not in ("online", "offline"):
            raise _PageError(400, "invalid_request", f"Invalid access_type: {access_type}")
        prompt = params.get("prompt", "")
        words = prompt.split()
        if any(w not in _PROMPTS for w in words) or ("none" in words and len(words) > 1):
            raise _PageError(400, "invalid_request", f"Invalid prompt: {prompt}")
        include = params.get("include_granted_scopes", "false")
        return {"access_type": access_type, "prompt": " ".join(words), "include_granted_scopes": include}

    @staticmethod
    def _pkce_parameters(params: dict[str, str]) -> tuple[str | None, str]:
        """The code challenge and its method: ``plain`` unless ``S256`` is named (the only two Google supports)."""
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None:
            if method is not None:
                raise _PageError(400, "invalid_request", "code_challenge_method requires a code_challenge")
            return None, "plain"
        if method not in (None, "S256", "plain"):
            raise _PageError(400, "invalid_request", f"Invalid code_challenge_method: {method}")
        if not pkce_value_ok(challenge):
            raise _PageError(400, "invalid_request", "Invalid code_challenge")
        return challenge, method or "plain"

    # ------------------------------------------------------------------ the user's decision
    def _decision(self, body: bytes) -> _Response:
        form, _repeated = single_values(body.decode("utf-8", "replace"))
        with self._lock:
            request_id = form.get("request_id", "")
            request = self._pending.get(request_id)
            if request is None:
                return _PageError(400, "invalid_request", "This sign-in request is unknown or already answered."
                                  ).response()
            decision = form.get("decision")
            if decision == "deny":
                del self._pending[request_id]
                return _RedirectError(request.redirect_uri, "access_denied", request.state).response()
            if decision != "allow":
                return _PageError(400, "invalid_request", "Choose Allow or Deny.").response()
            email = form.get("email", "").strip()
            local, _, domain = email.partition("@")
            if not local or "." not in domain or any(c.isspace() for c in email):
                return self._consent_page(request_id, request, email, "Enter a valid email address.")
            del self._pending[request_id]
            return self._issue_code(request, email)

    def _issue_code(self, request: AuthorizationRequest, email: str) -> _Response:
        granted = [_GRANTED_AS.get(s, s) for s in request.scopes]
        earlier = self._grants.setdefault((email.lower(), request.client_id), [])
        if request.extra.get("include_granted_scopes") == "true":
            granted = earlier + granted
        granted_scopes = tuple(dict.fromkeys(granted))
        earlier[:] = list(dict.fromkeys(earlier + list(granted_scopes)))
        code = "4/0" + secrets.token_urlsafe(54)
        register(code)
        self._codes[code] = IssuedCode(request, email, granted_scopes, time.time())
        self.consents.append(ConsentRecord(email, request.client_id, granted_scopes))
        params = [("state", request.state)] if request.state is not None else []
        params += [("code", code), ("scope", " ".join(granted_scopes)), ("authuser", "0"), ("prompt", "consent")]
        return _redirect(redirect_url(request.redirect_uri, params))

    # ------------------------------------------------------------------ token endpoint: authorization_code
    def _token(self, body: bytes, headers: Any = None) -> _Response:
        form, _repeated = single_values(body.decode("utf-8", "replace"))
        if form.get("grant_type") != "authorization_code":
            return super()._token(body, headers)
        with self._lock:
            self.token_requests.append(form)
            try:
                return _Response(200, self._redeem(form, headers))
            except _TokenError as err:
                return err.response()

    def _redeem(self, form: dict[str, str], headers: Any) -> dict[str, Any]:
        client = self._token_client(form, headers)
        if self._code_failures:
            error, description = self._code_failures.pop(0)
            raise _TokenError(400, error, description)
        issued = self._redeemable(form.get("code"), client.client_id)
        request = issued.request
        if form.get("redirect_uri") is None:
            raise _TokenError(400, "invalid_request", "Missing parameter: redirect_uri")
        if form["redirect_uri"] != request.redirect_uri:
            raise _TokenError(400, "redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier")
        if request.code_challenge is None and verifier:
            raise _TokenError(400, "invalid_grant", "code_verifier or verifier is not needed.")
        if request.code_challenge is not None:
            if not verifier:
                raise _TokenError(400, "invalid_grant", "Missing code verifier.")
            if not pkce_matches(verifier, request.code_challenge, request.code_challenge_method):
                raise _TokenError(400, "invalid_grant", "Invalid code verifier.")
        issued.redeemed = True
        return self._code_tokens(issued)

    def _token_client(self, form: dict[str, str], headers: Any) -> _OAuthClient:
        """The client of a token request, authenticated by HTTP Basic or ``client_id``/``client_secret`` in the body."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        auth = (headers.get("Authorization") if headers is not None else None) or ""
        if auth[:6].lower() == "basic ":
            try:
                basic_id, _, basic_secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except ValueError as exc:
                raise _TokenError(401, "invalid_client", "Unauthorized") from exc
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        if not client_id:
            raise _TokenError(400, "invalid_request", "Could not determine client ID from request.")
        client = self._oauth_clients.get(client_id)
        if client is None:
            raise _TokenError(401, "invalid_client", "The OAuth client was not found.")
        if secret is None:
            raise _TokenError(400, "invalid_request", "client_secret is missing.")
        if not secrets.compare_digest(secret.encode(), client.client_secret.encode()):
            raise _TokenError(401, "invalid_client", "Unauthorized")
        return client

    def _redeemable(self, code: str | None, client_id: str) -> IssuedCode:
        if not code:
            raise _TokenError(400, "invalid_request", "Missing required parameter: code")
        issued = self._codes.get(code)
        if issued is None:
            raise _TokenError(400, "invalid_grant", "Malformed auth code." if not code.startswith("4/")
                              else "Bad Request")
        if issued.request.client_id != client_id:
            raise _TokenError(400, "invalid_grant", "Bad Request")
        if issued.redeemed:  # a replayed code: what it issued is revoked, as RFC 6749 (4.1.2) asks
            for token in issued.access_tokens:
                self._access_tokens.pop(token, None)
            self._revoked_refresh.update(issued.refresh_tokens)
            raise _TokenError(400, "invalid_grant", "Bad Request")
        if time.time() - issued.issued_at > self.code_lifetime:
            raise _TokenError(400, "invalid_grant", "Bad Request")
        return issued

    def _code_tokens(self, issued: IssuedCode) -> dict[str, Any]:
        access = self.issue_access_token(issued.email)
        issued.access_tokens.append(access)
        out: dict[str, Any] = {"access_token": access, "expires_in": self.token_lifetime,
                               "scope": " ".join(issued.granted), "token_type": "Bearer"}
        if issued.request.extra.get("access_type") == "offline":
            refresh = "1//0" + secrets.token_urlsafe(72)
            register(refresh)
            self.add_refresh_token(refresh, issued.email)
            issued.refresh_tokens.append(refresh)
            out["refresh_token"] = refresh
        if "openid" in issued.granted:
            out["id_token"] = self._id_token(issued, access)
        return out

    def _id_token(self, issued: IssuedCode, access_token: str) -> str:
        """An RS256 ID token as Google's: ``iss``, ``azp``/``aud`` (the client), ``sub``, email claims when the
        email scope was granted, ``at_hash``, ``iat``, ``exp`` (one hour) and the request's ``nonce``."""
        request, now = issued.request, int(time.time())
        claims: dict[str, Any] = {"iss": GOOGLE_ISSUER, "azp": request.client_id, "aud": request.client_id,
                                  "sub": _subject(issued.email)}
        if _GRANTED_AS["email"] in issued.granted:
            claims["email"] = issued.email
            claims["email_verified"] = issued.email.lower() not in self._unverified
        claims["at_hash"] = left_half_hash(access_token)
        if _GRANTED_AS["profile"] in issued.granted:
            claims["name"] = issued.email.partition("@")[0].replace(".", " ").title()
        if request.nonce is not None:
            claims["nonce"] = request.nonce
        claims.update(iat=now, exp=now + 3600)
        token = self._signing_key.sign(claims)
        register(token)
        return token
