"""Which providers there are, and one connector per configured account.

Adding a provider is one folder under ``connectors/`` that declares a `Provider`, and one
line in `PROVIDERS`. Nothing else in syncd names a provider.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connectors import caldav, google, local, memory, outlook
from connectors.base import AccountSettings, CalendarConnector, Provider, RefreshTokens
from syncd.core.errors import ConfigError

__all__ = ["PROVIDERS", "Connectors"]

PROVIDERS: Mapping[str, Provider] = {p.name: p for p in (
    local.PROVIDER, caldav.PROVIDER, google.PROVIDER, outlook.PROVIDER, memory.PROVIDER)}


class Connectors:
    """Builds one connector per account, lazily, and hands out the same one afterwards.

    ``accounts`` maps an account name to its config (anything with ``name``, ``provider``,
    ``options`` and ``ooo_rules``). ``overrides`` lets tests and embedders supply a ready
    connector for an account (e.g. a `MemoryConnector` shared with the test that plays the
    person editing it).
    """

    def __init__(self, accounts: Mapping[str, Any], *, max_occurrences: int = 1000,
                 overrides: dict[str, CalendarConnector] | None = None,
                 refresh_tokens: RefreshTokens | None = None) -> None:
        self._accounts = accounts
        self._max_occurrences = max_occurrences
        self._refresh_tokens = refresh_tokens
        self._lock = threading.Lock()
        self._built: dict[str, CalendarConnector] = dict(overrides or {})

    def for_account(self, name: str) -> CalendarConnector:
        with self._lock:  # poll workers ask at once: build each account's connector once
            if name in self._built:
                return self._built[name]
            account = self._accounts.get(name)
            if account is None:
                raise ConfigError(f"no account {name!r} in the config file (a link refers to it)")
            provider = PROVIDERS.get(account.provider)
            if provider is None:
                raise ConfigError(f"accounts.{name}: provider {account.provider!r} is not available in this "
                                  f"version of syncd (available: {', '.join(sorted(PROVIDERS))})")
            settings = AccountSettings(account.name, account.options, account.ooo_rules, self._max_occurrences,
                                       self._refresh_tokens)
            self._built[name] = connector = provider.build(settings)
            return connector

    def built(self) -> dict[str, CalendarConnector]:
        with self._lock:
            return dict(self._built)

    def supports(self, provider: str) -> bool:
        return provider in PROVIDERS

    def close(self) -> None:
        for connector in self._built.values():
            connector.close()
