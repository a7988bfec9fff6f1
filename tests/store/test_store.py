"""The store: aware UTC instants, idempotent migrations, SQLite WAL and lock retries."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from store.db import Database
from store.models import Base, UserRow, UTCDateTime
from syncd.core.errors import TransientError

NAIVE = datetime(2026, 3, 2, 9, 0)  # noqa: DTZ001 - what the store must refuse


def add_user(session: Session, uid: str, created_at: datetime) -> None:
    session.add(UserRow(id=uid, email=f"{uid}@example.com", timezone="UTC", working_hours={}, created_at=created_at))


@pytest.mark.parametrize("given", [
    datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 10, 25, 1, 30, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
], ids=["utc-micro", "plus2", "minus0730"])
def test_utc_datetime_round_trips_aware_utc(database: Database, given: datetime) -> None:
    with database.session() as s:
        add_user(s, "u", given)
    with database.session() as s:
        back = s.scalars(select(UserRow.created_at)).one()
        compared = s.scalars(select(UserRow.id).where(UserRow.created_at == given)).all()
    assert back == given
    assert back.tzinfo is UTC or back.utcoffset() == timedelta(0)
    assert back.tzinfo is not None
    assert (back.year, back.month, back.day, back.hour, back.minute, back.microsecond) == \
        given.astimezone(UTC).timetuple()[:5] + (given.microsecond,)
    assert compared == ["u"]  # comparisons in SQL see the same instant


def test_utc_datetime_orders_by_instant_not_by_offset(database: Database) -> None:
    plus2 = timezone(timedelta(hours=2))
    with database.session() as s:
        add_user(s, "late", datetime(2026, 3, 2, 11, 30, tzinfo=plus2))  # 09:30Z
        add_user(s, "early", datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
        add_user(s, "middle", datetime(2026, 3, 2, 11, 15, tzinfo=plus2))  # 09:15Z
    with database.session() as s:
        assert list(s.scalars(select(UserRow.id).order_by(UserRow.created_at))) == ["early", "middle", "late"]


def test_utc_datetime_rejects_naive(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.session() as s:
        add_user(s, "u", NAIVE)
        s.flush()
    with database.session() as s:
        assert s.scalars(select(UserRow)).all() == []
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(NAIVE, database.engine.dialect)
    assert UTCDateTime().process_bind_param(None, database.engine.dialect) is None


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def test_migrations_are_idempotent(database: Database) -> None:
    database.migrate()  # the fixture migrated once already
    database.migrate()
    with database.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tables = set(inspect(conn).get_table_names())
    assert versions == [_head_revision()]
    assert set(Base.metadata.tables) <= tables
    with database.session() as s:  # still usable
        add_user(s, "u", datetime(2026, 3, 2, tzinfo=UTC))


def test_migrations_keep_data(database: Database) -> None:
    with database.session() as s:
        add_user(s, "kept", datetime(2026, 3, 2, tzinfo=UTC))
    database.migrate()
    with database.session() as s:
        assert s.scalars(select(UserRow.id)).all() == ["kept"]


# --------------------------------------------------------------------------- SQLite specifics


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "syncd.db"


@pytest.fixture
def quick_db(sqlite_path: Path) -> Iterator[Database]:
    """A SQLite store that gives up waiting for a lock after 50 ms (so retries are visible)."""
    db = Database(f"sqlite:///{sqlite_path}", connect_args={"timeout": 0.05})
    db.migrate()
    yield db
    db.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_path: Path) -> None:
    db = Database(f"sqlite:///{sqlite_path}")
    db.migrate()
    try:
        assert db.run(lambda s: s.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
        assert db.run(lambda s: s.execute(text("PRAGMA foreign_keys")).scalar()) == 1
        assert db.run(lambda s: s.execute(text("PRAGMA busy_timeout")).scalar()) == 10000  # the default wait
    finally:
        db.dispose()
    raw = sqlite3.connect(sqlite_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is a property of the file
    finally:
        raw.close()


def test_sqlite_creates_the_folder_of_the_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'deep' / 'er' / 'syncd.db'}")
    try:
        db.migrate()
        assert (tmp_path / "deep" / "er" / "syncd.db").exists()
    finally:
        db.dispose()


def _hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO users (id, email, email_key, timezone, working_hours, origin, created_at) "
                     "VALUES ('holder', 'h@example.com', 'h@example.com', 'UTC', '{}', 'api', '2026-03-02 09:00:00')")
        locked.set()
        release.wait(5)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_run_retries_while_sqlite_is_locked(quick_db: Database, sqlite_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(sqlite_path, locked, release))
    holder.start()
    try:
        assert locked.wait(5)
        threading.Timer(0.3, release.set).start()  # released while `run` is backing off
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="store"):
            quick_db.run(lambda s: add_user(s, "writer", datetime(2026, 3, 2, tzinfo=UTC)), what="test write")
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join(5)
    assert any("test write: database busy or unreachable" in r.getMessage() for r in caplog.records)
    assert elapsed >= 0.2  # it waited for the lock rather than failing
    assert quick_db.run(lambda s: s.execute(text("PRAGMA busy_timeout")).scalar()) == 50  # the caller's timeout
    assert sorted(quick_db.run(lambda s: list(s.scalars(select(UserRow.id))))) == ["holder", "writer"]


def test_run_gives_up_with_transient_error_when_the_lock_stays(quick_db: Database, sqlite_path: Path) -> None:
    holder = sqlite3.connect(sqlite_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(TransientError) as err:
            quick_db.run(lambda s: add_user(s, "writer", datetime(2026, 3, 2, tzinfo=UTC)), attempts=2,
                         what="saving a block")
        elapsed = time.monotonic() - started
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    message = str(err.value)
    assert message.startswith("saving a block: ") and "locked" in message
    assert "\n" not in message
    assert elapsed < 2
    assert quick_db.run(lambda s: list(s.scalars(select(UserRow.id)))) == []  # and the store works again


def test_run_does_not_retry_other_errors(quick_db: Database) -> None:
    calls = []

    def work(s: Session) -> None:
        calls.append(1)
        s.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises((TransientError, OperationalError), match="no such table"):
        quick_db.run(work, attempts=3)
    assert calls == [1]


def test_run_rolls_back_on_error(quick_db: Database) -> None:
    def work(s: Session) -> None:
        add_user(s, "half", datetime(2026, 3, 2, tzinfo=UTC))
        s.flush()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        quick_db.run(work)
    assert quick_db.run(lambda s: list(s.scalars(select(UserRow.id)))) == []


def test_migrations_match_the_models(database: Database) -> None:
    """A model changed without a migration (or the other way round) shows up here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": False})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


@pytest.mark.postgres
def test_claims_are_per_schema_one_holder_within_a_schema(database: Database) -> None:
    """Advisory locks are per database: a claim names its schema, so a deployment in another
    schema of the same database is never held back by this one's, while two replicas of one
    deployment (one schema) still exclude each other."""
    if database.dialect != "postgresql":
        pytest.skip("claims are advisory locks on PostgreSQL only")
    schema = database.read(lambda s: s.scalar(text("SELECT current_schema()")))
    other_schema = f"{schema}_other"
    with database.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {other_schema}")
    url = database.engine.url.render_as_string(hide_password=False)
    replica = Database(url, connect_args={"options": f"-csearch_path={schema}"})
    elsewhere = Database(url, connect_args={"options": f"-csearch_path={other_schema}"})
    try:
        with database.claim("sink:hooks") as ours:
            assert ours
            with replica.claim("sink:hooks") as theirs:
                assert not theirs
            with elsewhere.claim("sink:hooks") as unrelated:
                assert unrelated
        with replica.claim("sink:hooks") as theirs:
            assert theirs  # released with the block
    finally:
        replica.dispose()
        elsewhere.dispose()
        with database.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {other_schema} CASCADE")
