"""Shared fixtures: a database per test on SQLite and, when reachable, PostgreSQL; a
controllable clock; a ready service over memory calendars."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store.db import Database
from syncd.config import AccountConfig, CalendarLinkConfig, Config, DaemonConfig, SinkConfig, UserConfig
from syncd.service import Syncd
from syncd.sync import LinkSyncer

PG_DEFAULT = "postgresql+psycopg://root@127.0.0.1:5432/test"
PG_URL = os.environ.get("SYNCD_TEST_DATABASE_URL", PG_DEFAULT)


def _postgres_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql"), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL not reachable at {PG_URL} ({str(exc).strip().splitlines()[0]})"


_PG_PROBLEM = _postgres_reachable()


def need_postgresql() -> None:
    """Skip the test when the PostgreSQL server is away; fail it instead under CI."""
    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(f"{_PG_PROBLEM}; CI must run the PostgreSQL tests")
        pytest.skip(f"{_PG_PROBLEM}; set SYNCD_TEST_DATABASE_URL to run these")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database. PostgreSQL tests use a schema of their own."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'syncd.db'}")
        db.migrate()
        yield db
        db.dispose()
        return
    need_postgresql()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    db = Database(PG_URL, connect_args={"options": f"-csearch_path={schema}"})
    db.migrate()
    yield db
    db.dispose()
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    admin.dispose()


@pytest.fixture
def postgresql_url() -> str:
    """The PostgreSQL server's URL, for what makes schemas of its own (the benchmarks)."""
    need_postgresql()
    return PG_URL


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of its own, for daemons that connect by URL (other processes too)."""
    need_postgresql()
    schema = f"s_{uuid.uuid4().hex[:12]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def stamp_when(db: Database, done: Callable[[int | None], bool], why: str) -> int | None:
    """``db.change_stamp()`` once ``done`` says so: PostgreSQL's notices arrive from a thread,
    soon after a commit. Fails after 10 s (a deadline for a hang, not a measure of speed)."""
    deadline = time.monotonic() + 10
    while not done(stamp := db.change_stamp()):
        assert time.monotonic() < deadline, f"{why} (the change stamp stayed at {stamp})"
        time.sleep(0.005)
    return stamp


def listening(db: Database) -> int:
    """The change stamp, once there is one (PostgreSQL's listener connects in the background)."""
    stamp = stamp_when(db, lambda s: s is not None, "the change feed never started listening")
    assert stamp is not None
    return stamp


def pg_url_for(schema: str, url: str | None = None) -> str:
    """A database URL whose connections use ``schema``."""
    return f"{url or PG_URL}?options=-csearch_path%3D{schema}"


@dataclass
class Clock:
    now: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_config(users: list[UserConfig], *, accounts: dict[str, AccountConfig] | None = None,
                sinks: tuple[SinkConfig, ...] = (), **daemon: Any) -> Config:
    daemon.setdefault("poll_interval", timedelta(minutes=5))
    return Config(
        path=Path("test.toml"),
        daemon=DaemonConfig(**daemon),
        accounts=MappingProxyType(accounts or {"mem": AccountConfig(name="mem", provider="memory")}),
        users=tuple(users),
        sinks=sinks,
    )


def user(uid: str, *calendars: str, tz: str = "Europe/Stockholm", direction: str = "two-way",
         account: str = "mem", **kw: Any) -> UserConfig:
    return UserConfig(id=uid, email=f"{uid}@example.com", timezone=tz,
                      calendars=tuple(CalendarLinkConfig(account=account, calendar=c, direction=direction)
                                      for c in calendars), **kw)


@dataclass
class Harness:
    """A service on a real database with memory calendars that tests edit as the person would."""

    service: Syncd
    syncer: LinkSyncer
    calendars: MemoryConnector
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)

    def sync(self, *users: str) -> list[Any]:
        return self.syncer.sync_once(list(users) or None)


@pytest.fixture
def harness_factory(database: Database, clock: Clock) -> Callable[..., Harness]:
    def build(users: list[UserConfig], **daemon: Any) -> Harness:
        config = make_config(users, sinks=daemon.pop("sinks", (SinkConfig(type="stdout", name="stdout"),)),
                             **daemon)
        memory = MemoryConnector(clock=clock)
        service = Syncd(config, database, clock=clock)
        service.prepare()
        syncer = LinkSyncer(service, Connectors(config.accounts, overrides={"mem": memory}))
        return Harness(service, syncer, memory, clock)
    return build


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is not ours to judge
            self.lines.append(str(record.msg))


@pytest.fixture(autouse=True)
def no_secret_in_logs() -> Iterator[None]:
    """Every test: whatever syncd logs (INFO and up, tracebacks included) shows no known secret."""
    from tests.known_secrets import SECRETS

    handler = _Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    leaked = sorted({secret for line in handler.lines for secret in SECRETS if secret in line})
    assert not leaked, f"a log line shows a secret ({len(leaked)} value(s)); first: " + next(
        line for line in handler.lines if any(secret in line for secret in leaked))
