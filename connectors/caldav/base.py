"""The state every CalDAV concern works on: the account's settings and what the connector
has learnt about its collections.

Each concern is a mixin over `CalDAVBase` in a module of its own (`client`, `objects`,
`discovery`, `lookup`, `listing`, `writing`); `connector` composes them into
`CalDAVConnector`, as Radicale composes its storage from per-concern mixins. A mixin
inherits the mixins whose methods it calls. Everything shared is guarded by ``_lock``.
"""

from __future__ import annotations

import threading

import requests

from connectors import ical
from connectors.base import CalendarConnector
from connectors.peruser import WorkerPool
from syncd.core.calendars import OooRules, SyncWindow

__all__ = ["CalDAVBase"]


class CalDAVBase(WorkerPool, CalendarConnector):
    """One CalDAV account: its server, login and rules, and the caches its concerns share."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, *,
                 ca_bundle: str | None = None, rules: OooRules = OooRules(),  # noqa: B008 - frozen
                 max_occurrences: int = 1000, timeout: float = 30.0, account: str = "caldav",
                 workers: int = 8) -> None:
        super().__init__()
        self.workers = workers
        self.url = url if url.endswith("/") else url + "/"
        self.username = username
        self.password = password
        self.ca_bundle = ca_bundle
        self.rules = rules
        self.timeout = timeout
        self.account = account
        self.limits = ical.ExpansionLimits(max_occurrences=max_occurrences)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._collections: dict[str, str] = {}  # link calendar -> collection URL
        self._hrefs: dict[str, dict[str, str]] = {}  # collection URL -> UID -> href (from listings)
        self._windows: dict[str, SyncWindow] = {}  # collection URL -> last window listed
        self._reported: dict[tuple[str, str], str] = {}  # (collection, href) -> etag already logged as bad
