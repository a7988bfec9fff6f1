"""Reading one TOML table, knowing its key path, so every complaint names the file and the key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any, NoReturn

from syncd.config.model import SECRET_KEYS
from syncd.core.errors import ConfigError
from syncd.core.time import parse_duration

__all__ = ["MISSING", "Table", "describe_type", "fail", "show_value", "toml_error"]

MISSING: Any = object()


def toml_error(message: str, text: str) -> str:
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return f"line {match[1]}, column {match[2]}: TOML syntax error: {message[: match.start()]}"
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        lines = len(text.splitlines()) or 1
        return f"line {lines} (end of file): TOML syntax error: {message[: match.start()]}"
    return f"TOML syntax error: {message}"


def join_key(parent: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'
    return f"{parent}.{shown}" if parent else shown


def show_value(value: object) -> str:
    """A TOML value as an operator would recognise it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def describe_type(value: object) -> str:
    """A value's kind only: used where the value may be a secret."""
    for kind, name in ((bool, "true/false"), (str, "a string"), (int, "an integer"), (float, "a number")):
        if isinstance(value, kind):
            return name
    return show_value(value)


class Table:
    """One TOML table being read: knows its key path, so every complaint names it."""

    def __init__(self, file: str, path: str, data: Mapping[str, Any]) -> None:
        self.file, self.path, self.data = file, path, data

    def key(self, key: str) -> str:
        return join_key(self.path, key)

    def fail(self, key: str, message: str) -> NoReturn:
        fail(self.file, self.key(key), message)

    def allow(self, keys: Iterable[str]) -> None:
        allowed = set(keys)
        for key in self.data:
            if key not in allowed:
                self.fail(key, "unknown key")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            self.fail(key, "missing")
        return default

    def _typed(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        # bool is an int subclass in Python but never a number in TOML.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in as_tuple(kind)):
            shown = describe_type(value) if key in SECRET_KEYS else show_value(value)
            self.fail(key, f"expected {expected}, got {shown}")
        return value

    def string(self, key: str, default: Any = MISSING, *, empty: bool = False) -> Any:
        value = self._typed(key, str, "a string", default)
        if isinstance(value, str) and not empty and key in self.data and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        return self._typed(key, bool, "true or false", default)

    def integer(self, key: str, default: Any = MISSING, *, minimum: int | None = None) -> Any:
        value = self._typed(key, int, "an integer", default)
        if minimum is not None and key in self.data and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = MISSING) -> Any:
        value = self._typed(key, (int, float), "a number", default)
        return float(value) if value is not None else None

    def choice(self, key: str, choices: tuple[str, ...], default: Any = MISSING) -> Any:
        value = self.string(key, default)
        if key in self.data and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def strings(self, key: str, default: Any = MISSING) -> Any:
        values = self._typed(key, list, "a list of strings", default)
        if key in self.data:
            for i, item in enumerate(values):
                if not isinstance(item, str):
                    fail(self.file, f"{self.key(key)}[{i}]", f"expected a string, got {show_value(item)}")
            return tuple(values)
        return values

    def duration(self, key: str, default: timedelta, *, positive: bool = True) -> timedelta:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(key, f"expected a duration such as \"5m\", got {show_value(value)}")
        try:
            result = parse_duration(value)
        except ConfigError as exc:
            self.fail(key, str(exc))
        if positive and result <= timedelta(0):
            self.fail(key, f"must be longer than zero, got {show_value(value)}")
        return result

    def table(self, key: str) -> Table:
        """The sub-table at ``key`` (an empty one when absent)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {show_value(value)}")
        return Table(self.file, self.key(key), value)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]`` or ``key = [{...}, ...]``)."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"expected a list of tables, got {show_value(value)}")
        out = []
        for i, item in enumerate(value):
            where = f"{self.key(key)}[{i}]"
            if not isinstance(item, dict):
                fail(self.file, where, f"expected a table, got {show_value(item)}")
            out.append(Table(self.file, where, item))
        return out


def fail(file: str, where: str, message: str) -> NoReturn:
    raise ConfigError(f"{file}: {where}: {message}")


def as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


