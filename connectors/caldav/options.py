"""A CalDAV account's keys in the config file and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.core.options import Option, OptionError

__all__ = ["OPTIONS", "check"]

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
