"""The state every Google concern works on: the account's settings, the API client, and what
the connector has learnt about its users and calendars.

Each concern is a mixin over `GoogleBase` in a module of its own (`client`, `listing`,
`writing`, `watch`; `mapping` and `series` hold plain functions); `connector` composes them
into `GoogleConnector`, as Radicale composes its storage from per-concern mixins. A mixin
inherits the mixins whose methods it calls. ``_lock`` guards the list of transports, the
per-user locks and forgetting credentials; a user's credentials are made and refreshed
under that user's lock.
"""

from __future__ import annotations

import threading

import httplib2
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2 import service_account
from googleapiclient.discovery import build

from connectors import ical
from connectors.base import RefreshTokens
from connectors.google.options import GoogleOptions
from connectors.google.transport import Transport
from connectors.peruser import PerUserConnector
from connectors.quota import Quota
from syncd.core.errors import ConfigError

__all__ = ["SCOPES", "GoogleBase"]

SCOPES = ("https://www.googleapis.com/auth/calendar.events",)


class GoogleBase(PerUserConnector):
    """One Google account: its settings, credentials and API client, and the caches its
    concerns share. Thread-safe: the daemon's poll workers share one instance per account."""

    provider = "google"

    def __init__(self, options: GoogleOptions, *, refresh_tokens: RefreshTokens | None = None,
                 quota: Quota | None = None) -> None:
        self.options = options
        self.refresh_tokens = refresh_tokens
        self.quota = quota or Quota(options.project_quota, options.user_quota)
        self.limits = ical.ExpansionLimits(max_occurrences=options.max_occurrences)
        self._local = threading.local()  # a transport per thread
        self._https: list[Transport] = []
        self._lock = threading.Lock()
        self._credentials: dict[str, BaseCredentials] = {}
        self._owner_locks: dict[str, threading.Lock] = {}
        self._zones: dict[str, str] = {}  # address -> the user's zone seen in the last listing
        self._filter_types = True  # False once Google refused eventTypes with a sync token
        self._service_account: service_account.Credentials | None = None
        super().__init__()
        self.workers, self.account = options.workers, options.account
        self._service = build("calendar", "v3", http=httplib2.Http(), static_discovery=True, cache_discovery=False,
                              client_options={"api_endpoint": options.api_endpoint})
        # Made once: each `events()` call builds every method and its docstring again (~4 ms).
        self._events = self._service.events()
        self._channels = self._service.channels()
        if options.service_account_file:
            try:
                self._service_account = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    options.service_account_file, scopes=list(SCOPES))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"accounts.{options.account}: service_account_file: cannot be used "
                                  f"({str(exc).splitlines()[0]}); download the key JSON again") from exc
        elif not (options.client_id and options.client_secret):
            raise ConfigError(f"accounts.{options.account}: set service_account_file (domain-wide delegation) or "
                              "client_id and client_secret (per-user refresh tokens)")

    def _zone(self, address: str, fallback: str = "UTC") -> str:
        return self._zones.get(address, fallback)
