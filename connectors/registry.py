"""Which connector serves which provider; the one place the core names providers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.base import CalendarConnector
from syncd.core.errors import ConfigError

__all__ = ["Connectors"]


class Connectors:
    """Builds one connector per account, lazily, and hands out the same one afterwards.

    ``overrides`` lets tests and embedders supply a ready connector for an account name
    (e.g. a `MemoryConnector` shared with the test that plays the person editing it).
    """

    def __init__(self, accounts: Any, *, max_occurrences: int = 1000,
                 overrides: dict[str, CalendarConnector] | None = None, refresh_tokens: Any = None) -> None:
        self._accounts = accounts
        self._max_occurrences = max_occurrences
        self._refresh_tokens = refresh_tokens  # connectors.google.RefreshTokens: per-user OAuth tokens
        self._lock = threading.Lock()
        self._built: dict[str, CalendarConnector] = dict(overrides or {})
        self._factories: dict[str, Callable[[Any], CalendarConnector]] = {
            "caldav": self._caldav,
            "google": self._google,
            "local": self._local,
            "memory": self._memory,
            "outlook": self._outlook,
        }

    def for_account(self, name: str) -> CalendarConnector:
        with self._lock:  # poll workers ask at once: build each account's connector once
            if name in self._built:
                return self._built[name]
            account = self._accounts.get(name)
            if account is None:
                raise ConfigError(f"no account {name!r} in the config file (a link refers to it)")
            factory = self._factories.get(account.provider)
            if factory is None:
                raise ConfigError(f"accounts.{name}: provider {account.provider!r} is not available in this "
                                  f"version of syncd (available: {', '.join(sorted(self._factories))})")
            self._built[name] = connector = factory(account)
            return connector

    def built(self) -> dict[str, CalendarConnector]:
        with self._lock:
            return dict(self._built)

    def supports(self, provider: str) -> bool:
        return provider in self._factories

    def close(self) -> None:
        for connector in self._built.values():
            connector.close()

    def _local(self, account: Any) -> CalendarConnector:
        from connectors.local import LocalConnector
        return LocalConnector(Path(account.options["root"]), account.ooo_rules,
                              max_occurrences=self._max_occurrences)

    def _caldav(self, account: Any) -> CalendarConnector:
        from connectors.caldav import CalDAVConnector
        options = account.options
        return CalDAVConnector(options["url"], options.get("username") or None, options.get("password") or None,
                               ca_bundle=options.get("ca_bundle") or None, rules=account.ooo_rules,
                               max_occurrences=self._max_occurrences, account=account.name,
                               workers=options.get("workers") or 8)

    def _google(self, account: Any) -> CalendarConnector:
        from connectors.google import GoogleConnector, google_options
        return GoogleConnector(google_options(account.name, account.options, max_occurrences=self._max_occurrences),
                               refresh_tokens=self._refresh_tokens)

    def _outlook(self, account: Any) -> CalendarConnector:
        from connectors.outlook import OutlookConnector, outlook_options
        return OutlookConnector(outlook_options(account.name, account.options, max_occurrences=self._max_occurrences),
                                refresh_tokens=self._refresh_tokens)

    def _memory(self, account: Any) -> CalendarConnector:
        from connectors.memory import MemoryConnector
        return MemoryConnector()
