"""The loaded config as values: frozen dataclasses the rest of syncd reads.

Secret values never appear in the ``repr`` of the loaded config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from syncd.core.calendars import OooRules
from syncd.core.daysoff import DaysOffSpec
from syncd.core.text import redact_url

__all__ = ["CALENDAR_ZONE", "DEFAULT_CONFIG_NAME", "ENV_CONFIG", "HOURS_SOURCES", "AccountConfig", "ApiConfig",
           "ApiToken", "CalendarLinkConfig", "Config", "DaemonConfig", "Options", "SinkConfig", "TeamConfig",
           "UserConfig"]

ENV_CONFIG = "SYNCD_CONFIG"
DEFAULT_CONFIG_NAME = "syncd.toml"

CONFLICT_POLICIES = ("newest", "calendar", "helpdesk")
HOURS_SOURCES = ("config", "calendar")
CALENDAR_ZONE = "calendar"  # a user's `timezone`: the zone of the working hours their calendar keeps
DIRECTIONS = ("two-way", "pull", "push")
SCOPES = ("read", "write", "admin")
SINK_TYPES = ("webhook", "stdout", "redis", "nats")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")  # json: one object per line, for log shippers

# Keys whose values are secrets even when written literally in the file.
SECRET_KEYS = frozenset({"password", "client_secret", "secret", "token", "token_key"})



class Options(Mapping[str, Any]):
    """A read-only mapping of provider or sink options whose ``repr`` hides secrets."""

    __slots__ = ("_data", "_secret")

    def __init__(self, data: Mapping[str, Any] | None = None, secret: Iterable[str] = ()) -> None:
        self._data = dict(data or {})
        self._secret = frozenset(secret) & self._data.keys()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k!r}: {'***' if k in self._secret else repr(redact_url(v) if isinstance(v, str) else v)}"
            for k, v in self._data.items()
        )
        return f"Options({{{shown}}})"

    @property
    def secret_keys(self) -> frozenset[str]:
        """The keys holding secrets (masked in ``repr``; never log their values)."""
        return self._secret


@dataclass(frozen=True, slots=True, repr=False)
class DaemonConfig:
    database_url: str = "sqlite:///syncd.db"  # a relative sqlite path is made absolute at load
    poll_interval: timedelta = timedelta(minutes=5)
    sync_window_past: timedelta = timedelta(days=30)
    sync_window_future: timedelta = timedelta(days=365)
    conflict_policy: str = "newest"  # newest | calendar | helpdesk
    away_outside_working_hours: bool = False
    working_hours_from: str = "config"  # config | calendar: every user's default
    working_hours_poll: timedelta = timedelta(hours=1)  # how often hours kept in calendars are read again
    mass_delete_share: float = 0.5  # hold a sync that would delete more than this share of blocks
    mass_delete_min: int = 3  # ... and at least this many (small calendars are not held)
    dead_letter_after: timedelta = timedelta(hours=24)
    sweep_interval: timedelta = timedelta(minutes=5)
    rotation_recent_window: timedelta = timedelta(days=7)  # "fewest assignments recently" looks this far back
    max_occurrences: int = 1000  # per recurring series, inside the sync window
    log_level: str = "INFO"
    log_format: str = "text"  # text | json
    lease_ttl: timedelta = timedelta(seconds=60)  # a dead replica's links go to the others after this
    days_off: DaysOffSpec = DaysOffSpec()  # everyone's public holidays and company days off

    def __repr__(self) -> str:
        # A PostgreSQL URL may carry a password.
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["database_url"] = redact_url(self.database_url)
        shown = ", ".join(f"{name}={value!r}" for name, value in values.items())
        return f"DaemonConfig({shown})"


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    token: str = field(repr=False)  # the secret itself
    scopes: tuple[str, ...] = ("read",)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    listen: str = "127.0.0.1:8080"
    tokens: tuple[ApiToken, ...] = ()
    public_health: bool = True
    public_docs: bool = False  # /docs and /openapi.json without a token
    public_url: str | None = None  # where browsers and calendar apps reach syncd (connect links, feeds); no trailing /
    helpdesk_name: str = "your helpdesk"  # as the connect pages name it

    @property
    def host(self) -> str:
        """The host part of `listen`, without IPv6 brackets."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


@dataclass(frozen=True, slots=True)
class AccountConfig:
    name: str
    provider: str  # local | caldav | google | outlook | memory
    options: Mapping[str, Any] = field(default_factory=Options)  # provider keys, secrets resolved
    ooo_rules: OooRules = field(default_factory=OooRules)
    domains: tuple[str, ...] = ()  # only users with an email in one of these (lower case); empty: any


@dataclass(frozen=True, slots=True)
class CalendarLinkConfig:
    account: str
    calendar: str
    sync_ooo: bool = True
    direction: str = "two-way"  # two-way | pull | push


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One agent. `working_hours` maps weekday (0 = Monday) to sorted, non-overlapping
    ``(start, end)`` local times; an end of ``time.max`` means "until midnight" (``24:00``).
    Days missing from the mapping have no working hours."""

    id: str
    email: str
    timezone: str  # IANA name, checked against zoneinfo; or CALENDAR_ZONE: the mailbox's
    working_hours: Mapping[int, tuple[tuple[time, time], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    calendars: tuple[CalendarLinkConfig, ...] = ()
    replacement: str | None = None  # who takes their work while they are away (a user id)
    days_off: DaysOffSpec = DaysOffSpec()  # own holidays (else the daemon's) and days off besides the daemon's
    working_hours_from: str = "config"  # config | calendar (then `working_hours` is the fallback)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo("UTC" if self.timezone == CALENDAR_ZONE else self.timezone)


@dataclass(frozen=True, slots=True)
class TeamConfig:
    """A team of config-file users, with the schedule its business-time clock follows; no
    working hours: around the clock."""

    id: str
    members: tuple[str, ...] = ()
    timezone: str | None = None  # IANA name; required with working_hours
    working_hours: Mapping[int, tuple[tuple[time, time], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    days_off: DaysOffSpec = DaysOffSpec()  # own holidays (else the daemon's) and days off besides the daemon's
    min_available: int = 0  # fewest members that should be available (0: no minimum; see coverage)


@dataclass(frozen=True, slots=True)
class SinkConfig:
    type: str  # webhook | stdout | redis | nats
    name: str
    options: Mapping[str, Any] = field(default_factory=Options)


@dataclass(frozen=True, slots=True)
class Config:
    path: Path  # absolute; symlinks are kept so relative paths follow the visible folder
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    accounts: Mapping[str, AccountConfig] = field(default_factory=lambda: MappingProxyType({}))
    users: tuple[UserConfig, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    teams: tuple[TeamConfig, ...] = ()
    inline_secrets: tuple[str, ...] = ()  # key paths of secrets written in the file (not as KEY_env)




def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError when malformed."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", listen)
    if match is None:
        raise ValueError(listen)
    host = match[1] or match[3]
    port = int(match[2] or match[4])
    if port > 65535:
        raise ValueError(listen)
    return host, port

