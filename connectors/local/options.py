"""A local account's keys in the config file and their checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncd.core.options import Option, OptionError

__all__ = ["OPTIONS", "check"]

OPTIONS = (Option("root", file=True),)


def check(options: Mapping[str, Any]) -> None:
    if not options.get("root"):
        raise OptionError("root", "missing (the folder holding one sub-folder per calendar)")
