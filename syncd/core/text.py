"""Text shown to people: one line per error, and URLs without their secrets."""

from __future__ import annotations

import re
import urllib.parse

__all__ = ["first_line", "one_line", "redact_url"]


def first_line(exc: BaseException) -> str:
    """An error as one line: its message's first line, or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, whitespace folded, cut at ``limit`` characters (untrusted text: a
    receiver's error page, a server's reason phrase)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def redact_url(url: str, *, keep_query: bool = True) -> str:
    """``scheme://user:password@host/…`` → ``scheme://user:***@host/…``. Without
    ``keep_query``, the user, query and fragment go too (a webhook URL often carries a key)."""
    if not keep_query:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*):[^/@\s]*@", r"\1:***@", url)
