"""An agent grants syncd access to their Microsoft 365 calendar in the browser: the
authorization-code flow with PKCE, through msal (`initiate_auth_code_flow`,
`acquire_token_by_auth_code_flow`, which also checks the ``state`` and the ID token's nonce).

The account that consented must be the user's own: syncd verifies the ID token's signature
against the keys the authority publishes (PyJWT; msal reads the token without checking it),
then takes its ``preferred_username`` and the mailbox's own addresses from Graph's ``/me``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jwt
import msal
import requests

from connectors.base import AccountSettings, ConsentRequest, Grant
from connectors.consent import code_of, missing_scopes
from connectors.outlook.client import DEFAULT_AUTHORITY, DELEGATED_SCOPES, graph_session, sign_in_app
from connectors.outlook.options import OutlookOptions, outlook_options
from connectors.responses import read_body
from syncd.core.errors import ConfigError, ConsentRefused, TransientError
from syncd.core.text import first_line

__all__ = ["OutlookConsent"]

MICROSOFT = "Microsoft"
GRAPH_PREFIX = "https://graph.microsoft.com/"
CLOCK_SKEW = 60  # seconds of difference with Entra's clock an ID token is allowed
MAX_DOCUMENT = 1 << 20  # a discovery document, a key set, /me


def _options(account: AccountSettings) -> OutlookOptions:
    options = outlook_options(account.name, account.options)
    if options.auth != "delegated":
        raise ConfigError(f"accounts.{account.name}: agents connect their own calendars only with "
                          "auth = \"delegated\"; with app-only sign-in there is nothing for them to grant")
    return options


def _short(scopes: Any) -> list[str]:
    """Graph's scopes without their resource prefix (Entra answers in either form)."""
    listed = scopes.split() if isinstance(scopes, str) else list(scopes or ())
    return [scope.removeprefix(GRAPH_PREFIX) for scope in listed]


class OutlookConsent:
    """The `ConsentFlow` of Microsoft 365 accounts with ``auth = "delegated"``."""

    def check(self, account: AccountSettings) -> None:
        _options(account)

    def begin(self, account: AccountSettings, redirect_uri: str, state: str, login_hint: str) -> ConsentRequest:
        options = _options(account)
        session = graph_session(options)
        try:
            # form_post: the code comes back in a POST body, never in a URL (RFC 9700, 4.3.1).
            flow = sign_in_app(options, session).initiate_auth_code_flow(
                list(DELEGATED_SCOPES), redirect_uri=redirect_uri, state=state, login_hint=login_hint,
                response_mode="form_post")
        finally:
            session.close()
        return ConsentRequest(str(flow["auth_uri"]), {"flow": flow})

    def complete(self, account: AccountSettings, redirect_uri: str, kept: Mapping[str, Any],
                 answer: Mapping[str, str]) -> Grant:
        code_of(answer, MICROSOFT)
        options = _options(account)
        session = graph_session(options)
        try:
            result = self._exchange(sign_in_app(options, session), dict(kept["flow"]), answer)
            missing_scopes(_short(result.get("scope")), tuple(_short(DELEGATED_SCOPES)), MICROSOFT)
            claims = self._verified(options, session, str(result.get("id_token") or ""))
            emails = [str(claims.get("preferred_username") or ""), *self._mailbox(options, session, result)]
        finally:
            session.close()
        if not result.get("refresh_token"):
            raise ConsentRefused("provider", "Microsoft granted access without a refresh token (offline_access), so "
                                             "syncd could not keep it. Open the link again.")
        return Grant(str(result["refresh_token"]), tuple(dict.fromkeys(e for e in emails if "@" in e)))

    def _exchange(self, app: msal.ClientApplication, flow: dict[str, Any], answer: Mapping[str, str]) -> Any:
        try:
            result = app.acquire_token_by_auth_code_flow(flow, dict(answer))
        except ValueError as exc:  # msal: the state or the nonce does not match the flow
            raise ConsentRefused("provider", "The answer from Microsoft does not belong to this sign-in. Open the "
                                             "link again.") from exc
        except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
            raise TransientError(f"outlook: token endpoint unreachable: {first_line(exc)}") from exc
        if "access_token" not in result:
            code_of({"error": str(result.get("error") or "unknown_error"),
                     "error_description": str(result.get("error_description") or "")}, MICROSOFT)
        return result

    def _document(self, session: requests.Session, url: str) -> Any:
        try:
            response = session.get(url, timeout=30, stream=True)
            body = read_body(response, "outlook: sign-in keys", MAX_DOCUMENT)
        except requests.RequestException as exc:
            raise TransientError(f"outlook: cannot read {url}: {first_line(exc)}") from exc
        if response.status_code != 200:
            raise TransientError(f"outlook: {url} answered HTTP {response.status_code}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TransientError(f"outlook: {url} answered with something other than JSON") from exc

    def _verified(self, options: OutlookOptions, session: requests.Session, raw: str) -> dict[str, Any]:
        """The ID token's claims, once its signature, audience, issuer and expiry check out."""
        authority = (options.authority or DEFAULT_AUTHORITY.format(tenant=options.tenant_id)).rstrip("/")
        discovery = self._document(session, f"{authority}/v2.0/.well-known/openid-configuration")
        try:
            header = jwt.get_unverified_header(raw)
            unverified = jwt.decode(raw, options={"verify_signature": False})
            key = jwt.PyJWKSet.from_dict(self._document(session, str(discovery["jwks_uri"])))[str(header["kid"])]
            # Multi-tenant authorities publish the issuer with a {tenantid} placeholder.
            issuer = str(discovery["issuer"]).replace("{tenantid}", str(unverified.get("tid", "")))
            return dict(jwt.decode(raw, key.key, algorithms=["RS256"], audience=options.client_id, issuer=issuer,
                                   leeway=CLOCK_SKEW))
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
            raise ConsentRefused("provider", "Microsoft's answer did not verify, so nothing was stored. Open the "
                                             "link again.") from exc

    def _mailbox(self, options: OutlookOptions, session: requests.Session, result: Mapping[str, Any]) -> list[str]:
        """The signed-in mailbox's addresses, as Graph knows them."""
        try:
            response = session.get(f"{options.graph_url.rstrip('/')}/me", timeout=30, stream=True,
                                   params={"$select": "mail,userPrincipalName"},
                                   headers={"Authorization": f"Bearer {result['access_token']}"})
            body = read_body(response, "outlook: /me", MAX_DOCUMENT)
        except requests.RequestException as exc:
            raise TransientError(f"outlook: cannot reach Microsoft Graph: {first_line(exc)}") from exc
        if response.status_code != 200:
            return []  # the ID token's address stands alone
        try:
            me = json.loads(body)
        except ValueError:
            return []
        return [str(me.get(key) or "") for key in ("mail", "userPrincipalName")] if isinstance(me, dict) else []
