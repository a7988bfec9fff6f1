"""How a calendar provider declares the keys its accounts take in the config file.

Each provider's folder lists its `Option`s once; the config loader reads and checks every
account against them generically (types, limits, choices, URLs, files, secrets, ``KEY_env``),
then hands the values to the provider's own check for what concerns several keys at once,
which raises `OptionError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.core.errors import ConfigError

__all__ = ["Option", "OptionError"]


@dataclass(frozen=True, slots=True)
class Option:
    """One key of an account's table.

    ``kind`` is ``str``, ``int``, ``bool`` or ``datetime.timedelta`` (a duration such as
    ``"7d"``). A ``str`` key may also be given as ``<key>_env``, naming an environment
    variable; a ``secret`` is masked wherever the config is shown.
    """

    name: str
    kind: type = str
    secret: bool = False
    url: bool = False  # an http:// or https:// URL
    file: bool = False  # a path, taken relative to the config file's folder
    limits: tuple[int, int] = (0, 10**9)  # for int keys: the least and most allowed
    choices: tuple[str, ...] = ()  # for str keys: the values allowed, if limited


class OptionError(ConfigError):
    """A provider's verdict on one key of an account's table (the loader adds file and table)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
