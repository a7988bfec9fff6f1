"""Talking to the Calendar API: credentials, requests, and their errors.

Calendars
---------
A link's calendar is addressed as ``<user email>/<calendar id>`` (`address`): the email
picks the credentials (the user impersonated by a service account with domain-wide
delegation, or the user whose refresh token is stored), the calendar id is ``primary`` or
any id the user can write to.

This module owns signing in as each user (one credentials object and one lock per user, a
token refreshed when it expires or after a ``401``), running one API call or one batch
request on this thread's `Transport` (a stale kept-alive connection is retried once), the
quota every call takes first (`connectors.quota.Quota`), and the translation of Google's
errors into `syncd.core.errors`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import requests
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2 import credentials as user_credentials
from google_auth_httplib2 import Request as AuthRequest
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from connectors.google.base import SCOPES, GoogleBase
from connectors.google.transport import NETWORK_ERRORS, Transport
from connectors.responses import retry_after, stale_connection
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
from syncd.core.text import first_line

__all__ = ["BatchAnswers", "ClientMixin", "Duplicate", "event_segment", "translate"]

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})

#: The parts of a batch request by request id: each its answer, or the error Google gave it.
BatchAnswers = dict[str, tuple[Any, HttpError | None]]


class Duplicate(ConnectorError):
    """409: the client-supplied id is taken."""


def event_segment(event_id: str) -> str:
    """``event_id``, if it can be one segment of a URL path (the API client percent-encodes it:
    ``/``, ``?``, ``#`` ... stay inside the segment); `ConnectorError` for an empty or dot id,
    which would address another resource (``events/..`` is the calendar itself)."""
    if event_id in ("", ".", ".."):
        raise ConnectorError(f"google: event id {event_id!r} cannot be part of a URL; refused")
    return event_id


def _reason(err: HttpError) -> str:
    try:
        body = json.loads(err.content or b"{}")
        errors = body.get("error", {}).get("errors") or [{}]
        return str(errors[0].get("reason") or body.get("error", {}).get("status") or "")
    except (ValueError, AttributeError):
        return ""


def translate(err: HttpError, what: str) -> SyncdError:
    """A Google API error as one of ours (the message names the call and Google's reason)."""
    status = int(err.resp.status)
    reason = _reason(err)
    text = f"google: {what}: HTTP {status}{f' {reason}' if reason else ''}"
    if status == 429 or (status == 403 and reason in _RATE_REASONS):
        return RateLimited(f"{text} (rate limited)", retry_after=retry_after(err.resp))
    if status == 401:
        return AuthError(f"{text}: credentials rejected; check the service account's delegation or the "
                         "user's refresh token")
    if status == 403:
        return AuthError(f"{text}: access denied; the calendar is not shared with this account or the "
                         "domain-wide delegation lacks the calendar scope")
    if status == 404:
        return NotFound(f"{text}: not found")
    if status == 410 and reason in ("fullSyncRequired", "updatedMinTooLongAgo"):
        return CursorExpired(f"{text}: sync token expired; listing again")
    if status == 410:
        return NotFound(f"{text}: deleted")
    if status == 412:
        return PreconditionFailed(f"{text}: the event changed since it was read")
    if status >= 500 or status == 408:
        return TransientError(f"{text}: Google is having trouble; will retry")
    return ConnectorError(f"{text}: {err.reason or 'request refused'}")


def _auth_failure(exc: google.auth.exceptions.GoogleAuthError, who: str) -> SyncdError:
    text = first_line(exc)
    if isinstance(exc, google.auth.exceptions.TransportError) or getattr(exc, "retryable", False):
        return TransientError(f"google: getting a token for {who} failed: {text}; will retry")
    return AuthError(f"google: {who} cannot sign in ({text}); the user must authorise syncd again "
                     "(or fix the service account's domain-wide delegation)")


class ClientMixin(GoogleBase):
    """Credentials per user, and requests run with quota, token and error translation."""

    # -- addresses -----------------------------------------------------------------------------
    def _split(self, address: str) -> tuple[str, str]:
        """(user email, calendar id) of a link's address; an id stored before `check_calendar`
        existed is refused here if it cannot be one segment of a URL path."""
        owner, calendar_id = super()._split(address)
        if calendar_id in (".", ".."):
            raise ConfigError(f"google calendar {address!r}: {calendar_id!r} is not a calendar id; fix the link")
        return owner, calendar_id

    # -- transport -----------------------------------------------------------------------------
    def _http(self) -> Any:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = Transport(self.options.timeout, self.options.ca_bundle)
            with self._lock:
                self._https.append(http)
        return http

    def _send(self, call: Callable[[], Any]) -> Any:
        """Run ``call``; if a kept-alive connection turns out closed by the server (idle
        timeout), once more on a new connection. Replays are safe: inserts carry
        deterministic ids, updates and deletes an etag, listings change nothing."""
        try:
            return call()
        except requests.ConnectionError as exc:
            if not stale_connection(exc):
                raise
            return call()

    # -- credentials ---------------------------------------------------------------------------
    def _owner_lock(self, owner: str) -> threading.Lock:
        with self._lock:
            lock = self._owner_locks.get(owner)
            if lock is None:
                lock = self._owner_locks[owner] = threading.Lock()
            return lock

    def _credentials_for(self, owner: str) -> BaseCredentials:
        creds = self._credentials.get(owner)
        if creds is not None:
            return creds
        options = self.options
        if self._service_account is not None:
            domain = options.subject_domain
            if domain and not owner.lower().endswith("@" + domain.lower().lstrip("@")):
                raise ConfigError(f"accounts.{options.account}: {owner} is outside subject_domain {domain}; "
                                  "the service account may not act as this user")
            creds = self._service_account.with_subject(owner)  # type: ignore[no-untyped-call]
        else:
            token = self.refresh_tokens.refresh_token(options.account, owner) if self.refresh_tokens else None
            if not token:
                raise AuthError(f"google: no refresh token stored for {owner}; add one with "
                                f"`syncd credentials set {options.account} {owner}`")
            creds = user_credentials.Credentials(None, refresh_token=token, client_id=options.client_id,  # type: ignore[no-untyped-call]
                                                 client_secret=options.client_secret, token_uri=options.token_uri,
                                                 scopes=list(SCOPES))
        self._credentials[owner] = creds
        return creds

    def forget_credentials(self, owner: str) -> None:
        """Drop cached credentials (a new refresh token was stored for the user)."""
        with self._lock:
            self._credentials.pop(owner, None)

    def _signed_in(self, owner: str) -> bool:
        """Whether ``owner`` holds a token that is still valid (read without the user's lock:
        a stale answer only means one more `_token` call, which takes it)."""
        creds = self._credentials.get(owner)
        return creds is not None and bool(creds.valid)

    def _token(self, owner: str, *, renew: bool = False) -> str:
        with self._owner_lock(owner):
            creds = self._credentials_for(owner)
            if renew or not creds.valid:
                try:
                    creds.refresh(AuthRequest(self._http()))  # type: ignore[no-untyped-call]
                except google.auth.exceptions.GoogleAuthError as exc:
                    if not getattr(exc, "retryable", False):
                        self._credentials.pop(owner, None)  # a new refresh token may be stored meanwhile
                    raise _auth_failure(exc, owner) from exc
                except NETWORK_ERRORS as exc:
                    raise TransientError(f"google: token endpoint unreachable for {owner}: {exc}") from exc
            return str(creds.token)

    def _authorised(self, request: HttpRequest, owner: str, *, renew: bool = False) -> HttpRequest:
        # Every request passes here: none goes out with a dot segment in its path (the API client
        # percent-encodes ids into one segment each, but leaves "." and ".." as they are).
        if any(segment in (".", "..") for segment in urlsplit(str(request.uri)).path.split("/")):
            raise ConnectorError(f"google: {request.method} {urlsplit(str(request.uri)).path[:200]!r}: "
                                 "a dot segment in the path; refused")
        request.headers["authorization"] = f"Bearer {self._token(owner, renew=renew)}"
        return request

    # -- requests ------------------------------------------------------------------------------
    def _execute(self, make: Callable[[], HttpRequest], owner: str, what: str, *, etag: str | None = None,
                 conflict_ok: bool = False) -> dict[str, Any]:
        """One API call: quota, token, and a single retry with a fresh token after a 401."""
        for attempt in range(2):
            self.quota.acquire(owner)
            request = self._authorised(make(), owner, renew=attempt > 0)
            if etag:
                request.headers["If-Match"] = etag
            try:
                answer = self._send(lambda r=request: r.execute(http=self._http()))  # type: ignore[misc]
            except HttpError as err:
                status = int(err.resp.status)
                if status == 401 and attempt == 0:
                    continue
                if status == 409 and conflict_ok:
                    raise Duplicate(what) from err
                raise translate(err, what) from err
            except NETWORK_ERRORS as exc:
                raise TransientError(f"google: {what}: {type(exc).__name__}: {exc}; will retry") from exc
            return answer if isinstance(answer, dict) else {}
        raise AssertionError("unreachable")

    def _execute_batch(self, parts: Sequence[tuple[str, HttpRequest]]) -> BatchAnswers | SyncdError:
        """Authorised requests sent as one ``multipart/mixed`` batch request (their quota
        already taken); each part's answer by its request id, or the error that failed the
        whole batch."""
        answers: BatchAnswers = {}

        def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[request_id] = (response, exception)
        batch_request = BatchHttpRequest(callback=collect, batch_uri=self.options.batch_uri)
        for request_id, request in parts:
            batch_request.add(request, request_id=request_id)
        try:
            self._send(lambda: batch_request.execute(http=self._http()))
        except HttpError as err:
            return translate(err, "batch request")
        except NETWORK_ERRORS as exc:
            return TransientError(f"google: batch request failed: {exc}; will retry")
        return answers

    def close(self) -> None:
        self._close_pool()
        with self._lock:
            https, self._https = self._https, []
        for connection in https:
            connection.close()
