"""The file side: calendar folders, listing their files, reading and atomically writing one,
and logging a bad file once.

Layout: ``root/<calendar>/`` holds one ``.ics`` file per event: a VCALENDAR with one UID
(the master and its RECURRENCE-ID overrides). Files whose names start with ``.`` or do not
end in ``.ics`` are ignored (our own temporary files are ``.<name>.<random>.tmp``). A new
event's file is named after its UID when that is a safe file name, else after a hash of it
(vdirsyncer's rule). A missing calendar folder is a `ConfigError`, never an empty calendar.

etag
    ``<mtime_ns>-<size>-<inode>-<sha256 prefix>`` of the file; every occurrence of a file
    shares it. Writes go to a temporary file in the same folder and are moved into place
    with `os.replace`, so readers never see half a file and the inode changes.

A file that cannot be read, or is larger than ``max_file_bytes``, is skipped with one log
line, not repeated while the file is unchanged.

Symbolic links in a calendar folder are never followed, wherever they lead: a link out of the
folder (to ``/etc/passwd``, to another user's calendar, a linked sub-folder) would let whoever
can write into the folder make syncd read what it should not, and a link inside the folder
would only show the same events twice and be replaced by a plain file on the first write.
Each is skipped with one log line. Reads open the file itself with ``O_NOFOLLOW`` (no window
between a check and the open) and ``O_NONBLOCK``, and take regular files only: a FIFO swapped
in cannot block a worker.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from connectors.local.base import LocalBase
from syncd.core.errors import ConfigError, TransientError

__all__ = ["FilesMixin", "Snapshot", "file_name", "stat_key", "stem"]

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"^[A-Za-z0-9@._+-]{1,200}$")
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)  # what open() with O_NOFOLLOW says of a link (Linux, BSD)
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
_NOT_FOLLOWED = "is a symbolic link; not followed, skipped"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The bytes of one file and the version they were read at."""

    data: bytes
    stat: os.stat_result
    etag: str


def stat_key(st: os.stat_result) -> str:
    """The part of an etag that ``stat`` alone gives."""
    return f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}"


def _snapshot(data: bytes, st: os.stat_result) -> Snapshot:
    return Snapshot(data, st, f"{stat_key(st)}-{hashlib.sha256(data).hexdigest()[:12]}")


def _lstat_version(path: Path) -> str:
    """The version of a link a log line is not repeated for: the link itself, not its target."""
    try:
        return f"link-{stat_key(path.lstat())}"
    except OSError:
        return "link"


def file_name(uid: str) -> str:
    """vdirsyncer's rule: the UID if it is a safe file name, else a hash of it."""
    if _SAFE_NAME.match(uid) and not uid.startswith("."):
        return f"{uid}.ics"
    return f"{hashlib.sha1(uid.encode()).hexdigest()}.ics"  # noqa: S324 - a name, not security


def stem(name: str) -> str:
    """A file name without ``.ics``: the fallback UID of a file without one."""
    return name[: -len(".ics")] if name.endswith(".ics") else name


class FilesMixin(LocalBase):
    """Folders and files: list, read, write atomically, report bad ones once."""

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
        """The folder's ``.ics`` files and their ``stat``, sorted by name; links skipped (logged)."""
        files: dict[str, os.stat_result] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_symlink():
                            link = entry.stat(follow_symlinks=False)
                            self._report(folder.name, folder / entry.name, f"link-{stat_key(link)}", _NOT_FOLLOWED)
                            continue
                        if not entry.name.endswith(".ics"):
                            continue
                        if entry.is_file(follow_symlinks=False):
                            files[entry.name] = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while we looked
        except FileNotFoundError as exc:
            raise ConfigError(f"calendar folder {folder} does not exist; create it or fix accounts[..]") from exc
        except OSError as exc:
            raise self._os_error(folder, exc) from exc
        return dict(sorted(files.items()))

    def _read(self, calendar: str, path: Path) -> Snapshot | None:
        """The file's bytes and etag; None if it is gone, unreadable, too large, a link or
        not a regular file (logged)."""
        try:
            if not hasattr(os, "O_NOFOLLOW") and path.is_symlink():  # no O_NOFOLLOW (Windows): check first
                raise OSError(errno.ELOOP, "symbolic link")
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in _LINK_ERRNOS:
                self._report(calendar, path, _lstat_version(path), _NOT_FOLLOWED)
            else:
                self._report(calendar, path, "unreadable", f"cannot be read ({exc.strerror or exc}); skipped")
            return None
        try:
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    self._report(calendar, path, stat_key(st), "is not a regular file; skipped")
                    return None
                if st.st_size > self.max_file_bytes:
                    self._report(calendar, path, stat_key(st),
                                 f"file is {st.st_size} bytes, over the {self.max_file_bytes} byte limit; skipped")
                    return None
                data = f.read(self.max_file_bytes + 1)
        except OSError as exc:
            self._report(calendar, path, "unreadable", f"cannot be read ({exc.strerror or exc}); skipped")
            return None
        return _snapshot(data, st)

    def _write(self, calendar: str, path: Path, data: bytes) -> Snapshot:
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
        return _snapshot(data, st)

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
