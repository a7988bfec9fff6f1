"""Ids that syncd puts into a provider's URL paths (Google and Graph calendar ids): each must
stay one path segment, so that no id can aim a request at another resource."""

from __future__ import annotations

import unicodedata

__all__ = ["segment_problem"]


def segment_problem(value: str) -> str | None:
    """Why ``value`` cannot be one segment of a request URL's path (nothing more), or None."""
    if not value:
        return "empty"
    if value in (".", ".."):
        return "a dot segment (. or ..)"
    if any(unicodedata.category(char) == "Cc" for char in value):
        return "it holds control characters"
    bad = sorted({char for char in value if char in "/\\?#"})
    if bad:
        return f"it holds {' and '.join(repr(char) for char in bad)}: a calendar id is one path segment"
    return None
