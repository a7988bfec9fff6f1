"""The operator's config file: finding it, reading it, and checking every key.

One TOML file describes the daemon, the HTTP API, the calendar accounts, the
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
import sys
import tomllib
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.registry import PROVIDERS
from syncd.config.accounts import AccountsReader
from syncd.config.links import link_problem
from syncd.config.model import (
    CALENDAR_ZONE,
    CONFLICT_POLICIES,
    DEFAULT_CONFIG_NAME,
    DIRECTIONS,
    ENV_CONFIG,
    HOURS_SOURCES,
    LOG_FORMATS,
    LOG_LEVELS,
    SCOPES,
    AccountConfig,
    ApiConfig,
    ApiToken,
    CalendarLinkConfig,
    Config,
    DaemonConfig,
    TeamConfig,
    UserConfig,
    split_listen,
)
from syncd.config.sinks import SinksReader
from syncd.config.table import MISSING, Table, fail, show_value, toml_error
from syncd.core.daysoff import DaysOffProblem, DaysOffSpec, parse_dates, parse_holidays
from syncd.core.errors import ConfigError
from syncd.core.hours import DAYS, parse_day

__all__ = ["find_config_path", "load_config"]

MIN_TOKEN = 24  # characters of an API token
# Shared by every user who sets none (immutable both): a file of 100,000 users held 25 MB of
# empty copies. Zone and account names repeat across users and are interned for the same reason.
_NO_HOURS: Mapping[int, tuple[tuple[time, time], ...]] = MappingProxyType({})
_NO_DAYS_OFF = DaysOffSpec()


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


def public_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be where agents' browsers reach syncd, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        return f"{url!r} is not a URL"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r}: give the https:// address at which agents' browsers reach syncd"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"{url!r}: no query, fragment or user name; just the address (a path is fine)"
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        # One-time links and consent codes travel over it: plain http only on this machine.
        return f"{url!r}: use https:// (plain http:// only for 127.0.0.1 or localhost)"
    return None


def _existing_file(path: Path, origin: str) -> Path:
    if path.is_file():
        return path
    what = "is not a file" if path.exists() else "does not exist"
    raise ConfigError(f"{path}: config file {origin} {what}")


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
        raise ConfigError(f"{label}: {toml_error(str(exc), text)}") from None
    where = found.absolute()
    return Loader(label, where.parent, env).config(Table(label, "", data), where)




class Loader(AccountsReader, SinksReader):
    def config(self, root: Table, where: Path) -> Config:
        root.allow(("daemon", "api", "accounts", "users", "sinks", "teams"))
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
        seen_emails: dict[str, str] = {}
        for table in root.tables("users"):
            user = self.user(table, accounts, daemon.working_hours_from)
            if user.id in seen_users:
                table.fail("id", f"duplicate user id {user.id!r} (also {seen_users[user.id]})")
            if user.email.lower() in seen_emails:
                # The email picks whose calendars syncd reaches: two users with one would share them.
                table.fail("email", f"{user.email!r} is also the email of {seen_emails[user.email.lower()]}; "
                                    "an email belongs to one user")
            seen_users[user.id] = seen_emails[user.email.lower()] = table.path
            users.append(user)
        for table, user in zip(root.tables("users"), users, strict=True):
            if user.replacement == user.id:
                table.fail("replacement", f"{user.id} cannot replace themselves; name another user")
            if user.replacement is not None and user.replacement not in seen_users:
                table.fail("replacement", f"no user {user.replacement!r} in this file; name one of its users")
        sinks = self.sinks(root.tables("sinks"))
        teams: list[TeamConfig] = []
        seen_teams: dict[str, str] = {}
        for table in root.tables("teams"):
            team = self.team(table, seen_users)
            if team.id in seen_teams:
                table.fail("id", f"duplicate team id {team.id!r} (also {seen_teams[team.id]})")
            seen_teams[team.id] = table.path
            teams.append(team)
        return Config(
            path=where,
            daemon=daemon,
            api=api,
            accounts=MappingProxyType(accounts),
            users=tuple(users),
            sinks=sinks,
            teams=tuple(teams),
            inline_secrets=tuple(self.inline_secrets),
        )

    def daemon(self, t: Table) -> DaemonConfig:
        d = DaemonConfig()
        t.allow((
            "database_url", "database_url_env", "poll_interval", "sync_window", "conflict_policy",
            "away_outside_working_hours", "working_hours_from", "working_hours_poll",
            "mass_delete_share", "mass_delete_min", "dead_letter_after",
            "sweep_interval", "max_occurrences", "log_level", "log_format", "rotation_recent_window", "lease_ttl",
            "holidays", "days_off",
        ))
        window = t.table("sync_window")
        window.allow(("past", "future"))
        share = t.number("mass_delete_share", d.mass_delete_share)
        if not 0 < share <= 1:
            shown = show_value(t.data["mass_delete_share"])
            t.fail("mass_delete_share", f"must be more than 0 and at most 1, got {shown}")
        level = t.string("log_level", d.log_level)
        if level.upper() not in LOG_LEVELS:
            t.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}; got {level!r}")
        data, _ = self.resolve_env(t, ("database_url",))
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@", str(t.data.get("database_url", ""))):
            self.note_inline(t, ("database_url",))  # a password inside the URL
        url = Table(t.file, t.path, data).string("database_url", d.database_url)
        return DaemonConfig(
            database_url=self.database_url(t, url),
            poll_interval=t.duration("poll_interval", d.poll_interval),
            sync_window_past=window.duration("past", d.sync_window_past, positive=False),
            sync_window_future=window.duration("future", d.sync_window_future),
            conflict_policy=t.choice("conflict_policy", CONFLICT_POLICIES, d.conflict_policy),
            away_outside_working_hours=t.boolean("away_outside_working_hours", d.away_outside_working_hours),
            working_hours_from=t.choice("working_hours_from", HOURS_SOURCES, d.working_hours_from),
            working_hours_poll=t.duration("working_hours_poll", d.working_hours_poll),
            mass_delete_share=share,
            mass_delete_min=t.integer("mass_delete_min", d.mass_delete_min, minimum=0),
            dead_letter_after=t.duration("dead_letter_after", d.dead_letter_after),
            sweep_interval=t.duration("sweep_interval", d.sweep_interval),
            rotation_recent_window=t.duration("rotation_recent_window", d.rotation_recent_window),
            max_occurrences=t.integer("max_occurrences", d.max_occurrences, minimum=1),
            log_level=level.upper(),
            log_format=t.choice("log_format", LOG_FORMATS, d.log_format),
            lease_ttl=t.duration("lease_ttl", d.lease_ttl),
            days_off=self.days_off(t),
        )

    def database_url(self, t: Table, url: str) -> str:
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

    def api(self, t: Table) -> ApiConfig:
        d = ApiConfig()
        t.allow(("listen", "tokens", "public_health", "public_docs", "public_url", "helpdesk_name"))
        listen = t.string("listen", d.listen)
        try:
            split_listen(listen)
        except ValueError:
            t.fail("listen", f"bad address {listen!r} (use host:port, e.g. 127.0.0.1:8080)")
        tokens: list[ApiToken] = []
        seen_names: dict[str, str] = {}
        seen_secrets: dict[str, str] = {}
        for table in t.tables("tokens"):
            table.allow(("name", "token", "token_env", "scopes"))
            data, _ = self.resolve_env(table, ("token",))
            self.note_inline(table, ("token",))
            resolved = Table(table.file, table.path, data)
            name = resolved.string("name")
            secret = resolved.string("token")
            if len(secret) < MIN_TOKEN:
                # A short token can be guessed; `syncd credentials new-key` prints one of 44.
                table.fail("token", f"is {len(secret)} characters; an API token needs at least {MIN_TOKEN}")
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
        return ApiConfig(listen=listen, tokens=tuple(tokens), public_health=t.boolean("public_health", d.public_health),
                         public_docs=t.boolean("public_docs", d.public_docs), public_url=self.public_url(t),
                         helpdesk_name=t.string("helpdesk_name", d.helpdesk_name))

    def public_url(self, t: Table) -> str | None:
        url = t.string("public_url", None)
        if url is None:
            return None
        problem = public_url_problem(url)
        if problem:
            t.fail("public_url", problem)
        return str(url).rstrip("/")

    def user(self, t: Table, accounts: Mapping[str, AccountConfig], hours_default: str = "config") -> UserConfig:
        t.allow(("id", "email", "timezone", "working_hours", "working_hours_from", "calendars", "holidays", "days_off",
                 "replacement"))
        user_id = t.string("id")
        email = t.string("email")
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            t.fail("email", f"not an email address: {email!r}")
        zone = t.string("timezone")
        hours_from = t.choice("working_hours_from", HOURS_SOURCES, hours_default)
        if zone == CALENDAR_ZONE:
            if hours_from != "calendar":
                t.fail("timezone", '"calendar" takes the zone of the hours the calendar keeps: '
                                   'set working_hours_from = "calendar" too, or give an IANA name')
        else:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                t.fail("timezone", f"unknown time zone {zone!r}")
        hours = self.working_hours(t.table("working_hours"))
        links: list[CalendarLinkConfig] = []
        seen: dict[tuple[str, str], str] = {}
        for link_table in t.tables("calendars"):
            link = self.calendar_link(link_table, accounts)
            problem = link_problem(accounts[link.account], email, link.calendar)
            if problem is not None:
                link_table.fail(*problem)
            pair = (link.account, link.calendar)
            if pair in seen:
                link_table.fail("calendar", f"calendar {link.calendar!r} of account {link.account!r} "
                                            f"is already linked (also {seen[pair]})")
            seen[pair] = link_table.path
            links.append(link)
        return UserConfig(id=user_id, email=email, timezone=sys.intern(zone), working_hours=hours,
                          calendars=tuple(links), days_off=self.days_off(t), replacement=t.string("replacement", None),
                          working_hours_from=hours_from)

    def team(self, t: Table, users: Mapping[str, str]) -> TeamConfig:
        t.allow(("id", "members", "timezone", "working_hours", "holidays", "days_off", "min_available"))
        team_id = t.string("id")
        members = t.strings("members", ())
        for i, member in enumerate(members):
            if member not in users:
                # The file's teams are of the file's users: API users come and go at runtime.
                fail(t.file, f"{t.key('members')}[{i}]", f"unknown user {member!r} (a team in the config file "
                                                         "lists users of the config file)")
        zone = t.string("timezone", None)
        if zone is not None:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                t.fail("timezone", f"unknown time zone {zone!r}")
        hours = self.working_hours(t.table("working_hours"))
        if hours and zone is None:
            t.fail("timezone", "missing: working hours are local times, give the team's IANA zone")
        min_available = t.integer("min_available", 0, minimum=0)
        if min_available > 10_000:
            t.fail("min_available", "at most 10000")
        return TeamConfig(id=team_id, members=tuple(dict.fromkeys(members)), timezone=zone, working_hours=hours,
                          days_off=self.days_off(t), min_available=min_available)

    def days_off(self, t: Table) -> DaysOffSpec:
        """``holidays`` and ``days_off`` of the daemon, a user or a team."""
        holidays = None
        dates: frozenset[date] = frozenset()
        for key in ("holidays", "days_off"):
            if key not in t.data:
                continue
            try:
                if key == "holidays":
                    holidays = parse_holidays(t.data[key])
                else:
                    dates = parse_dates(t.data[key])
            except DaysOffProblem as exc:
                if exc.key.startswith("["):
                    fail(t.file, t.key(key) + exc.key, exc.message)
                if exc.key:
                    Table(t.file, t.key(key), {}).fail(exc.key, exc.message)
                t.fail(key, exc.message)
        return DaysOffSpec(holidays, dates) if holidays is not None or dates else _NO_DAYS_OFF

    def working_hours(self, t: Table) -> Mapping[int, tuple[tuple[time, time], ...]]:
        hours: dict[int, tuple[tuple[time, time], ...]] = {}
        for key, value in t.data.items():
            if key not in DAYS:
                t.fail(key, f"unknown day (use {', '.join(DAYS)})")
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(p, str) for p in value))):
                t.fail(key, f"expected a string such as \"09:00-17:00\", got {show_value(value)}")
            try:
                ranges = parse_day(value)
            except ValueError as exc:
                t.fail(key, str(exc))
            if ranges:
                hours[DAYS.index(key)] = ranges
        return MappingProxyType(dict(sorted(hours.items()))) if hours else _NO_HOURS

    def calendar_link(self, t: Table, accounts: Mapping[str, AccountConfig]) -> CalendarLinkConfig:
        t.allow(("account", "calendar", "sync_ooo", "direction"))
        account = t.string("account")
        if account not in accounts:
            known = ", ".join(accounts) or "none configured"
            t.fail("account", f"unknown account {account!r} (known: {known})")
        default = PROVIDERS[accounts[account].provider].default_calendar or MISSING
        return CalendarLinkConfig(
            account=sys.intern(account),
            calendar=t.string("calendar", default),
            sync_ooo=t.boolean("sync_ooo", True),
            direction=t.choice("direction", DIRECTIONS, "two-way"),
        )

