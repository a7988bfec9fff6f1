"""The OAuth2 side: the ``/token`` endpoint (JWT-bearer grant for service accounts impersonating ``sub``, and the
``refresh_token`` grant), the access tokens it issues, and their check on every API call."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.google_calendar.base import FakeGoogleBase
from tests.fakes.google_calendar.common import ApiError, _Response, _unb64
from tests.known_secrets import register

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _oauth_error(error: str, description: str) -> _Response:
    return _Response(400, {"error": error, "error_description": description})


class OAuthMixin(FakeGoogleBase):
    """Refresh and access tokens, the test hooks that manage them, and the token endpoint."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._access_tokens: dict[str, str] = {}  # token -> user
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self._revoked_refresh: set[str] = set()
        self._denied_subjects: set[str] = set()

    # ------------------------------------------------------------------ test hooks: auth
    def add_refresh_token(self, refresh_token: str, user: str) -> None:
        """Register a refresh token (as issued by an OAuth consent) for ``user``."""
        with self._lock:
            self._refresh_tokens[refresh_token] = user
            self._revoked_refresh.discard(refresh_token)

    def revoke_refresh_token(self, refresh_token: str) -> None:
        with self._lock:
            self._revoked_refresh.add(refresh_token)
            for token, user in list(self._access_tokens.items()):
                if user == self._refresh_tokens.get(refresh_token):
                    del self._access_tokens[token]

    def revoke_grants(self, user: str) -> int:
        """The user removes the app's access in their Google Account: every refresh token issued
        for them stops working (and their access tokens with it). Returns how many."""
        with self._lock:
            tokens = [token for token, owner in self._refresh_tokens.items() if owner == user]
        for token in tokens:
            self.revoke_refresh_token(token)
        return len(tokens)

    def deny_subject(self, user: str) -> None:
        """Service-account impersonation of ``user`` now fails with ``invalid_grant``."""
        with self._lock:
            self._denied_subjects.add(user)

    def invalidate_access_tokens(self, user: str | None = None) -> None:
        """Forget issued access tokens (all, or a user's): the next API call gets 401."""
        with self._lock:
            for token, owner in list(self._access_tokens.items()):
                if user is None or owner == user:
                    del self._access_tokens[token]

    def issue_access_token(self, user: str) -> str:
        with self._lock:
            token = "ya29.fake-" + secrets.token_urlsafe(16)
            self._access_tokens[token] = user
            register(token)
            return token

    def _authenticate(self, headers: Any) -> str:
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        user = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            raise ApiError(401, "authError", "Invalid Credentials", locationType="header", location="Authorization",
                           headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})
        return user

    # ------------------------------------------------------------------ token endpoint
    def _token(self, body: bytes, headers: Any = None) -> _Response:
        """``POST /token``; ``headers`` matter to grants that authenticate the client (see ``consent``)."""
        form = {k: v[-1] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self._lock:
            self.token_requests.append(form)
            grant = form.get("grant_type")
            if grant == JWT_BEARER:
                try:
                    _header, payload_b64, _sig = form["assertion"].split(".")
                    claims = _unb64(payload_b64)
                except (KeyError, ValueError):
                    return _oauth_error("invalid_grant", "Invalid JWT assertion.")
                user = claims.get("sub") or claims.get("iss")
                if not user or user in self._denied_subjects:
                    return _oauth_error("invalid_grant", "Not a valid email or user ID.")
                # google-auth always signs aud=https://oauth2.googleapis.com/token, whatever token_uri is
                if claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE):
                    return _oauth_error("invalid_grant", "Invalid JWT: audience does not match token endpoint.")
            elif grant == "refresh_token":
                token = form.get("refresh_token", "")
                user = self._refresh_tokens.get(token)
                if user is None or token in self._revoked_refresh:
                    return _oauth_error("invalid_grant", "Token has been expired or revoked.")
            else:
                return _oauth_error("unsupported_grant_type", "Invalid grant_type: " + str(grant))
            access = self.issue_access_token(user)
        body_out = {"access_token": access, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        if grant == "refresh_token" and form.get("scope"):
            body_out["scope"] = form["scope"]
        return _Response(200, body_out)
