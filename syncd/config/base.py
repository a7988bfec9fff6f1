"""What every section of the config file is read with: environment secrets, paths, URLs."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from syncd.config.table import Table

__all__ = ["ReaderBase"]


class ReaderBase:
    def __init__(self, file: str, folder: Path, environ: Mapping[str, str]) -> None:
        self.file, self.folder, self.environ = file, folder, environ
        self.inline_secrets: list[str] = []  # key paths of secrets written in the file itself

    def note_inline(self, table: Table, keys: Iterable[str]) -> None:
        """Of ``keys`` (secrets), those the table gives literally rather than as ``KEY_env``."""
        self.inline_secrets += [table.key(k) for k in keys if k in table.data]

    # -- helpers ---------------------------------------------------------------------------

    def resolve_env(self, table: Table, targets: Iterable[str]) -> tuple[dict[str, Any], set[str]]:
        """Replace ``X_env`` keys by ``X`` read from the environment.

        Returns the table's data with secrets in place, and the keys that came from the
        environment (they are secrets whatever their name)."""
        data = dict(table.data)
        from_env: set[str] = set()
        allowed = set(targets)
        for key in list(data):
            if not key.endswith("_env"):
                continue
            target = key[: -len("_env")]
            if target not in allowed:
                table.fail(key, "unknown key")
            if target in data:
                table.fail(key, f"give {target} or {key}, not both")
            variable = table.string(key)
            if variable not in self.environ:
                table.fail(key, f"environment variable {variable} is not set")
            if not self.environ[variable]:
                table.fail(key, f"environment variable {variable} is empty")
            del data[key]
            data[target] = self.environ[variable]
            from_env.add(target)
        return data, from_env

    def path(self, value: str) -> str:
        """``value`` made absolute against the config file's folder."""
        return os.path.normpath(self.folder / os.path.expanduser(value))

    def http_url(self, table: Table, key: str, value: str) -> None:
        if not re.match(r"https?://[^/\s]+", value):
            # No value in the message: webhook and CalDAV URLs often embed a secret.
            table.fail(key, "expected an http:// or https:// URL")

