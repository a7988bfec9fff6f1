"""An agent grants syncd access to their Google Calendar in the browser: OAuth 2.0 for web
server applications, with PKCE (S256) and an offline grant, through google-auth-oauthlib.

The account that consented must be the user's own: the ID token Google returns with the code
is verified (signature against ``certs_uri``, audience, issuer, expiry) and its verified
``email`` is what syncd compares with the user's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.oauth2 import id_token
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2 import OAuth2Error
from requests_oauthlib import OAuth2Session

from connectors.base import AccountSettings, ConsentRequest, Grant
from connectors.consent import code_of, missing_scopes
from connectors.google.options import GoogleOptions, google_options
from connectors.responses import EnvironmentProxies, ProxySession
from syncd.core.errors import ConfigError, ConsentRefused, TransientError
from syncd.core.text import first_line

__all__ = ["CALENDAR_SCOPE", "SCOPES", "GoogleConsent"]

CALENDAR_SCOPE = "https://www.googleapis.com/auth/calendar.events"
# "openid email", in the long form Google grants them under (oauthlib compares what was asked
# with what was granted, and Google answers "email" with the userinfo scope).
SCOPES = ("openid", "https://www.googleapis.com/auth/userinfo.email", CALENDAR_SCOPE)
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW = 60  # seconds of difference with Google's clock an ID token is allowed
GOOGLE = "Google"


class _OAuthSession(EnvironmentProxies, OAuth2Session):  # type: ignore[misc]  # untyped library
    """requests-oauthlib's session, taking only proxies from the environment."""


def _options(account: AccountSettings) -> GoogleOptions:
    options = google_options(account.name, account.options)
    if not (options.client_id and options.client_secret):
        raise ConfigError(f"accounts.{account.name}: connecting in the browser needs an OAuth client of type "
                          "\"Web application\": set client_id and client_secret (or credentials_file)")
    return options


def _flow(options: GoogleOptions, redirect_uri: str, code_verifier: str | None) -> Flow:
    config = {"client_id": options.client_id, "client_secret": options.client_secret,
              "auth_uri": options.auth_uri, "token_uri": options.token_uri}
    session = _OAuthSession(options.client_id, scope=list(SCOPES), redirect_uri=redirect_uri)
    return Flow(session, "web", {"web": config}, redirect_uri=redirect_uri, code_verifier=code_verifier,
                autogenerate_code_verifier=code_verifier is None)


class GoogleConsent:
    """The `ConsentFlow` of Google accounts with per-user refresh tokens."""

    def check(self, account: AccountSettings) -> None:
        _options(account)

    def begin(self, account: AccountSettings, redirect_uri: str, state: str, login_hint: str) -> ConsentRequest:
        flow = _flow(_options(account), redirect_uri, None)
        # prompt=consent: Google issues a refresh token only when the person consents anew.
        url, _state = flow.authorization_url(state=state, access_type="offline", prompt="consent",
                                             login_hint=login_hint)
        return ConsentRequest(url, {"code_verifier": flow.code_verifier})

    def complete(self, account: AccountSettings, redirect_uri: str, kept: Mapping[str, Any],
                 answer: Mapping[str, str]) -> Grant:
        code = code_of(answer, GOOGLE)
        options = _options(account)
        token = self._exchange(_flow(options, redirect_uri, str(kept["code_verifier"])), code, options)
        missing_scopes(token.get("scope"), (CALENDAR_SCOPE,), GOOGLE)
        refresh_token = token.get("refresh_token")
        if not refresh_token:
            raise ConsentRefused("provider", "Google granted access without a refresh token, so syncd could not keep "
                                             "it. Open the link again.")
        return Grant(str(refresh_token), (self._email(options, str(token.get("id_token") or "")),))

    def _exchange(self, flow: Flow, code: str, options: GoogleOptions) -> dict[str, Any]:
        try:
            return dict(flow.fetch_token(code=code, verify=options.ca_bundle or True, timeout=options.timeout))
        except Warning as changed:  # oauthlib: the person granted other scopes than asked
            return dict(getattr(changed, "token", None) or {})
        except OAuth2Error as exc:
            raise ConsentRefused("provider", f"Google refused the sign-in ({exc.error}). Open the link again; the "
                                             "code it sent is used once and expires in minutes.") from exc
        except requests.RequestException as exc:
            raise TransientError(f"google: token endpoint unreachable: {first_line(exc)}") from exc

    def _email(self, options: GoogleOptions, raw: str) -> str:
        """The verified address in the ID token, after checking the token is Google's, for us."""
        if not raw:
            raise ConsentRefused("provider", "Google did not say which account signed in. Open the link again.")
        session = ProxySession()
        session.verify = options.ca_bundle or True
        try:
            claims = id_token.verify_token(raw, google.auth.transport.requests.Request(session),
                                           audience=options.client_id, certs_url=options.certs_uri,
                                           clock_skew_in_seconds=CLOCK_SKEW)
        except google.auth.exceptions.TransportError as exc:
            raise TransientError(f"google: cannot fetch the ID token keys: {first_line(exc)}") from exc
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            raise ConsentRefused("provider", "Google's answer did not verify, so nothing was stored. Open the link "
                                             "again.") from exc
        finally:
            session.close()
        if claims.get("iss") not in ISSUERS:
            raise ConsentRefused("provider", "The sign-in did not come from Google, so nothing was stored.")
        if claims.get("email_verified") is not True or not claims.get("email"):
            raise ConsentRefused("wrong_account", "Google has not verified the address of the account you signed in "
                                                  "with, so syncd cannot tell whose calendar it is.")
        return str(claims["email"])
