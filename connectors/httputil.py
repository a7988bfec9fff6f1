"""HTTP details the connectors share: reading Retry-After, and telling a stale connection."""

from __future__ import annotations

import email.utils
import http.client
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["retry_after", "stale_connection"]


def retry_after(headers: Mapping[str, Any]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = None
    for key, item in headers.items():
        if str(key).lower() == "retry-after":
            value = item
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def stale_connection(exc: BaseException) -> bool:
    """Whether a connection error is a kept-alive connection the server had closed meanwhile.

    Such a request is worth sending once more on a new connection; any other network error
    is reported. HTTP libraries wrap the socket's error in their own, so the chain is walked."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                             http.client.RemoteDisconnected)):
            return True
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or seen.__context__ or inner
    return False
