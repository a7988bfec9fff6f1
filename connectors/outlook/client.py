"""Talking to Microsoft Graph: sign-in with msal, the HTTP sessions, one request and its errors.

`GraphClient` is the base the connector's parts (`listing`, `writing`, `watch`, `replies`)
are built on. It owns:

- sign-in. App-only sign-in (client credentials: a secret or a certificate) reaches every
  mailbox of the tenant; ``auth = "delegated"`` uses each user's own refresh token instead
  (kept encrypted by syncd; Entra ID rotates it on every use, and the new one is stored at
  once). A 401 gets one fresh token before it counts as an auth error.
- the HTTP sessions: one per thread, with proxies from the environment (``HTTP(S)_PROXY``,
  ``NO_PROXY`` honoured, `ProxySession`) but never its CA bundle; a kept-alive connection the
  server closed meanwhile is replaced once. Links Graph hands back (next and delta links) are
  followed on Graph's own origin only: the token never goes anywhere else.
- `GraphClient._call`, one Graph request: at most 4 requests run against one mailbox at once,
  as Exchange Online allows; the answer is read and its errors are translated (`translate`)
  into `syncd.core.errors`: throttling (``429``, ``503``) is `RateLimited` with the
  ``Retry-After``, an expired delta link is `CursorExpired`, and so on.
- addresses: the events of a mailbox's calendar, and the ``Prefer`` header. Every id in a URL
  path (mailbox, calendar, event, subscription) is percent-encoded as exactly one segment
  (`segment`); an id no encoding makes one segment (empty, ``.``, ``..``) is refused.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import msal
import requests
import requests.utils

from connectors.base import RefreshTokens
from connectors.outlook.options import OutlookOptions
from connectors.peruser import PerUserConnector
from connectors.responses import ProxySession, read_body, retry_after, stale_connection
from syncd.core.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RateLimited,
    SyncdError,
    TransientError,
)

__all__ = ["DEFAULT_AUTHORITY", "DELEGATED_SCOPES", "MAILBOX_CONCURRENCY", "PAGE_SIZE", "GraphClient", "graph_session",
           "segment", "sign_in_app", "translate"]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/{tenant}"
DELEGATED_SCOPES = ("https://graph.microsoft.com/Calendars.ReadWrite", "https://graph.microsoft.com/MailboxSettings.Read")
MAILBOX_CONCURRENCY = 4  # Exchange Online: at most 4 concurrent requests per mailbox
PAGE_SIZE = 100
_EXPIRED_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, OSError)


# -- addresses and sessions ----------------------------------------------------------------------


def segment(value: str, what: str) -> str:
    """``value`` percent-encoded as exactly one segment of a URL path (``/``, ``?``, ``#``, ``%``
    ... encoded too); `ConnectorError` for an empty or dot id, which no encoding makes one
    segment (``events/..`` is the mailbox)."""
    if value in ("", ".", ".."):
        raise ConnectorError(f"outlook: {what} {value!r} cannot be part of a URL; refused")
    return quote(value, safe="")


def _origin(url: str, *, credentials_ok: bool = False) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL; None for anything else (and for one with
    credentials in it, unless ``credentials_ok``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or ("@" in parts.netloc and not credentials_ok):
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)



# -- errors ------------------------------------------------------------------------------------


def _error_code(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return str(error.get("code") or "")
        if isinstance(error, str):
            return error
    return ""


def translate(status: int, body: Any, headers: Mapping[str, Any], what: str) -> SyncdError:
    """A Graph error answer (``status``, its JSON ``body``) as the error syncd acts on."""
    code = _error_code(body)
    text = f"outlook: {what}: HTTP {status}{f' {code}' if code else ''}"
    if status in (429, 503) or code in ("TooManyRequests", "ApplicationThrottled", "MailboxConcurrency"):
        return RateLimited(f"{text} (throttled)", retry_after=retry_after(headers))
    if status == 410 or code in _EXPIRED_CODES:
        return CursorExpired(f"{text}: delta link expired; listing again")
    if status == 401:
        return AuthError(f"{text}: the token was refused; check the app registration's permissions")
    if status == 403:
        return AuthError(f"{text}: access denied; grant the app Calendars.ReadWrite (application) or check the "
                         "mailbox's access policy")
    if status == 404:
        return NotFound(f"{text}: not found")
    if status == 412:
        return PreconditionFailed(f"{text}: the event changed since it was read")
    if status >= 500 or status == 408:
        return TransientError(f"{text}: Microsoft Graph is having trouble; will retry")
    message = body.get("error", {}).get("message") if isinstance(body, Mapping) and isinstance(
        body.get("error"), Mapping) else None
    return ConnectorError(f"{text}: {message or 'request refused'}")


def _token_failure(result: Mapping[str, Any], who: str) -> SyncdError:
    error = str(result.get("error") or "unknown_error")
    description = str(result.get("error_description") or "").splitlines()[0][:200]
    if error in ("temporarily_unavailable", "server_error") or error.startswith("http_"):
        return TransientError(f"outlook: token for {who}: {error}; will retry")
    return AuthError(f"outlook: {who} cannot sign in ({error}: {description}); "
                     + ("store a new refresh token with `syncd credentials set`" if who != "the app" else
                        "check tenant_id, client_id and the client secret or certificate"))


def graph_session(options: OutlookOptions) -> requests.Session:
    """A session for the identity platform and Graph, verifying with the account's CA bundle."""
    # REQUESTS_CA_BUNDLE and friends would silently replace our CA bundle: take only proxies.
    session = ProxySession()
    session.verify = options.ca_bundle or True
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=MAILBOX_CONCURRENCY * 4)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _credential(options: OutlookOptions) -> Any:
    if options.auth == "app" and options.certificate_file:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        try:
            with open(options.certificate_file, "rb") as fh:
                pem = fh.read()
            cert = x509.load_pem_x509_certificate(pem)
            serialization.load_pem_private_key(pem, password=None)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"accounts.{options.account}: certificate_file must hold the PEM "
                              f"certificate and its unencrypted private key ({exc})") from exc
        return {"private_key": pem.decode(), "thumbprint": cert.fingerprint(hashes.SHA1()).hex()}  # noqa: S303
    return options.client_secret


def sign_in_app(options: OutlookOptions, session: requests.Session) -> msal.ConfidentialClientApplication:
    """The app registration as msal signs in with it (its authority's discovery fetched now)."""
    authority = options.authority or DEFAULT_AUTHORITY.format(tenant=options.tenant_id)
    try:
        return msal.ConfidentialClientApplication(
            options.client_id, client_credential=_credential(options), authority=authority,
            http_client=session, instance_discovery=False)
    except ValueError as exc:
        raise ConfigError(f"accounts.{options.account}: the authority {authority} refused the tenant "
                          f"({str(exc).splitlines()[0]})") from exc
    except requests.RequestException as exc:
        raise TransientError(f"outlook: cannot reach {authority}: {exc}") from exc


@dataclass
class _Answer:
    status: int
    body: Any
    headers: Mapping[str, Any]


class GraphClient(PerUserConnector):
    """Sign-in, sessions and requests, shared by the connector's parts; thread-safe."""

    def __init__(self, options: OutlookOptions, *, refresh_tokens: RefreshTokens | None = None,
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        if not options.tenant_id and not options.authority:
            raise ConfigError(f"accounts.{options.account}: tenant_id is missing")
        if not options.client_id:
            raise ConfigError(f"accounts.{options.account}: client_id is missing")
        if options.auth == "app" and not (options.client_secret or options.certificate_file):
            raise ConfigError(f"accounts.{options.account}: give client_secret (or client_secret_env) or "
                              "certificate_file for app-only sign-in")
        self.options = options
        self.refresh_tokens = refresh_tokens
        self.graph = options.graph_url.rstrip("/")
        self._session_factory = session_factory or self._new_session
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._mailboxes: dict[str, threading.BoundedSemaphore] = {}
        self._zones: dict[str, str] = {}
        self._user_tokens: dict[str, tuple[str, float]] = {}  # delegated: email -> (token, expires)
        self._user_locks: dict[str, threading.Lock] = {}
        super().__init__()
        self.workers, self.account = options.workers, options.account
        self._app_session = self._session_factory()
        self._sessions.append(self._app_session)
        self._app = sign_in_app(options, self._app_session)

    def _new_session(self) -> requests.Session:
        return graph_session(self.options)

    # -- addresses -----------------------------------------------------------------------------
    def _calendar_path(self, owner: str, calendar_id: str) -> str:
        """The mailbox (for ``primary``) or the calendar, each id one segment of the path."""
        user = f"/users/{segment(owner, 'user')}"
        if calendar_id == "primary":
            return user
        if calendar_id in ("", ".", ".."):  # a link stored before `check_calendar` refused it
            raise ConfigError(f"outlook calendar {owner}/{calendar_id}: {calendar_id!r} is not a calendar id; "
                              "fix the link")
        return f"{user}/calendars/{segment(calendar_id, 'calendar id')}"

    def _events_path(self, owner: str, calendar_id: str) -> str:
        return f"{self._calendar_path(owner, calendar_id)}/events"

    def _event_path(self, owner: str, calendar_id: str, event_id: str) -> str:
        return f"{self._events_path(owner, calendar_id)}/{segment(event_id, 'event id')}"

    def _prefer(self, tz_name: str, *, page: bool = False) -> str:
        parts = [f'outlook.timezone="{tz_name}"']
        if page:
            parts.append(f"odata.maxpagesize={PAGE_SIZE}")
        return ", ".join(parts)

    # -- sign-in -------------------------------------------------------------------------------
    def _token(self, owner: str | None, *, renew: bool = False) -> str:
        if self.options.auth == "app" or owner is None:
            if renew:
                self._app.remove_tokens_for_client()
            try:
                result = self._app.acquire_token_for_client([self.options.scope])
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise TransientError(f"outlook: token endpoint unreachable: {str(exc).splitlines()[0]}") from exc
            if "access_token" not in result:
                raise _token_failure(result, "the app")
            return str(result["access_token"])
        return self._user_token(owner, renew=renew)

    def _user_token(self, owner: str, *, renew: bool) -> str:
        with self._lock:
            lock = self._user_locks.setdefault(owner, threading.Lock())
        with lock:
            cached = self._user_tokens.get(owner)
            if cached is not None and not renew and cached[1] > time.monotonic() + 60:
                return cached[0]
            stored = self.refresh_tokens.refresh_token(self.options.account, owner) if self.refresh_tokens else None
            if not stored:
                raise AuthError(f"outlook: no refresh token stored for {owner}; add one with "
                                f"`syncd credentials set {self.options.account} {owner}`")
            try:
                result = self._app.acquire_token_by_refresh_token(stored, list(DELEGATED_SCOPES))
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise TransientError(f"outlook: token endpoint unreachable: {str(exc).splitlines()[0]}") from exc
            if "access_token" not in result:
                self._user_tokens.pop(owner, None)
                raise _token_failure(result, owner)
            if result.get("refresh_token") and result["refresh_token"] != stored and self.refresh_tokens:
                # Entra ID rotates refresh tokens: keep the new one, or the next sign-in fails.
                self.refresh_tokens.replace_refresh_token(self.options.account, owner, str(result["refresh_token"]))
            token = str(result["access_token"])
            self._user_tokens[owner] = (token, time.monotonic() + float(result.get("expires_in") or 3600))
            return token

    # -- requests ------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
            with self._lock:
                self._sessions.append(session)
        return session

    def _mailbox(self, owner: str) -> threading.BoundedSemaphore:
        with self._lock:
            gate = self._mailboxes.get(owner)
            if gate is None:
                gate = self._mailboxes[owner] = threading.BoundedSemaphore(MAILBOX_CONCURRENCY)
            return gate

    def _call(self, method: str, url: str, *, owner: str | None = None, params: Mapping[str, str] | None = None,
              json_body: Any = None, headers: Mapping[str, str] | None = None, what: str) -> _Answer:
        """One Graph request: the mailbox's concurrency gate, a token, one retry with a fresh
        token after a 401, and errors translated."""
        absolute = url.startswith(("https://", "http://"))
        target = url if absolute else f"{self.graph}{url}"
        if absolute and (_origin(url) is None or _origin(url) != _origin(self.graph, credentials_ok=True)):
            # A next or delta link elsewhere: it does not get the token.
            raise ConnectorError(f"outlook: {what}: Graph sent a link to another origin than graph_url's; refused")
        gate = self._mailbox(owner) if owner else None
        for attempt in range(2):
            token = self._token(owner, renew=attempt > 0)
            sent = {"Authorization": f"Bearer {token}", **(headers or {})}
            if gate is not None:
                gate.acquire()
            try:
                response = self._send(method, target, params, json_body, sent)
            except _NETWORK_ERRORS as exc:
                raise TransientError(f"outlook: {what}: {type(exc).__name__}; will retry") from exc
            finally:
                if gate is not None:
                    gate.release()
            body: Any = None
            try:
                raw = read_body(response, f"outlook: {what}")
            except (*_NETWORK_ERRORS, requests.exceptions.ChunkedEncodingError) as exc:
                raise TransientError(f"outlook: {what}: the answer was cut off; will retry") from exc
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                    if response.ok:
                        raise TransientError(f"outlook: {what}: the answer is not JSON; will retry") from None
            if response.status_code == 401 and attempt == 0:
                continue
            if response.ok:
                return _Answer(response.status_code, body if body is not None else {}, response.headers)
            raise translate(response.status_code, body, response.headers, what)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, params: Mapping[str, str] | None, json_body: Any,
              headers: Mapping[str, str]) -> requests.Response:
        """One HTTP request; once more on a new connection if a kept-alive one was closed by the
        server meanwhile. Replays are safe: a POST carries its transactionId, PATCH and DELETE
        an etag, and the rest only read."""
        for attempt in range(2):
            try:
                return self._session().request(method, url, params=params, json=json_body, headers=headers, stream=True,
                                               timeout=self.options.timeout)
            except requests.ConnectionError as exc:
                if attempt or isinstance(exc, requests.ConnectTimeout) or not stale_connection(exc):
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._close_pool()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
