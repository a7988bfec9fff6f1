"""A CalDAV account's keys in the config file and their checks, and the check of a link's calendar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.caldav.targets import Refused, collection_url
from syncd.core.options import Option, OptionError

__all__ = ["OPTIONS", "check", "check_calendar"]

OPTIONS = (
    Option("url", url=True),
    Option("username"),
    Option("password", secret=True),
    Option("ca_bundle", file=True),
    Option("workers", int, limits=(1, 64)),
)


def check(options: Mapping[str, Any]) -> None:
    if not options.get("url"):
        raise OptionError("url", "missing")


def check_calendar(options: Mapping[str, Any], calendar: str) -> None:
    """A link's calendar is a display name, or a path or URL on the account's server (same
    scheme, host and port) under the path of its ``url``; anything else is refused."""
    url = options.get("url")
    if not url:
        return  # `check` reports the missing url
    try:
        collection_url(str(url), calendar)
    except Refused as exc:
        raise OptionError("calendar", str(exc)) from None
