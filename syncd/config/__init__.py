"""The operator's config file: finding it, reading it, checking every key, and the values it gives.

- `loader`: finding the file and reading every section (the format is in its docstring);
- `model`: the loaded config as frozen dataclasses;
- `table`: reading one TOML table so that every complaint names the file and the key;
- `accounts`: calendar accounts, each provider's options read as its folder declares them;
- `sinks`: status sinks and their options; `base`: what every section is read with.
"""

from __future__ import annotations

from syncd.config.loader import find_config_path, load_config
from syncd.config.model import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    AccountConfig,
    ApiConfig,
    ApiToken,
    CalendarLinkConfig,
    Config,
    DaemonConfig,
    Options,
    SinkConfig,
    TeamConfig,
    UserConfig,
)

__all__ = ["DEFAULT_CONFIG_NAME", "ENV_CONFIG", "AccountConfig", "ApiConfig", "ApiToken", "CalendarLinkConfig",
           "Config", "DaemonConfig", "Options", "SinkConfig", "TeamConfig", "UserConfig", "find_config_path",
           "load_config"]
