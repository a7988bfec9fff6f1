"""Finding one event: the file of a UID (the index, the file named after the UID, then a
scan), `get`, and `find_by_block_id` (the file syncd names after the block first, then a
scan of the folder).

An event id is a UID, or for one occurrence of a series ``<UID>`` plus its instant
(`connectors.ical.split_event_id`); a whole id that is a UID wins over a split. A single
event is found wherever it is, an occurrence inside the last window listed.
"""

from __future__ import annotations

from pathlib import Path

from connectors import ical
from connectors.local.files import file_name
from connectors.local.parsing import ParsingMixin
from syncd.core.calendars import RemoteEvent, SyncWindow

__all__ = ["LookupMixin"]


class LookupMixin(ParsingMixin):
    """Event id -> (file, uid, instant), and the reads that use it."""

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        with self._lock:
            folder = self._folder(calendar)
            located = self._locate(calendar, folder, event_id)
            if located is None:
                return None
            name, uid, instant = located
            if instant is None:  # a single event: wherever it is, not only in the window
                return self._event_in(calendar, name, event_id, self._everything(calendar), uid)
            return self._event_in(calendar, name, event_id, self._window_for(calendar, instant), uid)

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        with self._lock:
            folder = self._folder(calendar)
            own = file_name(f"syncd-{block_id}")
            if (folder / own).is_file():
                # the file we name after the block: our event wherever it is, not only in the window
                found = self._block_in(calendar, own, block_id, self._everything(calendar), f"syncd-{block_id}")
                if found is not None:
                    return found
            window = self._window_for(calendar)
            for name in self._list(folder):
                found = self._block_in(calendar, name, block_id, window)
                if found is not None:
                    return found
            return None

    def _own_event(self, calendar: str, folder: Path, name: str, block_id: str) -> RemoteEvent | None:
        """The event of ``block_id`` in the file syncd named after it, if it is there."""
        if not (folder / name).is_file():
            return None
        return self._block_in(calendar, name, block_id, self._everything(calendar), f"syncd-{block_id}")

    def _window_for(self, calendar: str, instant: str | None = None) -> SyncWindow:
        return ical.lookup_window(self._windows.get(calendar), instant)

    def _everything(self, calendar: str) -> SyncWindow:
        return ical.all_of_time(self._window_for(calendar).timezone)

    def _event_in(
        self, calendar: str, name: str, event_id: str, window: SyncWindow, uid: str | None = None
    ) -> RemoteEvent | None:
        snap = self._read(calendar, self.root / calendar / name)
        parsed = self._parse(calendar, name, snap, window, uid) if snap is not None else None
        if parsed is None:
            return None
        return next((e for e in parsed.events if e.event_id == event_id), None)

    def _block_in(
        self, calendar: str, name: str, block_id: str, window: SyncWindow, uid: str | None = None
    ) -> RemoteEvent | None:
        snap = self._read(calendar, self.root / calendar / name)
        parsed = self._parse(calendar, name, snap, window, uid) if snap is not None else None
        if parsed is None:
            return None
        return next((e for e in parsed.events if e.block_id == block_id), None)

    def _locate(self, calendar: str, folder: Path, event_id: str) -> tuple[str, str, str | None] | None:
        """(file, uid, instant) of an event id; a whole id that is a UID wins over a split."""
        candidates: list[tuple[str, str | None]] = [(event_id, None)]
        uid, instant = ical.split_event_id(event_id)
        if instant is not None:
            candidates.append((uid, instant))
        for cand_uid, cand_instant in candidates:
            name = self._file_of(calendar, folder, cand_uid)
            if name is not None:
                return name, cand_uid, cand_instant
        return None

    def _file_of(self, calendar: str, folder: Path, uid: str) -> str | None:
        index = self._uid_files.setdefault(calendar, {})
        guesses = [g for g in (index.get(uid), file_name(uid)) if g]
        for guess in guesses:
            if (folder / guess).is_file() and uid in self._uids_of(calendar, folder, guess):
                return guess
        for name in self._list(folder):  # the fallback: a scan
            if uid in self._uids_of(calendar, folder, name):
                return name
        return None
