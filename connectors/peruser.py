"""What the connectors that act as each user and list many calendars at once share.

Google Calendar and Microsoft Graph address a calendar as ``<user email>/<calendar id>``
(the email picks whose credentials or mailbox), list many users' calendars in batch
requests from a small worker pool, and answer a single `changes` as a batch of one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from connectors.base import CalendarConnector
from syncd.core.calendars import ChangeSet, PollRequest, SyncWindow
from syncd.core.errors import ConfigError

__all__ = ["PerUserConnector", "WorkerPool"]


class WorkerPool:
    """A connector's small pool of threads for listing many calendars side by side; started
    on first use."""

    workers: int = 4
    provider: str = ""
    account: str = ""

    def __init__(self) -> None:
        self._pool_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """``fn`` over ``items`` on the worker pool, results in order."""
        if len(items) <= 1 or self.workers <= 1:
            return iter([fn(item) for item in items])
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=f"{self.provider}-{self.account}")
            pool = self._pool
        return pool.map(fn, items)

    def _close_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


class PerUserConnector(WorkerPool, CalendarConnector):
    """Subclasses set ``workers`` and ``account`` and implement `changes_many`."""

    def address(self, owner: str, calendar: str) -> str:
        return f"{owner}/{calendar}"

    def _split(self, address: str) -> tuple[str, str]:
        owner, sep, calendar = address.partition("/")
        if not sep or "@" not in owner or not calendar:
            raise ConfigError(f"{self.provider} calendar {address!r}: expected <user email>/<calendar id>")
        return owner, calendar

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        result = self.changes_many([PollRequest(calendar, cursor, window)])[0]
        if isinstance(result, Exception):
            raise result
        return result
