"""Listing a calendar folder's OOO events: `changes`, and the cursor it hands back.

cursor
    Compact JSON: the window's dates and zone, and per file its etag and the event ids it
    produced. Unchanged files are recognised by ``stat`` alone, except files modified just
    before the listing ("racy", as git calls them: a later edit in the same timestamp tick
    would keep mtime and size), which are re-read and compared by content next time. A
    window that moved reads every file again.

A file that cannot be read or parsed is skipped (and logged once); in an incremental
listing its earlier events are kept, not reported as removed, so a half-saved file does not
delete OOO blocks. An event moved out of the window is not reported as removed either; a
UID copied into two files is reported once (the first file by name wins).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors import ical
from connectors.cursor import dump_cursor, load_cursor, window_key
from connectors.local.files import stat_key
from connectors.local.parsing import ParsingMixin
from syncd.core.calendars import ChangeSet, RemoteEvent, SyncWindow

__all__ = ["ListingMixin"]

_RACY_NS = 2_000_000_000  # coarse file-system clocks (FAT: 2 s) make newer files racy


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a cursor remembers about one file."""

    etag: str
    ids: tuple[str, ...]
    racy: bool = False

    @property
    def stat_key(self) -> str:
        return self.etag.rpartition("-")[0]


def _dump_cursor(window: SyncWindow, entries: dict[str, _Entry]) -> str:
    files = {name: [e.etag, ical.pack_ids(e.ids), *([1] if e.racy else [])] for name, e in entries.items()}
    return dump_cursor({"w": window_key(window), "f": files})


def _load_cursor(cursor: str) -> tuple[str, dict[str, _Entry]]:
    def read(raw: dict[str, Any]) -> tuple[str, dict[str, _Entry]]:
        entries = {str(name): _Entry(str(item[0]), ical.unpack_ids(item[1]), len(item) > 2 and bool(item[2]))
                   for name, item in raw["f"].items()}
        return str(raw["w"]), entries
    return load_cursor(cursor, "local", read)


def _racy(st: os.stat_result, listed_ns: int) -> bool:
    return st.st_mtime_ns >= listed_ns - _RACY_NS


class ListingMixin(ParsingMixin):
    """`changes`: which files changed since the cursor, and what they say now."""

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        with self._lock:
            folder = self._folder(calendar)
            previous = _load_cursor(cursor) if cursor is not None else None
            self._windows[calendar] = window
            full = previous is None or previous[0] != window_key(window)
            old_entries = {} if full or previous is None else previous[1]
            listed_ns = time.time_ns()
            files = self._list(folder)
            entries: dict[str, _Entry] = {}
            events: list[RemoteEvent] = []
            removed: set[str] = set()
            for name, st in files.items():
                entry, found, gone = self._list_file(calendar, folder, name, st, old_entries.get(name), window,
                                                     listed_ns)
                entries[name] = entry
                events.extend(found)
                removed.update(gone)
            for name, old in old_entries.items():
                if name not in files:
                    removed.update(old.ids)
            for cal_name, name in [k for k in self._uids if k[0] == calendar and k[1] not in files]:
                self._forget(cal_name, name)
            current = {i for entry in entries.values() for i in entry.ids}
            unique: dict[str, RemoteEvent] = {}
            for event in events:
                unique.setdefault(event.event_id, event)  # a UID copied into two files: first wins
            return ChangeSet(
                events=list(unique.values()),
                removed=sorted(removed - current),
                cursor=_dump_cursor(window, entries),
                full=full,
            )

    def _list_file(
        self, calendar: str, folder: Path, name: str, st: os.stat_result, old: _Entry | None, window: SyncWindow,
        listed_ns: int,
    ) -> tuple[_Entry, list[RemoteEvent], set[str]]:
        """One file: its new cursor entry, its events if it was read again, the ids it no longer gives."""
        if old is not None and old.stat_key == stat_key(st) and not old.racy:
            return old, [], set()
        snap = self._read(calendar, folder / name)
        if snap is not None and old is not None and old.racy and old.etag == snap.etag:
            return _Entry(snap.etag, old.ids, _racy(snap.stat, listed_ns)), [], set()
        parsed = self._parse(calendar, name, snap, window) if snap is not None else None
        if parsed is None or snap is None:
            # keep what it said until it parses again; an unreadable file is retried
            return _Entry(snap.etag if snap is not None else "", old.ids if old else ()), [], set()
        ids = [e.event_id for e in parsed.events]
        gone: set[str] = set()
        if old is not None:
            # moved out of the window is not removed; remember it, its deletion counts
            moved_away = set(old.ids) & set(parsed.outside)
            ids.extend(sorted(moved_away))
            gone = set(old.ids) - set(ids)
        return _Entry(snap.etag, tuple(ids), _racy(snap.stat, listed_ns)), list(parsed.events), gone
