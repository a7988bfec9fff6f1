"""Cursors as the connectors keep them: compact JSON with a version, read back or refused.

A cursor is opaque to the engine. A connector stores what it needs to list changes next
time (a provider's token, and what it reported so far); one it cannot read any more (an
older version, a damaged value) is `CursorExpired`, and the caller lists from scratch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

from syncd.core.calendars import SyncWindow
from syncd.core.errors import CursorExpired

__all__ = ["dump_cursor", "load_cursor", "window_key"]

VERSION = 1
T = TypeVar("T")


def dump_cursor(fields: dict[str, Any]) -> str:
    return json.dumps({"v": VERSION, **fields}, separators=(",", ":"))


def load_cursor(text: str, provider: str, read: Callable[[dict[str, Any]], T]) -> T:
    """``read`` applied to the fields `dump_cursor` wrote; anything it cannot make sense of
    (a missing key, a wrong type, an older version) is `CursorExpired`."""
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("v") != VERSION:
            raise ValueError("version")
        return read(raw)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CursorExpired(f"{provider} sync cursor cannot be read ({exc}); listing again from scratch") from exc


def window_key(window: SyncWindow) -> str:
    """The window's first and last day (UTC) and zone: a cursor is only good for the window it was made in."""
    return f"{window.start.astimezone(UTC).date()}/{window.end.astimezone(UTC).date()}/{window.timezone}"
