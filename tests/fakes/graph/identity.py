"""The fake Microsoft identity platform (Entra ID v2 endpoints) that ``msal`` talks to: OIDC discovery, instance
discovery, the JWKS with the key that signs ID tokens, and the token endpoint with the client-credentials and
refresh-token grants (client secret or certificate assertion); also the access tokens it issues and their check on
every Graph call.  The authorization endpoint and the authorization-code grant live in ``consent``."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.consent_page import SigningKey
from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.graph.common import GraphError, _b64url, _header, _Response
from tests.fakes.graph.state import _Mailbox
from tests.known_secrets import register

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"
CLIENT_ASSERTION_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, aadsts: int, description: str, suberror: str | None = None) -> None:
        super().__init__(f"{error}: AADSTS{aadsts}: {description}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description
        self.suberror = suberror

    def body(self) -> dict[str, Any]:
        """Entra's JSON error: ``error``, ``error_description`` (AADSTS code, trace and correlation ids, time),
        ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``, ``error_uri`` (and ``suberror``)."""
        now = datetime.now(UTC)
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace} Correlation ID: {correlation} "
                f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}"
            ),
            "error_codes": [self.aadsts],
            "timestamp": now.strftime("%Y-%m-%d %H:%M:%SZ"),
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.aadsts}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return body

    def response(self) -> _Response:
        return _Response(self.status, self.body())


@dataclass
class _App:
    client_id: str
    secret: str | None = None
    certificate_pem: bytes | None = None
    redirect_uris: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        """A public client (no secret, no certificate): it redeems codes and refresh tokens without credentials."""
        return self.secret is None and self.certificate_pem is None


@dataclass
class _Grant:
    kind: str  # "app" or "user"
    client_id: str
    user: str | None
    expires_at: float


@dataclass
class _RefreshToken:
    user: str
    client_id: str | None
    family: str
    revoked: int | None = None  # AADSTS code when revoked


class IdentityMixin(FakeGraphBase):
    """Registered apps, refresh and access tokens, and the identity endpoints."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._apps: dict[str, _App] = {self.client_id: _App(self.client_id, secret=self.client_secret)}
        self._access_tokens: dict[str, _Grant] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._signing_key = SigningKey("fake-entra-id-token-signer", kid_style="b64url")

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def issuer(self) -> str:
        """The ``iss`` of ID tokens, as the tenant's discovery document names it."""
        return f"{self.base_url}/{self.tenant_id}/v2.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    # ------------------------------------------------------------------------------------ hooks: identity
    def add_app(self, client_id: str, *, secret: str | None = None, certificate_pem: bytes | str | None = None,
                redirect_uris: tuple[str, ...] | list[str] = ()) -> None:
        """Register (or replace) an application: a secret and/or a certificate for client assertions (neither: a
        public client), and the redirect URIs the authorization endpoint accepts (compared exactly)."""
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        with self._lock:
            self._apps[client_id] = _App(client_id, secret=secret, certificate_pem=pem,
                                         redirect_uris=tuple(redirect_uris))
        if secret:
            register(secret)

    def add_refresh_token(self, refresh_token: str, user: str, *, client_id: str | None = None) -> None:
        """Register a refresh token (as a user's consent would have issued it) for ``user``."""
        with self._lock:
            self._mailbox(user, create=True)
            self._refresh_tokens[refresh_token] = _RefreshToken(user.lower(), client_id, family=refresh_token)

    def revoke_refresh_token(self, refresh_token: str, *, aadsts: int = 50173) -> None:
        """Revoke a refresh token and every token rotated from it; the grant answers ``invalid_grant``
        with this AADSTS code (50173 revoked, 700082 expired by inactivity, 70008 expired)."""
        with self._lock:
            family = self._refresh_tokens[refresh_token].family
            for record in self._refresh_tokens.values():
                if record.family == family:
                    record.revoked = aadsts

    def revoke_user_sessions(self, user: str, *, aadsts: int = 50173) -> None:
        """Revoke all refresh tokens of a user (like revokeSignInSessions) and its delegated access tokens."""
        with self._lock:
            for record in self._refresh_tokens.values():
                if record.user == user.lower():
                    record.revoked = aadsts
        self.invalidate_access_tokens(user)

    def invalidate_access_tokens(self, user: str | None = None) -> None:
        """Forget issued access tokens (all, or a user's delegated ones): the next call gets 401."""
        with self._lock:
            for token, grant in list(self._access_tokens.items()):
                if user is None or grant.user == user.lower():
                    del self._access_tokens[token]

    def issue_access_token(self, user: str | None = None, *, client_id: str | None = None) -> str:
        """An access token without going through the token endpoint (app-only when ``user`` is None)."""
        with self._lock:
            return self._issue(user.lower() if user else None, client_id or self.client_id)

    def _issue(self, user: str | None, client_id: str) -> str:
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0." + _b64url(secrets.token_bytes(24)) + ".fake"
        self._access_tokens[token] = _Grant("user" if user else "app", client_id, user,
                                            time.time() + self.token_lifetime)
        register(token)
        return token

    def _authenticate(self, headers: Any) -> _Grant:
        auth = _header(headers, "Authorization") or ""
        scheme, _, token = auth.partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                                         'common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'}
        if not token or scheme.lower() != "bearer":
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.", headers=challenge)
        grant = self._access_tokens.get(token.strip())
        if grant is None:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.",
                             headers=challenge)
        if grant.expires_at <= time.time():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.",
                             headers=challenge)
        return grant

    # ------------------------------------------------------------------------------------ identity endpoints
    def _tenant_ok(self, tenant: str) -> bool:
        return tenant.lower() in (self.tenant_id.lower(), self.tenant_domain.lower(), "organizations", "common")

    def _openid_configuration(self, tenant: str) -> _Response:
        if not self._tenant_ok(tenant):
            return _OAuthError(400, "invalid_tenant", 90002,
                               f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and "
                               f"are signing into the correct cloud.").response()
        root = f"{self.base_url}/{self.tenant_id}"
        # a tenant-independent authority names no tenant in its issuer, as Entra's does
        tenant_part = "{tenantid}" if tenant.lower() in ("common", "organizations") else self.tenant_id
        return _Response(200, {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{tenant_part}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.graph_url}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "name", "tid", "oid",
                                 "preferred_username"],
            "kerberos_endpoint": f"{root}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "127.0.0.1",
            "cloud_graph_host_name": "127.0.0.1",
            "msgraph_host": urlsplit(self.base_url).netloc,
            "rbac_url": self.base_url,
        })

    def _instance_discovery(self) -> _Response:
        host = urlsplit(self.base_url).netloc
        return _Response(200, {
            "tenant_discovery_endpoint": f"{self.base_url}/{self.tenant_id}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })

    def _token(self, tenant: str, headers: Any, body: bytes) -> _Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.token_requests.append(dict(form))
            try:
                return self._token_grant(tenant, headers, form)
            except _OAuthError as err:
                return err.response()

    def _jwks(self, tenant: str) -> _Response:
        """``/{tenant}/discovery/v2.0/keys``: the public key that signs ID tokens (``kid`` = ``x5t``)."""
        if not self._tenant_ok(tenant):
            return _OAuthError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.").response()
        key = self._signing_key
        jwk = {**key.public_jwk(), "use": "sig", "kid": key.kid, "x5t": key.kid,
               "x5c": [base64.b64encode(key.certificate_der).decode()], "issuer": self.issuer}
        return _Response(200, {"keys": [jwk]})

    def _check_token_tenant(self, tenant: str) -> None:
        if not self._tenant_ok(tenant) or tenant.lower() in ("common", "organizations"):
            raise _OAuthError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")

    def _token_grant(self, tenant: str, headers: Any, form: dict[str, str]) -> _Response:
        self._check_token_tenant(tenant)
        grant_type = form.get("grant_type")
        client_id = self._authenticate_client(headers, form, public_ok=grant_type == "refresh_token")
        scopes = form.get("scope", "").split()
        if grant_type == "client_credentials":
            return self._client_credentials_grant(client_id, scopes)
        if grant_type == "refresh_token":
            return self._refresh_token_grant(client_id, form, scopes)
        raise _OAuthError(400, "unsupported_grant_type", 70003,
                          f"The app requested an unsupported grant type '{grant_type}'.")

    def _authenticate_client(self, headers: Any, form: dict[str, str], *, public_ok: bool = False) -> str:
        """The client id of a token request, once its secret (in the body or HTTP Basic) or assertion checks out.

        With ``public_ok`` (user grants), a public client authenticates with nothing at all, and must not try.
        """
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = _header(headers, "Authorization") or ""
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode()
            except ValueError as exc:
                raise _OAuthError(401, "invalid_client", 7000215, "Invalid client secret provided.") from exc
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        if not client_id:
            raise _OAuthError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'client_id'.")
        app = self._apps.get(client_id)
        if app is None:
            raise _OAuthError(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory "
                              f"'{self.tenant_domain}'.")
        assertion = form.get("client_assertion")
        if public_ok and app.public:
            if assertion or secret is not None:
                raise _OAuthError(401, "invalid_client", 700025, "Client is public so neither 'client_assertion' "
                                                                 "nor 'client_secret' should be presented.")
            return client_id
        if assertion:
            self._check_assertion(app, form.get("client_assertion_type", ""), assertion)
        elif secret is not None:
            if app.secret is None or not secrets.compare_digest(secret, app.secret):
                raise _OAuthError(401, "invalid_client", 7000215,
                                  "Invalid client secret provided. Ensure the secret being sent in the request is "
                                  "the client secret value, not the client secret ID.")
        else:
            raise _OAuthError(401, "invalid_client", 7000218,
                              "The request body must contain the following parameter: 'client_assertion' or "
                              "'client_secret'.")
        return client_id

    def _client_credentials_grant(self, client_id: str, scopes: list[str]) -> _Response:
        if not scopes:
            raise _OAuthError(400, "invalid_request", 900144,
                              "The request body must contain the following parameter: 'scope'.")
        if any(not s.endswith("/.default") for s in scopes):
            raise _OAuthError(400, "invalid_scope", 1002012,
                              f"The provided value for scope {' '.join(scopes)} is not valid. Client credential "
                              f"flows must have a scope value with /.default suffixed to the resource identifier "
                              f"(application ID URI).")
        if any(s.rstrip("/").removesuffix("/.default").rstrip("/") != GRAPH_RESOURCE for s in scopes):
            raise _OAuthError(400, "invalid_resource", 500011,
                              f"The resource principal named {scopes[0].removesuffix('/.default')} was not found "
                              f"in the tenant named {self.tenant_domain}.")
        token = self._issue(None, client_id)
        return _Response(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                               "ext_expires_in": self.token_lifetime, "access_token": token})

    def _refresh_token_grant(self, client_id: str, form: dict[str, str], scopes: list[str]) -> _Response:
        """Redeem a registered refresh token; it rotates like Entra ID's (the new one joins the same family)."""
        presented = form.get("refresh_token", "")
        record = self._refresh_tokens.get(presented)
        if record is None or (record.client_id is not None and record.client_id != client_id):
            raise _OAuthError(400, "invalid_grant", 9002313,
                              "Invalid request. Request is malformed or invalid.")
        if record.revoked is not None:
            description = {
                50173: "The provided grant has expired due to it being revoked, a fresh auth token is needed. "
                       "The user might have changed or reset their password.",
                700082: "The refresh token has expired due to inactivity.",
                70008: "The provided authorization code or refresh token has expired due to inactivity.",
            }.get(record.revoked, "The refresh token is no longer valid.")
            raise _OAuthError(400, "invalid_grant", record.revoked, description, suberror="bad_token")
        resource_scopes = [s for s in scopes if s not in ("openid", "profile", "email", "offline_access")]
        # a scope without a resource (``Calendars.Read``) is Graph's, as Entra reads it
        if resource_scopes and any("://" in s and not s.startswith(GRAPH_RESOURCE) for s in resource_scopes):
            raise _OAuthError(400, "invalid_scope", 70011, f"The provided value for the input parameter 'scope' "
                                                           f"is not valid: {' '.join(resource_scopes)}.")
        box = self._mailbox(record.user, create=True)
        new_refresh = "0.AAAA" + _b64url(secrets.token_bytes(48))
        self._refresh_tokens[new_refresh] = _RefreshToken(record.user, client_id, record.family)
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(resource_scopes or [GRAPH_DEFAULT_SCOPE]),
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self._issue(record.user, client_id),
            "refresh_token": new_refresh,
            "client_info": self._client_info(box),
        }
        if "openid" in scopes:
            out["id_token"] = self._id_token(client_id, box)
        return _Response(200, out)

    def _client_info(self, box: _Mailbox) -> str:
        """What msal reads as ``client_info``: base64url JSON of the user's object id and tenant id."""
        return _b64url(json.dumps({"uid": box.object_id, "utid": self.tenant_id}).encode())

    def _id_token(self, client_id: str, box: _Mailbox, *, nonce: str | None = None, email: bool = False) -> str:
        """A v2.0 ID token signed (RS256) with the key the JWKS publishes: ``aud`` the client, ``iss`` the tenant's
        issuer, ``sub`` pairwise (per user and app), ``oid``, ``tid``, ``preferred_username``, ``name``, the
        request's ``nonce``, ``email`` if that scope was granted, ``iat``/``nbf``/``exp`` (one hour)."""
        now = int(time.time())
        pairwise = hashlib.sha256(f"{box.object_id}:{client_id}".encode()).digest()
        claims: dict[str, Any] = {"aud": client_id, "iss": self.issuer, "iat": now, "nbf": now, "exp": now + 3600,
                                  "name": box.display_name, "oid": box.object_id, "preferred_username": box.upn,
                                  "sub": _b64url(pairwise), "tid": self.tenant_id,
                                  "uti": _b64url(secrets.token_bytes(16)), "ver": "2.0"}
        if nonce is not None:
            claims["nonce"] = nonce
        if email:
            claims["email"] = box.upn
        token = self._signing_key.sign(claims)
        register(token)
        return token

    def _check_assertion(self, app: _App, assertion_type: str, assertion: str) -> None:
        if assertion_type != CLIENT_ASSERTION_JWT:
            raise _OAuthError(400, "invalid_request", 90024, "The client_assertion_type is not supported.")
        if app.certificate_pem is None:
            raise _OAuthError(401, "invalid_client", 700027, "The certificate with identifier used to sign the client "
                                                             "assertion is not registered on application.")
        import jwt  # PyJWT, installed with msal
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        certificate = x509.load_pem_x509_certificate(app.certificate_pem)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise _OAuthError(401, "invalid_client", 700027, "Client assertion contains an invalid header.") from exc
        thumbs = {_b64url(certificate.fingerprint(hashes.SHA256())), _b64url(certificate.fingerprint(hashes.SHA1()))}
        presented = {str(header.get(name) or "").rstrip("=") for name in ("x5t#S256", "x5t")}  # msal pads them
        if not presented & thumbs:
            raise _OAuthError(401, "invalid_client", 700027, "The certificate with identifier used to sign the client "
                                                             "assertion is not registered on application.")
        try:
            claims = jwt.decode(assertion, certificate.public_key(), algorithms=["PS256", "RS256"],  # type: ignore[arg-type]
                                audience=self.token_endpoint, options={"require": ["exp", "aud", "iss", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise _OAuthError(401, "invalid_client", 700024, "Client assertion is not within its valid time "
                                                             "range.") from exc
        except jwt.PyJWTError as exc:
            raise _OAuthError(401, "invalid_client", 700027, f"Client assertion failed signature validation: "
                                                             f"{exc}.") from exc
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise _OAuthError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match "
                                                             "'client_id' parameter.")
