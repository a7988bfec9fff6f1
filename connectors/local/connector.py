"""A local iCalendar folder ("vdir", as vdirsyncer and khal keep it) as a calendar.

Layout: ``root/<calendar>/`` holds one ``.ics`` file per event: a VCALENDAR with one UID
(the master and its RECURRENCE-ID overrides). Files whose names start with ``.`` or do not
end in ``.ics`` are ignored (our own temporary files are ``.<name>.<random>.tmp``).

This module owns the file side: listing, change detection, atomic writes, and logging bad
files once. What the bytes mean is `connectors.ical`.

etag
    ``<mtime_ns>-<size>-<inode>-<sha256 prefix>`` of the file; every occurrence of a file
    shares it. Writes go to a temporary file in the same folder and are moved into place
    with `os.replace`, so readers never see half a file and the inode changes.
cursor
    Compact JSON: the window's dates and zone, and per file its etag and the event ids it
    produced. Unchanged files are recognised by ``stat`` alone, except files modified just
    before the listing ("racy", as git calls them: a later edit in the same timestamp tick
    would keep mtime and size), which are re-read and compared by content next time.

A file that cannot be read or parsed is skipped with one log line (not repeated while the
file is unchanged); in an incremental listing its earlier events are kept, not reported as
removed, so a half-saved file does not delete OOO blocks. Thread-safe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors import ical
from connectors.base import CalendarConnector
from connectors.cursor import dump_cursor, load_cursor, window_key
from syncd.core.calendars import ChangeSet, EventDraft, OooRules, RemoteEvent, SyncWindow
from syncd.core.errors import BadEventData, ConfigError, NotFound, PreconditionFailed, TransientError
from syncd.core.time import zone

__all__ = ["LocalConnector"]

log = logging.getLogger("syncd.connectors.local")

_RACY_NS = 2_000_000_000  # coarse file-system clocks (FAT: 2 s) make newer files racy
_SAFE_NAME = re.compile(r"^[A-Za-z0-9@._+-]{1,200}$")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The bytes of one file and the version they were read at."""

    data: bytes
    stat: os.stat_result
    etag: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """What a cursor remembers about one file."""

    etag: str
    ids: tuple[str, ...]
    racy: bool = False

    @property
    def stat_key(self) -> str:
        return self.etag.rpartition("-")[0]


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"


def _dump_cursor(window: SyncWindow, entries: dict[str, _Entry]) -> str:
    files = {name: [e.etag, ical.pack_ids(e.ids), *([1] if e.racy else [])] for name, e in entries.items()}
    return dump_cursor({"w": window_key(window), "f": files})


def _load_cursor(cursor: str) -> tuple[str, dict[str, _Entry]]:
    def read(raw: dict[str, Any]) -> tuple[str, dict[str, _Entry]]:
        entries = {str(name): _Entry(str(item[0]), ical.unpack_ids(item[1]), len(item) > 2 and bool(item[2]))
                   for name, item in raw["f"].items()}
        return str(raw["w"]), entries
    return load_cursor(cursor, "local", read)


def _file_name(uid: str) -> str:
    """vdirsyncer's rule: the UID if it is a safe file name, else a hash of it."""
    if _SAFE_NAME.match(uid) and not uid.startswith("."):
        return f"{uid}.ics"
    return f"{hashlib.sha1(uid.encode()).hexdigest()}.ics"  # noqa: S324 - a name, not security


def _stem(name: str) -> str:
    return name[: -len(".ics")] if name.endswith(".ics") else name


def _racy(st: os.stat_result, listed_ns: int) -> bool:
    return st.st_mtime_ns >= listed_ns - _RACY_NS


class LocalConnector(CalendarConnector):
    provider = "local"

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

    # -- the connector interface -----------------------------------------------------------
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
                old = old_entries.get(name)
                if old is not None and old.stat_key == _stat_key(st) and not old.racy:
                    entries[name] = old
                    continue
                snap = self._read(calendar, folder / name)
                if snap is not None and old is not None and old.racy and old.etag == snap.etag:
                    entries[name] = _Entry(snap.etag, old.ids, _racy(snap.stat, listed_ns))
                    continue
                parsed = self._parse(calendar, name, snap, window) if snap is not None else None
                if parsed is None or snap is None:
                    # keep what it said until it parses again; an unreadable file is retried
                    entries[name] = _Entry(snap.etag if snap is not None else "", old.ids if old else ())
                    continue
                ids = [e.event_id for e in parsed.events]
                events.extend(parsed.events)
                if old is not None:
                    # moved out of the window is not removed; remember it, its deletion counts
                    moved_away = set(old.ids) & set(parsed.outside)
                    ids.extend(sorted(moved_away))
                    removed.update(set(old.ids) - set(ids))
                entries[name] = _Entry(snap.etag, tuple(ids), _racy(snap.stat, listed_ns))
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
            own = _file_name(f"syncd-{block_id}")
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
        if not (folder / name).is_file():
            return None
        return self._block_in(calendar, name, block_id, self._everything(calendar), f"syncd-{block_id}")

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        with self._lock:
            folder = self._folder(calendar, create=True)
            uid = f"syncd-{draft.block_id}"
            name = _file_name(uid)
            taken = (folder / name).exists() and uid not in self._uids_of(calendar, folder, name)
            # Everything we write is named after its block, so a retried create finds its earlier
            # write by name; only when that name is taken by someone else's event is a scan needed.
            existing = self.find_by_block_id(calendar, draft.block_id) if taken else \
                self._own_event(calendar, folder, name, draft.block_id)
            if existing is not None:
                return existing
            if taken:
                name = f"{_stem(name)}-{hashlib.sha1(os.urandom(8)).hexdigest()[:8]}.ics"  # noqa: S324
            now = datetime.now(UTC)
            snap = self._write(calendar, folder / name, ical.new_event_bytes(uid, draft, now))
            return self._written(calendar, name, snap, uid, None, draft, now)

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        with self._lock:
            folder = self._folder(calendar)
            located = self._locate(calendar, folder, event_id)
            snap = self._read(calendar, folder / located[0]) if located is not None else None
            if located is None or snap is None:
                raise NotFound(f"local calendar {calendar!r} has no event {event_id!r}")
            name, uid, instant = located
            if snap.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            now = datetime.now(UTC)
            if instant is None:
                data = ical.replace_event(snap.data, uid, draft, now, self.rules, fallback_uid=_stem(name))
            else:
                floating = zone(self._window_for(calendar).timezone)
                data = ical.override_occurrence(
                    snap.data, uid, instant, draft, now, self.rules, floating, fallback_uid=_stem(name)
                )
            new = self._write(calendar, folder / name, data)
            return self._written(calendar, name, new, event_id, instant, draft, now)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        with self._lock:
            folder = self._folder(calendar)
            located = self._locate(calendar, folder, event_id)
            if located is None:
                return
            name, uid, instant = located
            snap = self._read(calendar, folder / name)
            if snap is None:
                return
            if instant is None:
                data = ical.remove_event(snap.data, uid, fallback_uid=_stem(name))
            else:
                floating = zone(self._window_for(calendar).timezone)
                data = ical.exclude_occurrence(
                    snap.data, uid, instant, datetime.now(UTC), floating, fallback_uid=_stem(name)
                )
            if data is None:
                return  # already gone
            if etag is not None and snap.etag != etag:
                raise PreconditionFailed(f"event {event_id!r} changed since etag {etag!r}")
            if data:
                self._write(calendar, folder / name, data)
                return
            try:
                os.unlink(folder / name)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._os_error(folder / name, exc) from exc
            self._forget(calendar, name)

    # -- files -------------------------------------------------------------------------------
    def _folder(self, calendar: str, *, create: bool = False) -> Path:
        if not calendar or calendar in (".", "..") or "/" in calendar or "\\" in calendar or "\0" in calendar:
            raise ConfigError(f"calendar {calendar!r} is not a folder name under {self.root}; fix accounts[..]")
        folder = self.root / calendar
        if folder.is_dir():
            return folder
        if create and self.root.is_dir():
            try:
                folder.mkdir(exist_ok=True)
            except OSError as exc:
                raise self._os_error(folder, exc) from exc
            return folder
        raise ConfigError(f"calendar folder {folder} does not exist; create it or fix accounts[..]")

    def _list(self, folder: Path) -> dict[str, os.stat_result]:
        files: dict[str, os.stat_result] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.name.endswith(".ics"):
                        continue
                    try:
                        if entry.is_file():
                            files[entry.name] = entry.stat()
                    except FileNotFoundError:
                        continue  # removed while we looked
        except FileNotFoundError as exc:
            raise ConfigError(f"calendar folder {folder} does not exist; create it or fix accounts[..]") from exc
        except OSError as exc:
            raise self._os_error(folder, exc) from exc
        return dict(sorted(files.items()))

    def _read(self, calendar: str, path: Path) -> _Snapshot | None:
        """The file's bytes and etag; None if it is gone, unreadable or too large (logged)."""
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_size > self.max_file_bytes:
                    self._report(calendar, path, _stat_key(st),
                                 f"file is {st.st_size} bytes, over the {self.max_file_bytes} byte limit; skipped")
                    return None
                data = f.read(self.max_file_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._report(calendar, path, "unreadable", f"cannot be read ({exc.strerror or exc}); skipped")
            return None
        return _Snapshot(data, st, f"{_stat_key(st)}-{hashlib.sha256(data).hexdigest()[:12]}")

    def _parse(
        self, calendar: str, name: str, snap: _Snapshot, window: SyncWindow, only_uid: str | None = None
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
                fallback_uid=_stem(name),
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
        self._remember_uids(calendar, name, _stat_key(snap.stat), parsed.uids)
        return parsed

    def _write(self, calendar: str, path: Path, data: bytes) -> _Snapshot:
        """Atomically replace ``path``: a temporary file in the same folder, then `os.replace`."""
        tmp = None
        try:
            mode = path.stat().st_mode & 0o777 if path.exists() else None
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                if mode is not None:
                    os.chmod(tmp, mode)
            os.replace(tmp, path)
            tmp = None
            st = path.stat()
        except OSError as exc:
            raise self._os_error(path, exc) from exc
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
        self._parsed.pop((calendar, path.name), None)
        return _Snapshot(data, st, f"{_stat_key(st)}-{hashlib.sha256(data).hexdigest()[:12]}")

    def _os_error(self, path: Path, exc: OSError) -> ConfigError | TransientError:
        if isinstance(exc, PermissionError):
            return ConfigError(f"no permission to use {path}: fix the folder's owner or mode")
        return TransientError(f"{path}: {exc.strerror or exc}")

    def _report(self, calendar: str, path: Path, version: str, message: str) -> None:
        """Log a bad file once per version of it, not on every poll."""
        key = (calendar, path.name)
        if self._reported.get(key) == version:
            return
        self._reported[key] = version
        log.warning("%s: %s", path, message)

    # -- finding events ------------------------------------------------------------------------
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
        guesses = [g for g in (index.get(uid), _file_name(uid)) if g]
        for guess in guesses:
            if (folder / guess).is_file() and uid in self._uids_of(calendar, folder, guess):
                return guess
        for name in self._list(folder):  # the fallback: a scan
            if uid in self._uids_of(calendar, folder, name):
                return name
        return None

    def _uids_of(self, calendar: str, folder: Path, name: str) -> list[str]:
        try:
            key = _stat_key((folder / name).stat())
        except OSError:
            return []
        cached = self._uids.get((calendar, name))
        if cached is not None and cached[0] == key:
            return cached[1]
        snap = self._read(calendar, folder / name)
        if snap is None:
            return []
        try:
            uids = ical.event_uids(snap.data, fallback_uid=_stem(name))
        except BadEventData:
            uids = []
        self._remember_uids(calendar, name, _stat_key(snap.stat), uids)
        return uids

    def _remember_uids(self, calendar: str, name: str, stat_key: str, uids: list[str]) -> None:
        self._uids[(calendar, name)] = (stat_key, uids)
        index = self._uid_files.setdefault(calendar, {})
        for uid in uids:
            index.setdefault(uid, name)
            if not (self.root / calendar / index[uid]).exists():
                index[uid] = name

    def _forget(self, calendar: str, name: str) -> None:
        self._parsed.pop((calendar, name), None)
        self._uids.pop((calendar, name), None)
        index = self._uid_files.get(calendar, {})
        for uid in [u for u, n in index.items() if n == name]:
            del index[uid]

    def _written(
        self,
        calendar: str,
        name: str,
        snap: _Snapshot,
        event_id: str,
        instant: str | None,
        draft: EventDraft,
        now: datetime,
    ) -> RemoteEvent:
        """The event as the file now says it (parsed back), with the file's new etag."""
        start, end = draft.content.start, draft.content.end
        if instant is not None:
            at = ical.instant_time(instant)
            start, end = min(start, at), max(end, at)
        window = SyncWindow(start - timedelta(days=2), end + timedelta(days=2), draft.timezone)
        found = self._event_in(calendar, name, event_id, window, ical.split_event_id(event_id)[0]
                               if instant is not None else event_id)
        if found is not None:
            return found
        return RemoteEvent(event_id=event_id, etag=snap.etag, content=draft.content, block_id=draft.block_id,
                           updated=now.replace(microsecond=0), series_id=ical.split_event_id(event_id)[0]
                           if instant is not None else None)
