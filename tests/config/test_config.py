"""The config file: lookup order, defaults, every key's checks and their one-line messages."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import time, timedelta
from pathlib import Path

import pytest

from syncd.config import (
    AccountConfig,
    ApiConfig,
    ApiToken,
    CalendarLinkConfig,
    Config,
    DaemonConfig,
    SinkConfig,
    UserConfig,
    find_config_path,
    load_config,
)
from syncd.core.calendars import OooRules
from syncd.core.errors import ConfigError, SyncdError
from syncd.core.time import parse_duration

SECRETS = {
    "SYNCD_API_TOKEN": "api-token-s3cret-long-enough-24",
    "SYNCD_CALDAV_PASSWORD": "caldav-pw-s3cret",
    "SYNCD_M365_SECRET": "m365-s3cret",
    "SYNCD_WEBHOOK_SECRET": "webhook-s3cret-long-enough-24",
}

# The config sketch operators start from (docs/configuration.md), verbatim apart from the comments.
SKETCH = """
[daemon]
database_url = "sqlite:///syncd.db"          # or postgresql+psycopg://…
poll_interval = "5m"
sync_window = { past = "30d", future = "365d" }
conflict_policy = "newest"                   # newest | calendar | helpdesk
away_outside_working_hours = false

[api]
listen = "127.0.0.1:8080"
tokens = [{ name = "helpdesk", token_env = "SYNCD_API_TOKEN", scopes = ["read", "write"] }]

[[accounts]]
name = "folder"
provider = "local"
root = "calendars"

[[accounts]]
name = "nextcloud"
provider = "caldav"
url = "https://cloud.example.com/remote.php/dav"
username = "syncd"
password_env = "SYNCD_CALDAV_PASSWORD"

[[accounts]]
name = "workspace"
provider = "google"
service_account_file = "google-sa.json"
api_endpoint = "https://www.googleapis.com/calendar/v3/"
batch_uri = "https://www.googleapis.com/batch/calendar/v3"

[[accounts]]
name = "m365"
provider = "outlook"
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret_env = "SYNCD_M365_SECRET"
authority = "https://login.microsoftonline.com/contoso.onmicrosoft.com"
graph_url = "https://graph.microsoft.com/v1.0"
ca_bundle = ""

[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"
working_hours = { mon = "09:00-17:00", tue = "09:00-17:00" }
calendars = [
  { account = "folder", calendar = "alice", sync_ooo = true, direction = "two-way" },
]

[[sinks]]
type = "webhook"
url = "https://helpdesk.example.com/hooks/syncd"
secret_env = "SYNCD_WEBHOOK_SECRET"

[[sinks]]
type = "stdout"
"""

ACCOUNTS = """
[[accounts]]
name = "folder"
provider = "local"
root = "calendars"

[[accounts]]
name = "m365"
provider = "outlook"
tenant_id = "contoso.onmicrosoft.com"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret = "s3cret"
"""


class Files:
    """Writes ``syncd.toml`` in a temporary working directory and loads it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, text: str, name: str = "syncd.toml") -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def load(self, text: str, environ: Mapping[str, str] | None = None) -> Config:
        self.write(text)
        return load_config("syncd.toml", environ=SECRETS if environ is None else environ)

    def error(self, text: str, environ: Mapping[str, str] | None = None) -> str:
        with pytest.raises(ConfigError) as caught:
            self.load(text, environ)
        message = str(caught.value)
        assert "\n" not in message
        return message


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    monkeypatch.chdir(tmp_path)
    return Files(tmp_path)


def user(extra: str = "", **fields: str) -> str:
    """An ``[[users]]`` table after the two accounts above; ``fields`` override."""
    values = {"id": '"alice"', "email": '"alice@example.com"', "timezone": '"Europe/Stockholm"', **fields}
    body = "\n".join(f"{k} = {v}" for k, v in values.items() if v != "")
    return f"{ACCOUNTS}\n[[users]]\n{body}\n{extra}\n"


# --------------------------------------------------------------------------- defaults


def test_empty_file_gives_all_defaults(files: Files, tmp_path: Path) -> None:
    config = files.load("")
    assert config.path == tmp_path / "syncd.toml"
    assert config.path.is_absolute()
    assert config.daemon == DaemonConfig(database_url=f"sqlite:///{tmp_path}/syncd.db")
    assert config.api == ApiConfig()
    assert dict(config.accounts) == {}
    assert config.users == ()
    assert config.sinks == ()


def test_daemon_defaults_match_the_spec() -> None:
    d = DaemonConfig()
    assert d.database_url == "sqlite:///syncd.db"
    assert d.poll_interval == timedelta(minutes=5)
    assert d.sync_window_past == timedelta(days=30)
    assert d.sync_window_future == timedelta(days=365)
    assert d.conflict_policy == "newest"
    assert d.away_outside_working_hours is False
    assert d.mass_delete_share == 0.5
    assert d.mass_delete_min == 3
    assert d.dead_letter_after == timedelta(hours=24)
    assert d.sweep_interval == timedelta(minutes=5)
    assert d.max_occurrences == 1000
    assert d.log_level == "INFO"


def test_api_defaults_match_the_spec() -> None:
    assert ApiConfig() == ApiConfig(listen="127.0.0.1:8080", tokens=(), public_health=True)
    assert (ApiConfig().host, ApiConfig().port) == ("127.0.0.1", 8080)


def test_config_is_frozen(files: Files) -> None:
    config = files.load(user())
    with pytest.raises(AttributeError):
        config.daemon.poll_interval = timedelta(1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.accounts["x"] = config.accounts["folder"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.users[0].working_hours[5] = ()  # type: ignore[index]


def test_config_error_is_a_syncd_error() -> None:
    assert issubclass(ConfigError, SyncdError)


# --------------------------------------------------------------------------- the full example


def test_design_example_parses(files: Files, tmp_path: Path) -> None:
    config = files.load(SKETCH)
    assert config.daemon == DaemonConfig(database_url=f"sqlite:///{tmp_path}/syncd.db")
    assert config.api.tokens == (ApiToken("helpdesk", "api-token-s3cret-long-enough-24", ("read", "write")),)
    assert list(config.accounts) == ["folder", "nextcloud", "workspace", "m365"]
    assert config.accounts["folder"] == AccountConfig(
        name="folder", provider="local", options={"root": str(tmp_path / "calendars")}, ooo_rules=OooRules()
    )
    assert dict(config.accounts["nextcloud"].options) == {
        "url": "https://cloud.example.com/remote.php/dav",
        "username": "syncd",
        "password": "caldav-pw-s3cret",
    }
    assert dict(config.accounts["workspace"].options) == {
        "service_account_file": str(tmp_path / "google-sa.json"),
        "api_endpoint": "https://www.googleapis.com/calendar/v3/",
        "batch_uri": "https://www.googleapis.com/batch/calendar/v3",
    }
    m365 = config.accounts["m365"].options
    assert m365["client_secret"] == "m365-s3cret"
    assert m365["ca_bundle"] == ""  # empty means "none", not the config folder
    assert m365["tenant_id"] == "contoso.onmicrosoft.com"
    assert config.users == (
        UserConfig(
            id="alice",
            email="alice@example.com",
            timezone="Europe/Stockholm",
            working_hours={0: ((time(9), time(17)),), 1: ((time(9), time(17)),)},
            calendars=(CalendarLinkConfig("folder", "alice", True, "two-way"),),
        ),
    )
    assert config.users[0].zone.key == "Europe/Stockholm"
    assert config.sinks == (
        SinkConfig(
            "webhook",
            "webhook",
            {
                "url": "https://helpdesk.example.com/hooks/syncd",
                "secret": "webhook-s3cret-long-enough-24",
                "timeout": timedelta(seconds=10),
            },
        ),
        SinkConfig("stdout", "stdout", {}),
    )


def test_every_daemon_key_is_read(files: Files) -> None:
    config = files.load("""
        [daemon]
        database_url = "postgresql+psycopg://syncd@db/syncd"
        poll_interval = "1m"
        sync_window = { past = "0s", future = "2w" }
        conflict_policy = "helpdesk"
        away_outside_working_hours = true
        mass_delete_share = 1
        mass_delete_min = 0
        dead_letter_after = "2d"
        sweep_interval = 90
        max_occurrences = 50
        log_level = "debug"
    """)
    assert config.daemon == DaemonConfig(
        database_url="postgresql+psycopg://syncd@db/syncd",
        poll_interval=timedelta(minutes=1),
        sync_window_past=timedelta(0),
        sync_window_future=timedelta(weeks=2),
        conflict_policy="helpdesk",
        away_outside_working_hours=True,
        mass_delete_share=1.0,
        mass_delete_min=0,
        dead_letter_after=timedelta(days=2),
        sweep_interval=timedelta(seconds=90),
        max_occurrences=50,
        log_level="DEBUG",
    )
    assert isinstance(config.daemon.mass_delete_share, float)


# --------------------------------------------------------------------------- finding the file


def test_lookup_prefers_the_explicit_argument(files: Files) -> None:
    files.write("", "syncd.toml")
    files.write("", "env.toml")
    files.write("", "explicit.toml")
    assert find_config_path("explicit.toml", {"SYNCD_CONFIG": "env.toml"}) == Path("explicit.toml")


def test_lookup_uses_the_environment_next(files: Files) -> None:
    files.write("", "syncd.toml")
    files.write("", "env.toml")
    assert find_config_path(None, {"SYNCD_CONFIG": "env.toml"}) == Path("env.toml")


def test_lookup_falls_back_to_the_working_directory(files: Files) -> None:
    files.write("")
    assert find_config_path(None, {}) == Path("syncd.toml")
    assert find_config_path(None, {"SYNCD_CONFIG": ""}) == Path("syncd.toml")  # empty counts as unset


def test_lookup_reads_os_environ_by_default(files: Files, monkeypatch: pytest.MonkeyPatch) -> None:
    files.write("", "env.toml")
    monkeypatch.setenv("SYNCD_CONFIG", "env.toml")
    assert find_config_path(None) == Path("env.toml")


def test_lookup_found_nothing_says_where_it_looked(files: Files, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        find_config_path(None, {})
    assert str(caught.value) == (
        "no config file found (looked at: -c/--config: not given; $SYNCD_CONFIG: not set; "
        f"./syncd.toml in {tmp_path}: no such file); give one with -c PATH"
    )


def test_lookup_missing_explicit_file_does_not_fall_through(files: Files) -> None:
    files.write("")
    with pytest.raises(ConfigError) as caught:
        find_config_path("other.toml", {})
    assert str(caught.value) == "other.toml: config file given with -c/--config does not exist"


def test_lookup_missing_env_file_does_not_fall_through(files: Files) -> None:
    files.write("")
    with pytest.raises(ConfigError) as caught:
        find_config_path(None, {"SYNCD_CONFIG": "gone.toml"})
    assert str(caught.value) == "gone.toml: config file named by $SYNCD_CONFIG does not exist"


def test_lookup_rejects_a_directory(files: Files, tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    with pytest.raises(ConfigError) as caught:
        find_config_path("conf.d", {})
    assert str(caught.value) == "conf.d: config file given with -c/--config is not a file"


def test_load_config_without_a_path_uses_the_lookup(files: Files, tmp_path: Path) -> None:
    files.write('[daemon]\npoll_interval = "7m"\n', "elsewhere/my.toml")
    config = load_config(environ={"SYNCD_CONFIG": "elsewhere/my.toml"})
    assert config.path == tmp_path / "elsewhere" / "my.toml"
    assert config.daemon.poll_interval == timedelta(minutes=7)


def test_load_config_accepts_a_path_object(files: Files, tmp_path: Path) -> None:
    path = files.write("")
    assert load_config(path, environ={}).path == tmp_path / "syncd.toml"


# --------------------------------------------------------------------------- reading the file


def test_toml_syntax_error_names_the_line(files: Files) -> None:
    message = files.error('[daemon]\npoll_interval = "5m"\nconflict_policy = newest\n')
    assert message == "syncd.toml: line 3, column 19: TOML syntax error: Invalid value"


def test_toml_syntax_error_at_end_of_file_names_the_last_line(files: Files) -> None:
    assert files.error("[daemon]\npoll_interval =") == (
        "syncd.toml: line 2 (end of file): TOML syntax error: Invalid value"
    )


def test_toml_duplicate_table_is_a_syntax_error(files: Files) -> None:
    assert files.error("[daemon]\n[api]\n[daemon]\n") == (
        "syncd.toml: line 3, column 8: TOML syntax error: Cannot declare ('daemon',) twice"
    )


def test_file_that_is_not_utf8(files: Files, tmp_path: Path) -> None:
    (tmp_path / "syncd.toml").write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_config("syncd.toml", environ={})
    assert str(caught.value) == "syncd.toml: not UTF-8 text (byte 5)"


def test_messages_use_the_path_as_given(files: Files) -> None:
    files.write("[daemon]\npol_interval = 1\n", "conf/x.toml")
    with pytest.raises(ConfigError) as caught:
        load_config("conf/x.toml", environ={})
    assert str(caught.value) == "conf/x.toml: daemon.pol_interval: unknown key"


# --------------------------------------------------------------------------- unknown keys and types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("colour = 1", "colour: unknown key"),
        ("[daemon]\npol_interval = '5m'", "daemon.pol_interval: unknown key"),
        ("[daemon]\nsync_window = { past = '1d', futur = '2d' }", "daemon.sync_window.futur: unknown key"),
        ("[api]\nport = 80", "api.port: unknown key"),
        ("[api]\ntokens = [{ name = 'a', token = 'x', scope = ['read'] }]", "api.tokens[0].scope: unknown key"),
        ("[[accounts]]\nname = 'a'\nprovider = 'local'\nroot = 'r'\nurl = 'https://x'", "accounts[0].url: unknown key"),
        ("[[accounts]]\nname = 'a'\nprovider = 'memory'\nroot = 'r'", "accounts[0].root: unknown key"),
        ("[[accounts]]\nname = 'a'\nprovider = 'caldav'\nurl = 'https://x'\nooo_rules = { keyword = ['x'] }",
         "accounts[0].ooo_rules.keyword: unknown key"),
        ("[[sinks]]\ntype = 'stdout'\nurl = 'https://x'", "sinks[0].url: unknown key"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nretries = 3", "sinks[0].retries: unknown key"),
        ('[daemon]\n"poll interval" = 1', 'daemon."poll interval": unknown key'),
    ],
)
def test_unknown_keys_are_rejected(files: Files, text: str, expected: str) -> None:
    assert files.error(text) == f"syncd.toml: {expected}"


def test_unknown_keys_in_users_and_links(files: Files) -> None:
    assert files.error(user(nickname='"al"')) == "syncd.toml: users[0].nickname: unknown key"
    assert files.error(user(calendars='[{ account = "folder", calendar = "a", sync = true }]')) == (
        "syncd.toml: users[0].calendars[0].sync: unknown key"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("daemon = 3", "daemon: expected a table, got 3"),
        ("[daemon]\npoll_interval = true", 'daemon.poll_interval: expected a duration such as "5m", got true'),
        ("[daemon]\npoll_interval = 1.5", 'daemon.poll_interval: expected a duration such as "5m", got 1.5'),
        ("[daemon]\ndatabase_url = 3", "daemon.database_url: expected a string, got 3"),
        ("[daemon]\naway_outside_working_hours = 'yes'",
         "daemon.away_outside_working_hours: expected true or false, got 'yes'"),
        ("[daemon]\nmass_delete_min = '3'", "daemon.mass_delete_min: expected an integer, got '3'"),
        ("[daemon]\nmass_delete_min = true", "daemon.mass_delete_min: expected an integer, got true"),
        ("[daemon]\nmass_delete_share = '1'", "daemon.mass_delete_share: expected a number, got '1'"),
        ("[daemon]\nmax_occurrences = 1.0", "daemon.max_occurrences: expected an integer, got 1.0"),
        ("[daemon]\nsync_window = '30d'", "daemon.sync_window: expected a table, got '30d'"),
        ("[daemon]\nlog_level = [1]", "daemon.log_level: expected a string, got a list"),
        ("[api]\npublic_health = 1", "api.public_health: expected true or false, got 1"),
        ("[api]\ntokens = { name = 'x' }", "api.tokens: expected a list of tables, got a table"),
        ("[api]\ntokens = ['x']", "api.tokens[0]: expected a table, got 'x'"),
        ("accounts = 1", "accounts: expected a list of tables, got 1"),
        ("users = [1]", "users[0]: expected a table, got 1"),
        ("[[accounts]]\nname = 3\nprovider = 'memory'", "accounts[0].name: expected a string, got 3"),
        ("[[accounts]]\nname = 2024-01-01\nprovider = 'memory'",
         "accounts[0].name: expected a string, got a date/time (2024-01-01)"),
        ("[[accounts]]\nname = 'a'\nprovider = 'outlook'\nautomatic_replies = 'yes'",
         "accounts[0].automatic_replies: expected true or false, got 'yes'"),
        ("[[accounts]]\nname = 'a'\nprovider = 'caldav'\nurl = 'https://x'\nooo_rules = { keywords = 'x' }",
         "accounts[0].ooo_rules.keywords: expected a list of strings, got 'x'"),
        ("[[accounts]]\nname = 'a'\nprovider = 'caldav'\nurl = 'https://x'\nooo_rules = { categories = ['a', 3] }",
         "accounts[0].ooo_rules.categories[1]: expected a string, got 3"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nmax_attempts = '5'",
         "sinks[0].max_attempts: expected an integer, got '5'"),
    ],
)
def test_wrong_types_are_rejected(files: Files, text: str, expected: str) -> None:
    assert files.error(text) == f"syncd.toml: {expected}"


# --------------------------------------------------------------------------- daemon values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('poll_interval = "5 minutes"', "daemon.poll_interval: bad duration '5 minutes' (use e.g. 30s, 5m, 2h, 1d)"),
        ('poll_interval = "0s"', "daemon.poll_interval: must be longer than zero, got '0s'"),
        ("poll_interval = 0", "daemon.poll_interval: must be longer than zero, got 0"),
        ("poll_interval = -5", "daemon.poll_interval: bad duration -5 (use e.g. 30s, 5m, 2h, 1d)"),
        ('sweep_interval = "5"', None),
        ('sync_window = { future = "0d" }', "daemon.sync_window.future: must be longer than zero, got '0d'"),
        ('sync_window = { past = "a while" }',
         "daemon.sync_window.past: bad duration 'a while' (use e.g. 30s, 5m, 2h, 1d)"),
        ('dead_letter_after = "1y"', "daemon.dead_letter_after: bad duration '1y' (use e.g. 30s, 5m, 2h, 1d)"),
        ('conflict_policy = "latest"',
         "daemon.conflict_policy: must be one of newest, calendar, helpdesk; got 'latest'"),
        ("mass_delete_share = 0", "daemon.mass_delete_share: must be more than 0 and at most 1, got 0"),
        ("mass_delete_share = 1.5", "daemon.mass_delete_share: must be more than 0 and at most 1, got 1.5"),
        ("mass_delete_min = -1", "daemon.mass_delete_min: must be at least 0, got -1"),
        ("max_occurrences = 0", "daemon.max_occurrences: must be at least 1, got 0"),
        ('log_level = "LOUD"', "daemon.log_level: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL; got 'LOUD'"),
        ('database_url = "syncd.db"',
         "daemon.database_url: expected a database URL such as sqlite:///syncd.db or postgresql+psycopg://…"),
    ],
)
def test_daemon_values_are_checked(files: Files, text: str, expected: str | None) -> None:
    if expected is None:
        assert files.load(f"[daemon]\n{text}\n").daemon.sweep_interval == timedelta(seconds=5)
    else:
        assert files.error(f"[daemon]\n{text}\n") == f"syncd.toml: {expected}"


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("30d", timedelta(days=30)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d 12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
        (" 90m ", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("45", timedelta(seconds=45)),
        (45, timedelta(seconds=45)),
        (0, timedelta(0)),
    ],
)
def test_parse_duration_accepts(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "5", "5 minutes", "m", "5x", "1.5h", "-5m", "30m1h", "5m5m", "1h 30", "h1", "5M", "１m",
     "99999999999999999d", -1, True],
)
def test_parse_duration_rejects(text: str | int) -> None:
    if text == "5":
        assert parse_duration(text) == timedelta(seconds=5)  # control: bare numbers are seconds
        return
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    assert str(caught.value).startswith("bad duration ")
    assert str(caught.value).endswith(" (use e.g. 30s, 5m, 2h, 1d)")


def test_parse_duration_message() -> None:
    with pytest.raises(ConfigError, match=r"^bad duration '5 minutes' \(use e\.g\. 30s, 5m, 2h, 1d\)$"):
        parse_duration("5 minutes")


# --------------------------------------------------------------------------- paths


def test_relative_sqlite_path_is_resolved_against_the_config_folder(files: Files, tmp_path: Path) -> None:
    files.write('[daemon]\ndatabase_url = "sqlite:///var/x.db"\n', "etc/syncd.toml")
    config = load_config("etc/syncd.toml", environ={})
    assert config.daemon.database_url == f"sqlite:///{tmp_path}/etc/var/x.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///../data/x.db?timeout=5", "sqlite:///{root}/data/x.db?timeout=5"),
        ("sqlite+pysqlite:///x.db", "sqlite+pysqlite:///{root}/etc/x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://u@localhost/syncd", "postgresql+psycopg://u@localhost/syncd"),
    ],
)
def test_database_urls(files: Files, tmp_path: Path, url: str, expected: str) -> None:
    files.write(f'[daemon]\ndatabase_url = "{url}"\n', "etc/syncd.toml")
    config = load_config("etc/syncd.toml", environ={})
    assert config.daemon.database_url == expected.format(root=tmp_path)


def test_local_root_is_resolved_against_the_config_folder(
    files: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files.write("[[accounts]]\nname = 'f'\nprovider = 'local'\nroot = 'cals'\n", "etc/syncd.toml")
    monkeypatch.chdir("/")  # the working directory must not matter
    config = load_config(tmp_path / "etc" / "syncd.toml", environ={})
    assert config.accounts["f"].options["root"] == str(tmp_path / "etc" / "cals")


def test_absolute_local_root_is_kept(files: Files) -> None:
    config = files.load("[[accounts]]\nname = 'f'\nprovider = 'local'\nroot = '/srv/cals/'\n")
    assert config.accounts["f"].options["root"] == "/srv/cals"


def test_symlinked_config_keeps_its_visible_folder(files: Files, tmp_path: Path) -> None:
    # Kubernetes mounts config maps as symlinks into a hidden, changing folder.
    real = files.write("[[accounts]]\nname = 'f'\nprovider = 'local'\nroot = 'cals'\n", "..data/syncd.toml")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "syncd.toml").symlink_to(real)
    config = load_config("etc/syncd.toml", environ={})
    assert config.path == tmp_path / "etc" / "syncd.toml"
    assert config.accounts["f"].options["root"] == str(tmp_path / "etc" / "cals")


# --------------------------------------------------------------------------- api


def test_api_tokens_and_listen(files: Files) -> None:
    config = files.load("""
        [api]
        listen = "[::1]:0"
        public_health = false
        tokens = [
          { name = "helpdesk", token_env = "SYNCD_API_TOKEN", scopes = ["read", "write", "read"] },
          { name = "ops", token = "literal-token-of-24-chars-or-more" },
        ]
    """)
    assert config.api.listen == "[::1]:0"
    assert (config.api.host, config.api.port) == ("::1", 0)
    assert config.api.public_health is False
    assert config.api.tokens == (
        ApiToken("helpdesk", "api-token-s3cret-long-enough-24", ("read", "write")),
        ApiToken("ops", "literal-token-of-24-chars-or-more", ("read",)),  # scopes default to read only
    )


@pytest.mark.parametrize("listen", ["8080", "localhost", ":8080", "host:99999", "a b:1", "[::1]", "::1:80"])
def test_api_listen_is_checked(files: Files, listen: str) -> None:
    assert files.error(f'[api]\nlisten = "{listen}"\n') == (
        f"syncd.toml: api.listen: bad address '{listen}' (use host:port, e.g. 127.0.0.1:8080)"
    )


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("{ token = 'x' }", "api.tokens[0].name: missing"),
        ("{ name = 'a' }", "api.tokens[0].token: missing"),
        ("{ name = 'a', token = 'x-token-of-24-characters!', scopes = [] }",
         "api.tokens[0].scopes: give at least one of read, write, admin"),
        ("{ name = 'a', token = 'x-token-of-24-characters!', scopes = ['root'] }",
         "api.tokens[0].scopes: unknown scope 'root' (use read, write, admin)"),
        ("{ name = 'a', token = 'x', token_env = 'SYNCD_API_TOKEN' }",
         "api.tokens[0].token_env: give token or token_env, not both"),
        ("{ name = 'a', token_env = 'NOPE' }", "api.tokens[0].token_env: environment variable NOPE is not set"),
        ("{ name = 'a', token_env = 3 }", "api.tokens[0].token_env: expected a string, got 3"),
        ("{ name = 'a', token = 7 }", "api.tokens[0].token: expected a string, got an integer"),
    ],
)
def test_api_token_mistakes(files: Files, token: str, expected: str) -> None:
    assert files.error(f"[api]\ntokens = [{token}]\n") == f"syncd.toml: {expected}"


def test_api_duplicate_token_names(files: Files) -> None:
    assert files.error("[api]\ntokens = [{ name = 'a', token = 'x-token-of-24-characters!' }, "
                       "{ name = 'a', token = 'y-token-of-24-characters!' }]\n") == (
        "syncd.toml: api.tokens[1].name: duplicate token name 'a' (also api.tokens[0])"
    )


def test_api_same_secret_twice_is_rejected_without_showing_it(files: Files) -> None:
    message = files.error(
        "[api]\ntokens = [{ name = 'a', token_env = 'SYNCD_API_TOKEN' }, "
        "{ name = 'b', token = 'api-token-s3cret-long-enough-24' }]\n"
    )
    assert message == "syncd.toml: api.tokens[1].token: same token as api.tokens[0]"


# --------------------------------------------------------------------------- accounts


def test_account_mistakes_missing_and_unknown(files: Files) -> None:
    assert files.error("[[accounts]]\nprovider = 'memory'\n") == "syncd.toml: accounts[0].name: missing"
    assert files.error("[[accounts]]\nname = 'a'\n") == "syncd.toml: accounts[0].provider: missing"
    assert files.error("[[accounts]]\nname = 'a'\nprovider = 'exchange'\n") == (
        "syncd.toml: accounts[0].provider: must be one of local, caldav, google, outlook, memory; got 'exchange'"
    )
    assert files.error("[[accounts]]\nname = 'a'\nprovider = 'local'\n") == (
        "syncd.toml: accounts[0].root: missing (the folder holding one sub-folder per calendar)"
    )
    assert files.error("[[accounts]]\nname = 'a'\nprovider = 'caldav'\n") == "syncd.toml: accounts[0].url: missing"
    assert files.error("[[accounts]]\nname = ''\nprovider = 'memory'\n") == (
        "syncd.toml: accounts[0].name: must not be empty"
    )


def test_account_urls_must_be_http(files: Files) -> None:
    assert files.error("[[accounts]]\nname = 'a'\nprovider = 'caldav'\nurl = 'cloud.example.com/dav'\n") == (
        "syncd.toml: accounts[0].url: expected an http:// or https:// URL"
    )
    assert files.error("[[accounts]]\nname = 'g'\nprovider = 'outlook'\ngraph_url = 'ftp://x'\n") == (
        "syncd.toml: accounts[0].graph_url: expected an http:// or https:// URL"
    )


def test_duplicate_account_names(files: Files) -> None:
    assert files.error(ACCOUNTS + "\n[[accounts]]\nname = 'folder'\nprovider = 'memory'\n") == (
        "syncd.toml: accounts[2].name: duplicate account name 'folder' (also accounts[0])"
    )


def test_every_provider_option_is_accepted(files: Files, tmp_path: Path) -> None:
    config = files.load("""
        [[accounts]]
        name = "g"
        provider = "google"
        service_account_file = "sa.json"
        api_endpoint = "http://127.0.0.1:9/calendar/v3/"
        batch_uri = "http://127.0.0.1:9/batch"
        credentials_file = "/etc/creds.json"
        client_id = "id"
        client_secret = "literal"
        subject_domain = "example.com"
        token_key = "k"

        [[accounts]]
        name = "o"
        provider = "outlook"
        tenant_id = "t"
        client_id = "c"
        client_secret_env = "SYNCD_M365_SECRET"
        authority = "https://login.example"
        graph_url = "https://graph.example/v1.0"
        ca_bundle = "ca.pem"
        certificate_file = "cert.pem"
        token_key = "k"
        automatic_replies = true

        [[accounts]]
        name = "c"
        provider = "caldav"
        url = "http://127.0.0.1:5232/"
        username = "u"
        password = "literal"
        ca_bundle = "/etc/ssl/ca.pem"

        [[accounts]]
        name = "m"
        provider = "memory"
    """)
    g, o, c, m = (config.accounts[n] for n in "gocm")
    assert g.options["service_account_file"] == str(tmp_path / "sa.json")
    assert g.options["credentials_file"] == "/etc/creds.json"
    assert g.options["client_secret"] == "literal"
    assert len(g.options) == 8
    assert o.options["automatic_replies"] is True
    assert o.options["client_secret"] == "m365-s3cret"
    assert o.options["ca_bundle"] == str(tmp_path / "ca.pem")
    assert o.options["certificate_file"] == str(tmp_path / "cert.pem")
    assert len(o.options) == 9
    assert dict(c.options) == {
        "url": "http://127.0.0.1:5232/",
        "username": "u",
        "password": "literal",
        "ca_bundle": "/etc/ssl/ca.pem",
    }
    assert (m.provider, dict(m.options)) == ("memory", {})


def test_any_string_option_may_come_from_the_environment(files: Files) -> None:
    config = files.load(
        "[[accounts]]\nname = 'c'\nprovider = 'caldav'\nurl_env = 'DAV_URL'\nusername_env = 'DAV_USER'\n",
        environ={"DAV_URL": "https://dav.example/", "DAV_USER": "bob"},
    )
    assert dict(config.accounts["c"].options) == {"url": "https://dav.example/", "username": "bob"}


def test_ooo_rules(files: Files) -> None:
    config = files.load("""
        [[accounts]]
        name = "c"
        provider = "caldav"
        url = "https://dav.example/"
        ooo_rules = { categories = ["Vacation", "Semester"], keywords = ["OOO", "ledig"], all_events = false }

        [[accounts]]
        name = "away"
        provider = "local"
        root = "away"
        ooo_rules = { all_events = true }
    """)
    assert config.accounts["c"].ooo_rules == OooRules(("Vacation", "Semester"), ("OOO", "ledig"), False)
    assert config.accounts["away"].ooo_rules == OooRules(all_events=True)


def test_ooo_rules_mistakes(files: Files) -> None:
    assert files.error("[[accounts]]\nname = 'g'\nprovider = 'google'\nooo_rules = { keywords = ['x'] }\n") == (
        "syncd.toml: accounts[0].ooo_rules: only used by local, caldav, memory accounts; "
        "google marks out-of-office events itself"
    )
    local = "[[accounts]]\nname = 'l'\nprovider = 'local'\nroot = 'r'\n"
    assert files.error(local + "ooo_rules = { keywords = [''] }\n") == (
        "syncd.toml: accounts[0].ooo_rules.keywords: contains an empty string "
        "(to treat every event as OOO, use all_events = true)"
    )
    assert files.error(local + "ooo_rules = 1\n") == (
        "syncd.toml: accounts[0].ooo_rules: expected a table, got 1"
    )


# --------------------------------------------------------------------------- secrets


def test_missing_secret_variable_names_key_and_variable(files: Files) -> None:
    env = {k: v for k, v in SECRETS.items() if k != "SYNCD_CALDAV_PASSWORD"}
    assert files.error(SKETCH, environ=env) == (
        "syncd.toml: accounts[1].password_env: environment variable SYNCD_CALDAV_PASSWORD is not set"
    )


def test_empty_secret_variable_is_an_error(files: Files) -> None:
    assert files.error(SKETCH, environ={**SECRETS, "SYNCD_WEBHOOK_SECRET": ""}) == (
        "syncd.toml: sinks[0].secret_env: environment variable SYNCD_WEBHOOK_SECRET is empty"
    )


def test_secret_and_secret_env_together_are_rejected(files: Files) -> None:
    text = "[[accounts]]\nname = 'c'\nprovider = 'caldav'\nurl = 'https://x'\npassword = 'p'\npassword_env = 'P'\n"
    assert files.error(text) == "syncd.toml: accounts[0].password_env: give password or password_env, not both"


def test_env_key_for_an_unknown_option_is_an_unknown_key(files: Files) -> None:
    text = "[[accounts]]\nname = 'c'\nprovider = 'caldav'\nurl = 'https://x'\napi_key_env = 'K'\n"
    assert files.error(text) == "syncd.toml: accounts[0].api_key_env: unknown key"
    text = "[[accounts]]\nname = 'o'\nprovider = 'outlook'\nautomatic_replies_env = 'K'\n"
    assert files.error(text) == "syncd.toml: accounts[0].automatic_replies_env: unknown key"


def test_database_url_may_come_from_the_environment(files: Files) -> None:
    url = "postgresql+psycopg://syncd:db-s3cret@db/syncd"
    config = files.load("[daemon]\ndatabase_url_env = 'DB'\n", environ={"DB": url})
    assert config.daemon.database_url == url
    assert "db-s3cret" not in repr(config)
    assert "postgresql+psycopg://syncd:***@db/syncd" in repr(config.daemon)


def test_secrets_never_appear_in_repr(files: Files) -> None:
    config = files.load(SKETCH)
    text = repr(config) + str(config)
    for secret in SECRETS.values():
        assert secret not in text
    assert "'password': ***" in repr(config.accounts["nextcloud"].options)
    assert config.accounts["nextcloud"].options["password"] == "caldav-pw-s3cret"
    assert config.sinks[0].options["secret"] == "webhook-s3cret-long-enough-24"


def test_literal_secrets_and_url_passwords_are_masked_too(files: Files) -> None:
    config = files.load("""
        [[accounts]]
        name = "c"
        provider = "caldav"
        url = "https://bob:url-s3cret@dav.example/"
        password = "literal-s3cret"
    """)
    assert "s3cret" not in repr(config)
    assert "'url': 'https://bob:***@dav.example/'" in repr(config)
    assert config.accounts["c"].options.secret_keys == frozenset({"password"})  # type: ignore[attr-defined]


def test_secrets_never_appear_in_error_messages(files: Files) -> None:
    message = files.error(
        "[[sinks]]\ntype = 'webhook'\nurl_env = 'HOOK'\n",
        environ={"HOOK": "https://hooks.example/T0/s3cret"},
    )
    assert message == "syncd.toml: sinks[0].url_env: unknown key"
    # A bad value read from the environment is reported without the value.
    message = files.error(
        "[[accounts]]\nname = 'c'\nprovider = 'caldav'\nurl_env = 'DAV'\n", environ={"DAV": "dav-s3cret"}
    )
    assert message == "syncd.toml: accounts[0].url: expected an http:// or https:// URL"
    message = files.error("[daemon]\ndatabase_url_env = 'DB'\n", environ={"DB": "db-s3cret"})
    assert "s3cret" not in message


# --------------------------------------------------------------------------- users


def test_user_required_fields(files: Files) -> None:
    assert files.error(user(id="")) == "syncd.toml: users[0].id: missing"
    assert files.error(user(email="")) == "syncd.toml: users[0].email: missing"
    assert files.error(user(timezone="")) == "syncd.toml: users[0].timezone: missing"


def test_missing_email_names_the_right_user(files: Files) -> None:
    users = "\n".join(
        f'[[users]]\nid = "u{i}"\n' + ("" if i == 2 else f'email = "u{i}@example.com"\n') + 'timezone = "UTC"\n'
        for i in range(3)
    )
    assert files.error(users) == "syncd.toml: users[2].email: missing"


def test_user_email_must_look_like_one(files: Files) -> None:
    assert files.error(user(email='"alice"')) == "syncd.toml: users[0].email: not an email address: 'alice'"


def test_unknown_time_zone(files: Files) -> None:
    users = (
        '[[users]]\nid = "a"\nemail = "a@x.se"\ntimezone = "Europe/Stockholm"\n'
        '[[users]]\nid = "b"\nemail = "b@x.se"\ntimezone = "Europe/Stokholm"\n'
    )
    assert files.error(users) == "syncd.toml: users[1].timezone: unknown time zone 'Europe/Stokholm'"


@pytest.mark.parametrize("zone", ["Europe", "../etc/passwd", "/etc/localtime", " UTC", "Mars/Olympus"])
def test_odd_time_zones_are_unknown(files: Files, zone: str) -> None:
    assert files.error(user(timezone=f'"{zone}"')) == f"syncd.toml: users[0].timezone: unknown time zone '{zone}'"


def test_duplicate_user_ids(files: Files) -> None:
    text = user() + '[[users]]\nid = "alice"\nemail = "a2@example.com"\ntimezone = "UTC"\n'
    assert files.error(text) == "syncd.toml: users[1].id: duplicate user id 'alice' (also users[0])"


# --------------------------------------------------------------------------- working hours


def hours(files: Files, value: str) -> Mapping[int, tuple[tuple[time, time], ...]]:
    return files.load(user(working_hours=value)).users[0].working_hours


def test_working_hours_single_and_multiple_ranges(files: Files) -> None:
    assert dict(hours(files, '{ mon = "09:00-17:00", tue = "09:00-12:00,13:00-17:00", sun = "8:30-9:15" }')) == {
        0: ((time(9), time(17)),),
        1: ((time(9), time(12)), (time(13), time(17))),
        6: ((time(8, 30), time(9, 15)),),
    }


def test_working_hours_are_sorted_by_weekday_and_start(files: Files) -> None:
    result = hours(files, '{ fri = "13:00-17:00, 08:00-12:00", mon = "09:00-17:00" }')
    assert list(result) == [0, 4]
    assert result[4] == ((time(8), time(12)), (time(13), time(17)))


def test_working_hours_as_a_list_and_touching_ranges(files: Files) -> None:
    assert hours(files, '{ wed = ["09:00-12:00", "12:00-17:00"] }')[2] == (
        (time(9), time(12)),
        (time(12), time(17)),
    )


def test_working_hours_24_00_means_end_of_day(files: Files) -> None:
    assert hours(files, '{ sat = "00:00-24:00" }')[5] == ((time(0), time.max),)
    assert hours(files, '{ sat = "22:00-24:00" }')[5] == ((time(22), time.max),)


def test_working_hours_off_days_are_left_out(files: Files) -> None:
    assert dict(hours(files, '{ mon = "09:00-17:00", sat = "off", sun = "" }')) == {0: ((time(9), time(17)),)}
    assert dict(files.load(user()).users[0].working_hours) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{ monday = "09:00-17:00" }', "working_hours.monday: unknown day (use mon, tue, wed, thu, fri, sat, sun)"),
        ('{ mon = "9-17" }',
         "working_hours.mon: bad time range '9-17' (use e.g. \"09:00-17:00\", several separated by commas)"),
        ('{ mon = "09:00-17:00," }',
         "working_hours.mon: bad time range '' (use e.g. \"09:00-17:00\", several separated by commas)"),
        ('{ mon = "24:00-24:00" }',
         "working_hours.mon: bad time range '24:00-24:00' (use e.g. \"09:00-17:00\", several separated by commas)"),
        ('{ mon = "09:60-17:00" }',
         "working_hours.mon: bad time range '09:60-17:00' (use e.g. \"09:00-17:00\", several separated by commas)"),
        ('{ mon = "09:00-24:30" }',
         "working_hours.mon: bad time range '09:00-24:30' (use e.g. \"09:00-17:00\", several separated by commas)"),
        ('{ mon = "17:00-09:00" }',
         "working_hours.mon: time range '17:00-09:00' must start before it ends (split overnight shifts across days)"),
        ('{ mon = "09:00-09:00" }',
         "working_hours.mon: time range '09:00-09:00' must start before it ends (split overnight shifts across days)"),
        ('{ mon = "09:00-12:00, 11:00-13:00" }', "working_hours.mon: time ranges overlap at 11:00"),
        ("{ mon = 9 }", 'working_hours.mon: expected a string such as "09:00-17:00", got 9'),
        ('{ mon = ["09:00-12:00", 1] }', 'working_hours.mon: expected a string such as "09:00-17:00", got a list'),
        ('"09:00-17:00"', "working_hours: expected a table, got '09:00-17:00'"),
    ],
)
def test_working_hours_mistakes(files: Files, value: str, expected: str) -> None:
    assert files.error(user(working_hours=value)) == f"syncd.toml: users[0].{expected}"


# --------------------------------------------------------------------------- calendar links


def test_calendar_links(files: Files) -> None:
    links = files.load(user(calendars="""[
        { account = "folder", calendar = "alice" },
        { account = "m365", sync_ooo = false, direction = "pull" },
        { account = "m365", calendar = "AAMkAD=", direction = "push" },
    ]""")).users[0].calendars
    assert links == (
        CalendarLinkConfig("folder", "alice", True, "two-way"),
        CalendarLinkConfig("m365", "primary", False, "pull"),  # google/outlook default to primary
        CalendarLinkConfig("m365", "AAMkAD=", True, "push"),
    )


def test_calendar_link_to_unknown_account(files: Files) -> None:
    assert files.error(user(calendars='[{ account = "nextclod", calendar = "a" }]')) == (
        "syncd.toml: users[0].calendars[0].account: unknown account 'nextclod' (known: folder, m365)"
    )
    text = '[[users]]\nid = "a"\nemail = "a@x.se"\ntimezone = "UTC"\ncalendars = [{ account = "x", calendar = "c" }]'
    assert files.error(text) == (
        "syncd.toml: users[0].calendars[0].account: unknown account 'x' (known: none configured)"
    )


def test_calendar_link_mistakes(files: Files) -> None:
    assert files.error(user(calendars='[{ account = "folder" }]')) == (
        "syncd.toml: users[0].calendars[0].calendar: missing"
    )
    assert files.error(user(calendars='[{ calendar = "a" }]')) == "syncd.toml: users[0].calendars[0].account: missing"
    assert files.error(user(calendars='[{ account = "folder", calendar = "a", direction = "both" }]')) == (
        "syncd.toml: users[0].calendars[0].direction: must be one of two-way, pull, push; got 'both'"
    )
    assert files.error(user(calendars='[{ account = "folder", calendar = "a", sync_ooo = "yes" }]')) == (
        "syncd.toml: users[0].calendars[0].sync_ooo: expected true or false, got 'yes'"
    )


def test_calendar_linked_twice(files: Files) -> None:
    assert files.error(user(calendars='[{ account = "m365" }, { account = "m365", calendar = "primary" }]')) == (
        "syncd.toml: users[0].calendars[1].calendar: calendar 'primary' of account 'm365' "
        "is already linked (also users[0].calendars[0])"
    )


# --------------------------------------------------------------------------- sinks


def test_sink_default_names_number_repeats(files: Files) -> None:
    config = files.load("""
        [[sinks]]
        type = "webhook"
        url = "https://a.example/"
        [[sinks]]
        type = "stdout"
        [[sinks]]
        type = "webhook"
        url = "https://b.example/"
        timeout = "3s"
        max_attempts = 8
        [[sinks]]
        type = "webhook"
        url = "https://c.example/"
    """)
    assert [s.name for s in config.sinks] == ["webhook", "stdout", "webhook-2", "webhook-3"]
    assert dict(config.sinks[2].options) == {
        "url": "https://b.example/",
        "timeout": timedelta(seconds=3),
        "max_attempts": 8,
    }
    assert "secret" not in config.sinks[0].options


def test_sink_default_names_skip_names_given_explicitly(files: Files) -> None:
    config = files.load("""
        [[sinks]]
        type = "stdout"
        [[sinks]]
        type = "stdout"
        name = "stdout-2"
        [[sinks]]
        type = "stdout"
    """)
    assert [s.name for s in config.sinks] == ["stdout", "stdout-2", "stdout-3"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[sinks]]\nname = 'x'", "sinks[0].type: missing"),
        ("[[sinks]]\ntype = 'kafka'", "sinks[0].type: must be one of webhook, stdout, redis, nats; got 'kafka'"),
        ("[[sinks]]\ntype = 'webhook'", "sinks[0].url: missing"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'helpdesk.example.com/hook'",
         "sinks[0].url: expected an http:// or https:// URL"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\ntimeout = '0s'",
         "sinks[0].timeout: must be longer than zero, got '0s'"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\ntimeout = 'soon'",
         "sinks[0].timeout: bad duration 'soon' (use e.g. 30s, 5m, 2h, 1d)"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nmax_attempts = 0",
         "sinks[0].max_attempts: must be at least 1, got 0"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nconcurrency = 65",
         "sinks[0].concurrency: must be at most 64, got 65"),
        ("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nca_bundle = 'certs/none.pem'",
         "sinks[0].ca_bundle: no such file: {folder}/certs/none.pem (a PEM file of the CAs to trust)"),
        ("[[sinks]]\ntype = 'stdout'\nname = 'out'\n[[sinks]]\ntype = 'stdout'\nname = 'out'",
         "sinks[1].name: duplicate sink name 'out' (also sinks[0])"),
    ],
)
def test_sink_mistakes(files: Files, text: str, expected: str) -> None:
    assert files.error(text + "\n") == f"syncd.toml: {expected.format(folder=files.folder)}"


def test_broker_sink_options(files: Files) -> None:
    config = files.load("""
        [[sinks]]
        type = "redis"
        url = "redis://syncd:pw-s3cret@cache.internal:6380/2"
        stream = "helpdesk:status"
        maxlen = 5000
        timeout = "2s"
        [[sinks]]
        type = "redis"
        maxlen = 0
        [[sinks]]
        type = "nats"
        name = "bus"
        url_env = "NATS_URL"
        subject = "helpdesk.status"
        stream = "HELPDESK_STATUS"
        [[sinks]]
        type = "nats"
    """, environ={"NATS_URL": "nats://tok-s3cret@nats-1:4222,nats://tok-s3cret@nats-2:4222"})
    assert [(s.type, s.name) for s in config.sinks] == [
        ("redis", "redis"), ("redis", "redis-2"), ("nats", "bus"), ("nats", "nats-2"),  # numbered by position
    ]
    assert dict(config.sinks[0].options) == {
        "url": "redis://syncd:pw-s3cret@cache.internal:6380/2",
        "stream": "helpdesk:status",
        "maxlen": 5000,
        "timeout": timedelta(seconds=2),
    }
    # Only what is given (the sinks have defaults), and the timeout as for webhooks.
    assert dict(config.sinks[1].options) == {"maxlen": 0, "timeout": timedelta(seconds=5)}
    assert dict(config.sinks[2].options) == {
        "url": "nats://tok-s3cret@nats-1:4222,nats://tok-s3cret@nats-2:4222",
        "subject": "helpdesk.status",
        "stream": "HELPDESK_STATUS",
        "timeout": timedelta(seconds=5),
    }
    assert dict(config.sinks[3].options) == {"timeout": timedelta(seconds=5)}
    assert "s3cret" not in repr(config)
    assert config.sinks[2].options.secret_keys == frozenset({"url"})  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type = 'redis'\nsubject = 'a.b'", "sinks[0].subject: unknown key"),
        ("type = 'redis'\nsecret = 'x'", "sinks[0].secret: unknown key"),
        ("type = 'nats'\nmaxlen = 10", "sinks[0].maxlen: unknown key"),
        ("type = 'redis'\nurl = 'http://cache:6379'", "sinks[0].url: expected a redis URL (redis://, rediss://, unix://)"),
        ("type = 'redis'\nurl = 'nats://cache:4222'", "sinks[0].url: expected a redis URL (redis://, rediss://, unix://)"),
        ("type = 'nats'\nurl = 'nats://a:4222,redis://b'",
         "sinks[0].url: expected a nats URL (nats://, tls://, ws://, wss://)"),
        ("type = 'nats'\nurl = 'localhost:4222'", "sinks[0].url: expected a nats URL (nats://, tls://, ws://, wss://)"),
        ("type = 'redis'\nurl = ''", "sinks[0].url: must not be empty"),
        ("type = 'redis'\nstream = ''", "sinks[0].stream: must not be empty"),
        ("type = 'redis'\nmaxlen = -1", "sinks[0].maxlen: must be at least 0, got -1"),
        ("type = 'redis'\nmaxlen = '100'", "sinks[0].maxlen: expected an integer, got '100'"),
        ("type = 'redis'\ntimeout = '0s'", "sinks[0].timeout: must be longer than zero, got '0s'"),
        ("type = 'nats'\ntimeout = 'soon'", "sinks[0].timeout: bad duration 'soon' (use e.g. 30s, 5m, 2h, 1d)"),
        ("type = 'nats'\nsubject = 'syncd.*'",
         "sinks[0].subject: expected dot-separated tokens without wildcards or spaces, got 'syncd.*'"),
        ("type = 'nats'\nsubject = 'syncd..status'",
         "sinks[0].subject: expected dot-separated tokens without wildcards or spaces, got 'syncd..status'"),
        ("type = 'nats'\nstream = 'my.stream'",
         "sinks[0].stream: a stream name cannot contain spaces, '.', '*', '>', '/' or '\\', got 'my.stream'"),
        ("type = 'nats'\nurl_env = 'NOPE'", "sinks[0].url_env: environment variable NOPE is not set"),
        ("type = 'nats'\nurl = 'nats://a'\nurl_env = 'NATS_URL'", "sinks[0].url_env: give url or url_env, not both"),
    ],
)
def test_broker_sink_mistakes(files: Files, text: str, expected: str) -> None:
    message = files.error("[[sinks]]\n" + text + "\n", environ={"NATS_URL": "nats://tok-s3cret@n:4222"})
    assert message == f"syncd.toml: {expected}"
    assert "s3cret" not in message


def test_broker_url_from_environment_is_checked_without_showing_it(files: Files) -> None:
    message = files.error("[[sinks]]\ntype = 'redis'\nurl_env = 'R'\n", environ={"R": "https://u:pw-s3cret@x/"})
    assert message == "syncd.toml: sinks[0].url: expected a redis URL (redis://, rediss://, unix://)"


def test_rotation_recent_window(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[daemon]\nrotation_recent_window = "3d"\n')
    assert load_config(path).daemon.rotation_recent_window == timedelta(days=3)
    path.write_text('[daemon]\nrotation_recent_window = "soon"\n')
    with pytest.raises(ConfigError, match=r"daemon.rotation_recent_window: bad duration 'soon'"):
        load_config(path)


def test_google_account_mistakes(files: Files) -> None:
    google = "[[accounts]]\nname = 'g'\nprovider = 'google'\nservice_account_file = 'sa.json'\n"
    assert files.error("[[accounts]]\nname = 'g'\nprovider = 'google'\n") == (
        "syncd.toml: accounts[0].service_account_file: missing: give a service account key (domain-wide "
        "delegation), or client_id and client_secret for per-user refresh tokens"
    )
    assert files.error(google + "batch_size = 5000\n") == (
        "syncd.toml: accounts[0].batch_size: must be at most 1000, got 5000")
    assert files.error(google + "batch_size = 0\n") == "syncd.toml: accounts[0].batch_size: must be at least 1, got 0"
    assert files.error(google + "auto_decline = 'always'\n").startswith(
        "syncd.toml: accounts[0].auto_decline: must be one of declineNone, declineAllConflictingInvitations")
    assert files.error(google + "channel_ttl = 'soon'\n").startswith("syncd.toml: accounts[0].channel_ttl: ")
    assert files.error(google + "push_url = 'hooks.example/g'\n") == (
        "syncd.toml: accounts[0].push_url: expected an http:// or https:// URL"
    )
    config = files.load(google + "batch_size = 50\nchannel_ttl = '2d'\nproject_quota = 20000\n")
    options = config.accounts["g"].options
    assert (options["batch_size"], options["channel_ttl"], options["project_quota"]) == (50, timedelta(days=2), 20000)


def test_a_webhook_ca_bundle_is_found_beside_the_config(files: Files) -> None:
    files.write("-----BEGIN CERTIFICATE-----\n", "certs/ca.pem")
    config = files.load("[[sinks]]\ntype = 'webhook'\nurl = 'https://x'\nca_bundle = 'certs/ca.pem'\nconcurrency = 4\n")
    (sink,) = config.sinks
    assert sink.options["ca_bundle"] == str(files.folder / "certs" / "ca.pem")
    assert sink.options["concurrency"] == 4
