"""What each file says, cached per version of it: its OOO events in a window (what the
bytes mean is `connectors.ical`), and the UID index (UID -> file, file -> UIDs) that lets
`get`, `update` and `delete` find an event without reading the whole folder.

A file that does not parse, or has events that cannot be expanded, is reported once per
version of it (`FilesMixin._report`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connectors import ical
from connectors.local.files import FilesMixin, Snapshot, stat_key, stem
from syncd.core.calendars import SyncWindow
from syncd.core.errors import BadEventData

__all__ = ["ParsingMixin"]


class ParsingMixin(FilesMixin):
    """Parsing files (cached), and the UID index."""

    def _parse(
        self, calendar: str, name: str, snap: Snapshot, window: SyncWindow, only_uid: str | None = None
    ) -> ical.ParsedObject | None:
        """The file's OOO events in ``window`` (cached per version and window); None if it
        does not parse (logged once)."""
        cached = self._parsed.get((calendar, name))
        if only_uid is None and cached is not None and cached[0] == snap.etag and cached[1] == window:
            return cached[2]
        folder = self.root / calendar
        try:
            parsed = ical.parse_ooo_events(
                snap.data,
                window,
                self.rules,
                etag=snap.etag,
                fallback_updated=datetime.fromtimestamp(snap.stat.st_mtime, UTC),
                fallback_uid=stem(name),
                limits=self.limits,
                only_uid=only_uid,
            )
        except BadEventData as exc:
            self._report(calendar, folder / name, snap.etag, f"skipped: {exc}")
            return None
        if parsed.problems:
            self._report(calendar, folder / name, snap.etag, "skipped " + "; ".join(parsed.problems))
        if only_uid is None:
            self._parsed[(calendar, name)] = (snap.etag, window, parsed)
        self._remember_uids(calendar, name, stat_key(snap.stat), parsed.uids)
        return parsed

    def _uids_of(self, calendar: str, folder: Path, name: str) -> list[str]:
        """The UIDs in file ``name`` (cached while its ``stat`` is unchanged)."""
        try:
            key = stat_key((folder / name).stat())
        except OSError:
            return []
        cached = self._uids.get((calendar, name))
        if cached is not None and cached[0] == key:
            return cached[1]
        snap = self._read(calendar, folder / name)
        if snap is None:
            return []
        try:
            uids = ical.event_uids(snap.data, fallback_uid=stem(name))
        except BadEventData:
            uids = []
        self._remember_uids(calendar, name, stat_key(snap.stat), uids)
        return uids

    def _remember_uids(self, calendar: str, name: str, key: str, uids: list[str]) -> None:
        self._uids[(calendar, name)] = (key, uids)
        index = self._uid_files.setdefault(calendar, {})
        for uid in uids:
            index.setdefault(uid, name)
            if not (self.root / calendar / index[uid]).exists():
                index[uid] = name

    def _forget(self, calendar: str, name: str) -> None:
        """Drop what the caches say about a file that is gone."""
        self._parsed.pop((calendar, name), None)
        self._uids.pop((calendar, name), None)
        index = self._uid_files.get(calendar, {})
        for uid in [u for u, n in index.items() if n == name]:
            del index[uid]
