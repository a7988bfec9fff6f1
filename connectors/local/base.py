"""The state every local-folder concern works on: the account's root folder, rules and
limits, and the caches the concerns share.

Each concern is a mixin over `LocalBase` in a module of its own (`files`, `parsing`,
`lookup`, `listing`, `writing`); `connector` composes them into `LocalConnector`, as Radicale
composes its storage from per-concern mixins. A mixin inherits the mixins whose methods it
calls. Every public method holds ``_lock`` (reentrant: `create` calls `find_by_block_id`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from connectors import ical
from connectors.base import CalendarConnector
from syncd.core.calendars import OooRules, SyncWindow

__all__ = ["LocalBase"]


class LocalBase(CalendarConnector):
    """One local account: its root folder, rules and limits, and the caches."""

    def __init__(
        self,
        root: Path,
        rules: OooRules = OooRules(),  # noqa: B008 - frozen dataclass
        *,
        max_occurrences: int = 1000,
        max_file_bytes: int = 10_000_000,
        expand_seconds: float = 2.0,
    ) -> None:
        self.root = Path(root)
        self.rules = rules
        self.limits = ical.ExpansionLimits(max_occurrences=max_occurrences, expand_seconds=expand_seconds)
        self.max_file_bytes = max_file_bytes
        self._lock = threading.RLock()
        # (calendar, file) -> (etag, window, parse): get/find after a listing read nothing twice
        self._parsed: dict[tuple[str, str], tuple[str, SyncWindow, ical.ParsedObject]] = {}
        self._uids: dict[tuple[str, str], tuple[str, list[str]]] = {}  # (calendar, file) -> (stat key, uids)
        self._uid_files: dict[str, dict[str, str]] = {}  # calendar -> uid -> file name
        self._reported: dict[tuple[str, str], str] = {}  # (calendar, file) -> etag already logged
        self._windows: dict[str, SyncWindow] = {}  # the last window listed, per calendar
