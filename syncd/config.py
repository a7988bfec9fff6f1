"""The operator's config file: finding it, reading it, and checking every key.

One TOML file (DESIGN §4) describes the daemon, the HTTP API, the calendar accounts, the
users with their linked calendars, and the status sinks. `load_config` turns it into frozen
dataclasses, or raises `ConfigError` with one line of the form::

    <file>: <key path>: <what is wrong>

e.g. ``syncd.toml: users[1].timezone: unknown time zone 'Europe/Stokholm'``. Checking
stops at the first mistake. Unknown keys are rejected everywhere, so a typo never silently
falls back to a default.

Secrets: any key ``X_env`` names an environment variable whose value becomes key ``X``
(``password_env = "SYNCD_CALDAV_PASSWORD"`` gives ``password``). Secret values never appear
in error messages or in ``repr`` of the loaded config.

Relative paths (a ``sqlite:///`` database, a local account's ``root``, key/certificate
files) are resolved against the config file's folder, not the working directory, so the
daemon means the same files however it is started.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.registry import PROVIDERS
from syncd.core.calendars import OooRules
from syncd.core.errors import ConfigError
from syncd.core.hours import DAYS, parse_day
from syncd.core.options import Option, OptionError
from syncd.core.time import parse_duration

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ENV_CONFIG",
    "AccountConfig",
    "ApiConfig",
    "ApiToken",
    "CalendarLinkConfig",
    "Config",
    "DaemonConfig",
    "Options",
    "SinkConfig",
    "UserConfig",
    "find_config_path",
    "load_config",
    "parse_duration",
    "redact_url",
]

ENV_CONFIG = "SYNCD_CONFIG"
DEFAULT_CONFIG_NAME = "syncd.toml"

CONFLICT_POLICIES = ("newest", "calendar", "helpdesk")
DIRECTIONS = ("two-way", "pull", "push")
SCOPES = ("read", "write", "admin")
SINK_TYPES = ("webhook", "stdout", "redis", "nats")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Keys whose values are secrets even when written literally in the file.
SECRET_KEYS = frozenset({"password", "client_secret", "secret", "token", "token_key"})



# --------------------------------------------------------------------------- the model


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
    mass_delete_share: float = 0.5  # hold a sync that would delete more than this share of blocks
    mass_delete_min: int = 3  # ... and at least this many (small calendars are not held)
    dead_letter_after: timedelta = timedelta(hours=24)
    sweep_interval: timedelta = timedelta(minutes=5)
    rotation_recent_window: timedelta = timedelta(days=7)  # "fewest assignments recently" looks this far back
    max_occurrences: int = 1000  # per recurring series, inside the sync window
    log_level: str = "INFO"
    lease_ttl: timedelta = timedelta(seconds=60)  # a dead replica's links go to the others after this

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

    @property
    def host(self) -> str:
        """The host part of `listen`, without IPv6 brackets."""
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


@dataclass(frozen=True, slots=True)
class AccountConfig:
    name: str
    provider: str  # local | caldav | google | outlook | memory
    options: Mapping[str, Any] = field(default_factory=Options)  # provider keys, secrets resolved
    ooo_rules: OooRules = field(default_factory=OooRules)


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
    timezone: str  # IANA name, checked against zoneinfo
    working_hours: Mapping[int, tuple[tuple[time, time], ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    calendars: tuple[CalendarLinkConfig, ...] = ()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


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


# --------------------------------------------------------------------------- finding the file


def find_config_path(explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file to read: ``explicit`` (``-c/--config``), else ``$SYNCD_CONFIG``, else
    ``./syncd.toml``. A place that is given but missing is an error (no silent fall-through).

    The returned path is as given (maybe relative), so messages show what the operator typed.
    """
    env = os.environ if environ is None else environ
    if explicit is not None and os.fspath(explicit) != "":
        return _existing_file(Path(os.path.expanduser(os.fspath(explicit))), "given with -c/--config")
    from_env = env.get(ENV_CONFIG, "")
    if from_env:
        return _existing_file(Path(os.path.expanduser(from_env)), f"named by ${ENV_CONFIG}")
    default = Path(DEFAULT_CONFIG_NAME)
    if default.is_file():
        return default
    raise ConfigError(
        f"no config file found (looked at: -c/--config: not given; ${ENV_CONFIG}: not set; "
        f"./{DEFAULT_CONFIG_NAME} in {Path.cwd()}: no such file); give one with -c PATH"
    )


def _existing_file(path: Path, origin: str) -> Path:
    if path.is_file():
        return path
    what = "is not a file" if path.exists() else "does not exist"
    raise ConfigError(f"{path}: config file {origin} {what}")


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Find (see `find_config_path`), read and check the config; secrets come from ``environ``
    (default: ``os.environ``). Raises `ConfigError` with a one-line message."""
    env = os.environ if environ is None else environ
    found = find_config_path(path, env)
    label = str(found)
    try:
        text = found.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: {_toml_error(str(exc), text)}") from None
    where = found.absolute()
    return _Loader(label, where.parent, env).config(_Table(label, "", data), where)


def _toml_error(message: str, text: str) -> str:
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if match:
        return f"line {match[1]}, column {match[2]}: TOML syntax error: {message[: match.start()]}"
    match = re.search(r"\s*\(at end of document\)$", message)
    if match:
        lines = len(text.splitlines()) or 1
        return f"line {lines} (end of file): TOML syntax error: {message[: match.start()]}"
    return f"TOML syntax error: {message}"


_MISSING: Any = object()


def _join(parent: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else '"' + key.replace('"', '\\"') + '"'
    return f"{parent}.{shown}" if parent else shown


def _show_value(value: object) -> str:
    """A TOML value as an operator would recognise it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def _describe_type(value: object) -> str:
    """A value's kind only: used where the value may be a secret."""
    for kind, name in ((bool, "true/false"), (str, "a string"), (int, "an integer"), (float, "a number")):
        if isinstance(value, kind):
            return name
    return _show_value(value)


class _Table:
    """One TOML table being read: knows its key path, so every complaint names it."""

    def __init__(self, file: str, path: str, data: Mapping[str, Any]) -> None:
        self.file, self.path, self.data = file, path, data

    def key(self, key: str) -> str:
        return _join(self.path, key)

    def fail(self, key: str, message: str) -> NoReturn:
        _fail(self.file, self.key(key), message)

    def allow(self, keys: Iterable[str]) -> None:
        allowed = set(keys)
        for key in self.data:
            if key not in allowed:
                self.fail(key, "unknown key")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            self.fail(key, "missing")
        return default

    def _typed(self, key: str, kind: type | tuple[type, ...], expected: str, default: Any) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        # bool is an int subclass in Python but never a number in TOML.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            shown = _describe_type(value) if key in SECRET_KEYS else _show_value(value)
            self.fail(key, f"expected {expected}, got {shown}")
        return value

    def string(self, key: str, default: Any = _MISSING, *, empty: bool = False) -> Any:
        value = self._typed(key, str, "a string", default)
        if isinstance(value, str) and not empty and key in self.data and not value.strip():
            self.fail(key, "must not be empty")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, bool, "true or false", default)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> Any:
        value = self._typed(key, int, "an integer", default)
        if minimum is not None and key in self.data and value < minimum:
            self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        value = self._typed(key, (int, float), "a number", default)
        return float(value) if value is not None else None

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _MISSING) -> Any:
        value = self.string(key, default)
        if key in self.data and value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        values = self._typed(key, list, "a list of strings", default)
        if key in self.data:
            for i, item in enumerate(values):
                if not isinstance(item, str):
                    _fail(self.file, f"{self.key(key)}[{i}]", f"expected a string, got {_show_value(item)}")
            return tuple(values)
        return values

    def duration(self, key: str, default: timedelta, *, positive: bool = True) -> timedelta:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(key, f"expected a duration such as \"5m\", got {_show_value(value)}")
        try:
            result = parse_duration(value)
        except ConfigError as exc:
            self.fail(key, str(exc))
        if positive and result <= timedelta(0):
            self.fail(key, f"must be longer than zero, got {_show_value(value)}")
        return result

    def table(self, key: str) -> _Table:
        """The sub-table at ``key`` (an empty one when absent)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_show_value(value)}")
        return _Table(self.file, self.key(key), value)

    def tables(self, key: str) -> list[_Table]:
        """An array of tables (``[[key]]`` or ``key = [{...}, ...]``)."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"expected a list of tables, got {_show_value(value)}")
        out = []
        for i, item in enumerate(value):
            where = f"{self.key(key)}[{i}]"
            if not isinstance(item, dict):
                _fail(self.file, where, f"expected a table, got {_show_value(item)}")
            out.append(_Table(self.file, where, item))
        return out


def _fail(file: str, where: str, message: str) -> NoReturn:
    raise ConfigError(f"{file}: {where}: {message}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


class _Loader:
    def __init__(self, file: str, folder: Path, environ: Mapping[str, str]) -> None:
        self.file, self.folder, self.environ = file, folder, environ

    # -- helpers ---------------------------------------------------------------------------

    def resolve_env(self, table: _Table, targets: Iterable[str]) -> tuple[dict[str, Any], set[str]]:
        """Replace ``X_env`` keys by ``X`` read from the environment.

        Returns the table's data with secrets in place, and the keys that came from the
        environment (they are secrets whatever their name)."""
        data = dict(table.data)
        from_env: set[str] = set()
        allowed = set(targets)
        for key in list(data):
            if not key.endswith("_env"):
                continue
            target = key[: -len("_env")]
            if target not in allowed:
                table.fail(key, "unknown key")
            if target in data:
                table.fail(key, f"give {target} or {key}, not both")
            variable = table.string(key)
            if variable not in self.environ:
                table.fail(key, f"environment variable {variable} is not set")
            if not self.environ[variable]:
                table.fail(key, f"environment variable {variable} is empty")
            del data[key]
            data[target] = self.environ[variable]
            from_env.add(target)
        return data, from_env

    def path(self, value: str) -> str:
        """``value`` made absolute against the config file's folder."""
        return os.path.normpath(self.folder / os.path.expanduser(value))

    def http_url(self, table: _Table, key: str, value: str) -> None:
        if not re.match(r"https?://[^/\s]+", value):
            # No value in the message: webhook and CalDAV URLs often embed a secret.
            table.fail(key, "expected an http:// or https:// URL")

    # -- sections --------------------------------------------------------------------------

    def config(self, root: _Table, where: Path) -> Config:
        root.allow(("daemon", "api", "accounts", "users", "sinks"))
        daemon = self.daemon(root.table("daemon"))
        api = self.api(root.table("api"))
        accounts: dict[str, AccountConfig] = {}
        first_seen: dict[str, str] = {}
        for table in root.tables("accounts"):
            account = self.account(table)
            if account.name in accounts:
                table.fail("name", f"duplicate account name {account.name!r} (also {first_seen[account.name]})")
            accounts[account.name] = account
            first_seen[account.name] = table.path
        users: list[UserConfig] = []
        seen_users: dict[str, str] = {}
        for table in root.tables("users"):
            user = self.user(table, accounts)
            if user.id in seen_users:
                table.fail("id", f"duplicate user id {user.id!r} (also {seen_users[user.id]})")
            seen_users[user.id] = table.path
            users.append(user)
        sinks = self.sinks(root.tables("sinks"))
        return Config(
            path=where,
            daemon=daemon,
            api=api,
            accounts=MappingProxyType(accounts),
            users=tuple(users),
            sinks=sinks,
        )

    def daemon(self, t: _Table) -> DaemonConfig:
        d = DaemonConfig()
        t.allow((
            "database_url", "database_url_env", "poll_interval", "sync_window", "conflict_policy",
            "away_outside_working_hours", "mass_delete_share", "mass_delete_min", "dead_letter_after",
            "sweep_interval", "max_occurrences", "log_level", "rotation_recent_window", "lease_ttl",
        ))
        window = t.table("sync_window")
        window.allow(("past", "future"))
        share = t.number("mass_delete_share", d.mass_delete_share)
        if not 0 < share <= 1:
            shown = _show_value(t.data["mass_delete_share"])
            t.fail("mass_delete_share", f"must be more than 0 and at most 1, got {shown}")
        level = t.string("log_level", d.log_level)
        if level.upper() not in LOG_LEVELS:
            t.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
        data, _ = self.resolve_env(t, ("database_url",))
        url = _Table(t.file, t.path, data).string("database_url", d.database_url)
        return DaemonConfig(
            database_url=self.database_url(t, url),
            poll_interval=t.duration("poll_interval", d.poll_interval),
            sync_window_past=window.duration("past", d.sync_window_past, positive=False),
            sync_window_future=window.duration("future", d.sync_window_future),
            conflict_policy=t.choice("conflict_policy", CONFLICT_POLICIES, d.conflict_policy),
            away_outside_working_hours=t.boolean("away_outside_working_hours", d.away_outside_working_hours),
            mass_delete_share=share,
            mass_delete_min=t.integer("mass_delete_min", d.mass_delete_min, minimum=0),
            dead_letter_after=t.duration("dead_letter_after", d.dead_letter_after),
            sweep_interval=t.duration("sweep_interval", d.sweep_interval),
            rotation_recent_window=t.duration("rotation_recent_window", d.rotation_recent_window),
            max_occurrences=t.integer("max_occurrences", d.max_occurrences, minimum=1),
            log_level=level.upper(),
            lease_ttl=t.duration("lease_ttl", d.lease_ttl),
        )

    def database_url(self, t: _Table, url: str) -> str:
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
            # The URL may carry a password: show only its start.
            t.fail("database_url", "expected a database URL such as sqlite:///syncd.db or postgresql+psycopg://…")
        match = re.fullmatch(r"(sqlite(?:\+\w+)?):///([^?]*)(\?.*)?", url, flags=re.DOTALL)
        if match is None:
            return url
        scheme, file, query = match[1], match[2], match[3] or ""
        if file in ("", ":memory:") or file.startswith("file:") or os.path.isabs(file):
            return url
        return f"{scheme}:///{self.path(file)}{query}"

    def api(self, t: _Table) -> ApiConfig:
        d = ApiConfig()
        t.allow(("listen", "tokens", "public_health"))
        listen = t.string("listen", d.listen)
        try:
            _split_listen(listen)
        except ValueError:
            t.fail("listen", f"bad address {listen!r} (use host:port, e.g. 127.0.0.1:8080)")
        tokens: list[ApiToken] = []
        seen_names: dict[str, str] = {}
        seen_secrets: dict[str, str] = {}
        for table in t.tables("tokens"):
            table.allow(("name", "token", "token_env", "scopes"))
            data, _ = self.resolve_env(table, ("token",))
            resolved = _Table(table.file, table.path, data)
            name = resolved.string("name")
            secret = resolved.string("token")
            scopes = resolved.strings("scopes", ("read",))
            if not scopes:
                table.fail("scopes", f"give at least one of {', '.join(SCOPES)}")
            for scope in scopes:
                if scope not in SCOPES:
                    table.fail("scopes", f"unknown scope {scope!r} (use {', '.join(SCOPES)})")
            if name in seen_names:
                table.fail("name", f"duplicate token name {name!r} (also {seen_names[name]})")
            if secret in seen_secrets:
                # Tokens identify callers; two names for one secret make the audit trail lie.
                table.fail("token", f"same token as {seen_secrets[secret]}")
            seen_names[name] = seen_secrets[secret] = table.path
            tokens.append(ApiToken(name=name, token=secret, scopes=tuple(dict.fromkeys(scopes))))
        return ApiConfig(listen=listen, tokens=tuple(tokens), public_health=t.boolean("public_health", d.public_health))

    def account(self, t: _Table) -> AccountConfig:
        provider = PROVIDERS[t.choice("provider", tuple(PROVIDERS))]
        known = {option.name: option for option in provider.options}
        t.allow(("name", "provider", "ooo_rules", *known, *(f"{k}_env" for k, o in known.items() if o.kind is str)))
        name = t.string("name")
        data, from_env = self.resolve_env(t, (k for k, o in known.items() if o.kind is str))
        resolved = _Table(t.file, t.path, data)
        options = {key: self.option(resolved, option) for key, option in known.items() if key in data}
        rules = OooRules()
        if t.has("ooo_rules"):
            if not provider.ooo_rules:
                users = ", ".join(p.name for p in PROVIDERS.values() if p.ooo_rules)
                t.fail("ooo_rules", f"only used by {users} accounts; {provider.name} marks out-of-office events itself")
            rules = self.ooo_rules(t.table("ooo_rules"))
        try:
            provider.check(options)
        except OptionError as exc:
            t.fail(exc.key, exc.message)
        secret = {k for k, o in known.items() if o.secret} | SECRET_KEYS
        return AccountConfig(name=name, provider=provider.name, options=Options(options, secret=secret | from_env),
                             ooo_rules=rules)

    def option(self, t: _Table, option: Option) -> Any:
        """One provider option, read and checked as its declaration says."""
        key = option.name
        if option.kind is bool:
            return t.boolean(key)
        if option.kind is int:
            low, high = option.limits
            number = t.integer(key, minimum=low)
            if number > high:
                t.fail(key, f"must be at most {high}, got {number}")
            return number
        if option.kind is timedelta:
            return t.duration(key, timedelta(0))
        if option.choices:
            return t.choice(key, option.choices)
        value = t.string(key, empty=True)
        if option.url and value:
            self.http_url(t, key, value)
        if option.file and value:
            value = self.path(value)
        return value

    def ooo_rules(self, t: _Table) -> OooRules:
        t.allow(("categories", "keywords", "all_events"))
        categories = t.strings("categories", ())
        keywords = t.strings("keywords", ())
        for key, values in (("categories", categories), ("keywords", keywords)):
            if any(not v.strip() for v in values):
                # An empty keyword matches every summary: say so rather than mark everything OOO.
                t.fail(key, "contains an empty string (to treat every event as OOO, use all_events = true)")
        return OooRules(categories=categories, keywords=keywords, all_events=t.boolean("all_events", False))

    def user(self, t: _Table, accounts: Mapping[str, AccountConfig]) -> UserConfig:
        t.allow(("id", "email", "timezone", "working_hours", "calendars"))
        user_id = t.string("id")
        email = t.string("email")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            t.fail("email", f"not an email address: {email!r}")
        zone = t.string("timezone")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            t.fail("timezone", f"unknown time zone {zone!r}")
        hours = self.working_hours(t.table("working_hours"))
        links: list[CalendarLinkConfig] = []
        seen: dict[tuple[str, str], str] = {}
        for link_table in t.tables("calendars"):
            link = self.calendar_link(link_table, accounts)
            pair = (link.account, link.calendar)
            if pair in seen:
                link_table.fail("calendar", f"calendar {link.calendar!r} of account {link.account!r} "
                                            f"is already linked (also {seen[pair]})")
            seen[pair] = link_table.path
            links.append(link)
        return UserConfig(id=user_id, email=email, timezone=zone, working_hours=hours, calendars=tuple(links))

    def working_hours(self, t: _Table) -> Mapping[int, tuple[tuple[time, time], ...]]:
        hours: dict[int, tuple[tuple[time, time], ...]] = {}
        for key, value in t.data.items():
            if key not in DAYS:
                t.fail(key, f"unknown day (use {', '.join(DAYS)})")
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(p, str) for p in value))):
                t.fail(key, f"expected a string such as \"09:00-17:00\", got {_show_value(value)}")
            try:
                ranges = parse_day(value)
            except ValueError as exc:
                t.fail(key, str(exc))
            if ranges:
                hours[DAYS.index(key)] = ranges
        return MappingProxyType(dict(sorted(hours.items())))

    def calendar_link(self, t: _Table, accounts: Mapping[str, AccountConfig]) -> CalendarLinkConfig:
        t.allow(("account", "calendar", "sync_ooo", "direction"))
        account = t.string("account")
        if account not in accounts:
            known = ", ".join(accounts) or "none configured"
            t.fail("account", f"unknown account {account!r} (known: {known})")
        default = PROVIDERS[accounts[account].provider].default_calendar or _MISSING
        return CalendarLinkConfig(
            account=account,
            calendar=t.string("calendar", default),
            sync_ooo=t.boolean("sync_ooo", True),
            direction=t.choice("direction", DIRECTIONS, "two-way"),
        )

    def sinks(self, tables: list[_Table]) -> tuple[SinkConfig, ...]:
        explicit: dict[str, str] = {}
        for t in tables:
            if t.has("name"):
                name = t.string("name")
                if name in explicit:
                    t.fail("name", f"duplicate sink name {name!r} (also {explicit[name]})")
                explicit[name] = t.path
        taken = set(explicit)
        counts: dict[str, int] = {}
        sinks: list[SinkConfig] = []
        for t in tables:
            kind = t.choice("type", SINK_TYPES)
            counts[kind] = counts.get(kind, 0) + 1
            if t.has("name"):
                name = t.data["name"]
            else:
                # "webhook", "webhook-2", ...: numbered by position among sinks of its type.
                n = counts[kind]
                name = kind if n == 1 else f"{kind}-{n}"
                while name in taken:
                    n += 1
                    name = f"{kind}-{n}"
                taken.add(name)
            sinks.append(SinkConfig(type=kind, name=name, options=self.sink_options(t, kind)))
        return tuple(sinks)

    def sink_options(self, t: _Table, kind: str) -> Options:
        if kind == "stdout":
            t.allow(("type", "name"))
            return Options()
        if kind in ("redis", "nats"):
            return self.broker_options(t, kind)
        t.allow(("type", "name", "url", "secret", "secret_env", "timeout", "max_attempts", "concurrency", "ca_bundle"))
        data, from_env = self.resolve_env(t, ("secret",))
        resolved = _Table(t.file, t.path, data)
        url = resolved.string("url")
        self.http_url(resolved, "url", url)
        options: dict[str, Any] = {"url": url, "timeout": resolved.duration("timeout", timedelta(seconds=10))}
        if "secret" in data:
            options["secret"] = resolved.string("secret")
        if "max_attempts" in data:
            options["max_attempts"] = resolved.integer("max_attempts", minimum=1)
        if "concurrency" in data:
            options["concurrency"] = resolved.integer("concurrency", minimum=1)
            if options["concurrency"] > 64:
                resolved.fail("concurrency", f"must be at most 64, got {options['concurrency']}")
        if "ca_bundle" in data:
            options["ca_bundle"] = self.path(resolved.string("ca_bundle"))
            if not os.path.isfile(options["ca_bundle"]):
                resolved.fail("ca_bundle", f"no such file: {options['ca_bundle']} (a PEM file of the CAs to trust)")
        return Options(options, secret=SECRET_KEYS | from_env)

    def broker_options(self, t: _Table, kind: str) -> Options:
        """``redis``: url, stream, maxlen (0: no trimming), timeout; ``nats``: url, subject, stream,
        timeout. Only keys given are set (the sink has defaults), except ``timeout``."""
        extra = ("stream", "maxlen") if kind == "redis" else ("subject", "stream")
        t.allow(("type", "name", "url", "url_env", "timeout", *extra))
        data, from_env = self.resolve_env(t, ("url",))
        resolved = _Table(t.file, t.path, data)
        options: dict[str, Any] = {}
        if "url" in data:
            options["url"] = self.broker_url(resolved, kind, resolved.string("url"))
        if kind == "redis":
            if "stream" in data:
                options["stream"] = resolved.string("stream")
            if "maxlen" in data:
                options["maxlen"] = resolved.integer("maxlen", minimum=0)
        else:
            if "subject" in data:
                subject = resolved.string("subject")
                if not re.fullmatch(r"[^.*>\s]+(\.[^.*>\s]+)*", subject):
                    t.fail("subject", f"expected dot-separated tokens without wildcards or spaces, got {subject!r}")
                options["subject"] = subject
            if "stream" in data:
                stream = resolved.string("stream")
                if not re.fullmatch(r"[^.*>/\\\s]+", stream):
                    t.fail("stream", f"a stream name cannot contain spaces, '.', '*', '>', '/' or '\\', got {stream!r}")
                options["stream"] = stream
        options["timeout"] = resolved.duration("timeout", timedelta(seconds=5))
        return Options(options, secret=SECRET_KEYS | from_env)

    def broker_url(self, table: _Table, kind: str, value: str) -> str:
        schemes = ("redis", "rediss", "unix") if kind == "redis" else ("nats", "tls", "ws", "wss")
        # NATS takes several servers separated by commas. No value in the message: URLs may carry a password.
        for url in value.split(",") if kind == "nats" else [value]:
            match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://(\S+)", url.strip())
            if match is None or match[1].lower() not in schemes:
                table.fail("url", f"expected a {kind} URL ({', '.join(s + '://' for s in schemes)})")
        return value


def redact_url(url: str) -> str:
    """``scheme://user:password@host`` → ``scheme://user:***@host``; other text unchanged."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*):[^/@\s]*@", r"\1:***@", url)


def _split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); ValueError when malformed."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.-]+):(\d{1,5})", listen)
    if match is None:
        raise ValueError(listen)
    host = match[1] or match[3]
    port = int(match[2] or match[4])
    if port > 65535:
        raise ValueError(listen)
    return host, port

