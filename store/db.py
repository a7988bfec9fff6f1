"""Engine, sessions and schema migrations.

SQLite runs in WAL mode with a busy timeout (the embedded default); PostgreSQL is the
multi-replica setting. Migrations (Alembic, in ``store/migrations``) run at start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from store.changes import ChangeFeed
from syncd.core.errors import TransientError
from syncd.core.text import first_line

__all__ = ["Database", "Leases", "Transaction"]

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# PostgreSQL's advisory locks are per database, not per schema: the schema is part of every
# lock's name, so deployments (or test runs) in other schemas of one database never wait for
# each other's start-up or hold each other's claims.
def _lock_key(name: str) -> str:
    """SQL for the advisory lock key of the lock named by the SQL expression ``name``."""
    return f"hashtextextended('syncd:' || coalesce(current_schema(), '') || ':' || {name}, 0)"


_LOCK_KEY = _lock_key(":name")
STARTUP_LOCK = "startup"  # the lock replicas take while starting
T = TypeVar("T")
# What the layers above are handed for one transaction; they pass it on to the store's functions.
Transaction = Session


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The busy timeout is the `timeout` connect argument (10 s unless the caller sets it).
    cursor.close()


class Database:
    def __init__(self, url: str, *, echo: bool = False, connect_args: dict[str, Any] | None = None) -> None:
        self.url = url
        args = dict(connect_args or {})
        self._stamp_path: str | None = None  # the SQLite file whose changes `change_stamp` tells
        self._stamp_connection: sqlite3.Connection | None = None
        self._stamp_lock = threading.Lock()
        self._stamp_version: int | None = None  # SQLite's data_version when the counter was last read
        self._stamp_count: int | None = None
        # The API's worker threads (up to 40) and the sync workers each hold a connection while
        # they work: on SQLite a pool of 5 opened and closed an overflow connection per request,
        # which cost more than the queries (bench.api's profile). A PostgreSQL server allows
        # 100 connections by default, shared by every replica: 10 kept, 30 at most each.
        pool: dict[str, Any] = {"pool_size": 20, "max_overflow": 40}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1].split("?", 1)[0] if "///" in url else ""  # "sqlite://": in memory
            if path and path != ":memory:" and not path.startswith("file:"):
                _private_files(Path(path))
                self._stamp_path = path
            args.setdefault("timeout", 10)
            args.setdefault("check_same_thread", False)
            # A file on this machine: no connection goes stale, and a ping per checkout only costs.
            pool["pool_pre_ping"] = False
        else:
            args.setdefault("connect_timeout", 10)
            pool = {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}
        if url.startswith("sqlite") and not self._stamp_path:
            pool = {"pool_pre_ping": False}  # in memory: SQLAlchemy picks a pool that shares one connection
        self.engine: Engine = create_engine(url, echo=echo, connect_args=args, **pool)
        self.read_engine = self.engine
        if self.engine.dialect.name == "sqlite":
            # SQLite's deferred BEGIN lets two writers deadlock on upgrade: writers take the write
            # lock up front. Readers get an engine of their own with a plain BEGIN, so that under
            # WAL they never wait for a writer (and never make one wait).
            self.read_engine = create_engine(url, echo=echo, connect_args=args, **pool)
            for engine, begin in ((self.engine, "BEGIN IMMEDIATE"), (self.read_engine, "BEGIN")):
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
                event.listen(engine, "begin", lambda conn, b=begin: conn.exec_driver_sql(b))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_gate: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext())
        self._trouble: str | None = None  # the database is away: logged once, not per retry
        self._leases: weakref.WeakSet[Leases] = weakref.WeakSet()
        # PostgreSQL's way of telling `change_stamp`: notices, heard by a thread started on first use.
        self._changes = ChangeFeed(self.engine) if self.dialect == "postgresql" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def claim(self, name: str) -> Iterator[bool]:
        """Whether this process holds the claim ``name`` while the block runs. On PostgreSQL,
        where several replicas share the work, a session advisory lock: one replica at a
        time gets True, the others False (not waiting); the lock goes with the session if the
        replica dies. Elsewhere (one process) always True. False too if the database is away."""
        if self.dialect != "postgresql":
            yield True
            return
        try:
            conn = self.engine.connect()
            key = conn.execute(text(f"SELECT {_LOCK_KEY}"), {"name": name}).scalar()
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            conn.commit()
        except OperationalError as exc:
            log.debug("%s: no claim now (%s)", name, str(exc.orig).splitlines()[0] if exc.orig else exc)
            yield False
            return
        try:
            yield got
        finally:
            try:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    conn.commit()
            except OperationalError:
                pass  # the session is gone, and its lock with it
            finally:
                conn.close()

    def leases(self) -> Leases:
        """Claims this process keeps between passes (see `Leases`); let go at `dispose` at the latest."""
        leases = Leases(self)
        self._leases.add(leases)
        return leases

    def startup_lock(self, session: Session) -> None:
        """On PostgreSQL, hold the start-up lock until ``session``'s transaction ends: replicas
        starting together then write the config's users and links one after another."""
        if self.dialect == "postgresql":
            session.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"), {"name": STARTUP_LOCK})

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent, safe on every start)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                # Replicas starting together would race to create the same tables; the lock
                # lasts until this transaction ends, and the second finds the schema current.
                connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})"), {"name": STARTUP_LOCK})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")

    def change_stamp(self) -> int | None:
        """A number that grows once any connection, of this process or another, has committed
        a change to what a status is read from (users, their status and their blocks: the
        tables migration 0015 watches) since the last call; None where that cannot be known
        (an in-memory SQLite; PostgreSQL while its notices are not heard). Cheap enough for the
        event loop. On SQLite, ``PRAGMA data_version`` on a connection of its own that never
        writes (it reads the WAL index in shared memory, no I/O) tells whether anything was
        committed, and only then is the triggers' counter read. On PostgreSQL, a counter that
        `store.changes.ChangeFeed` moves.

        A caller that keeps what it read must take the stamp *before* its read transaction
        begins: then anything committed after the stamp shows as a larger one."""
        if self._changes is not None:
            return self._changes.stamp()
        if self._stamp_path is None:
            return None
        with self._stamp_lock:
            try:
                if self._stamp_connection is None:
                    self._stamp_connection = sqlite3.connect(self._stamp_path, timeout=10, isolation_level=None,
                                                             check_same_thread=False)
                version = self._stamp_connection.execute("PRAGMA data_version").fetchone()[0]
                if version != self._stamp_version:  # something was committed: was it what a status reads?
                    self._stamp_version = version
                    self._stamp_count = int(self._stamp_connection.execute(
                        "SELECT n FROM status_changes WHERE id = 1").fetchone()[0])
            except (sqlite3.Error, TypeError):  # not migrated yet: nothing can be known
                self._stamp_version = self._stamp_count = None
            return self._stamp_count

    def ping(self) -> None:
        """Raises unless the database answers a query now."""
        self.read(lambda s: s.execute(text("SELECT 1")))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        if self._changes is not None:
            self._changes.beginning()
        with self._sessions() as session, session.begin():
            yield session
        if self._changes is not None:
            self._changes.committed()

    def read(self, work: Callable[[Session], T], *, attempts: int = 5, what: str = "database") -> T:
        """Like `run`, for work that only reads: it does not queue behind SQLite writers."""
        return self.run(work, attempts=attempts, what=what, readonly=True)

    def run(self, work: Callable[[Session], T], *, attempts: int = 5, what: str = "database",
            readonly: bool = False) -> T:
        """Run ``work`` in one transaction, retrying when the database is locked or unreachable."""
        delay = 0.2
        sessions = self._read_sessions if readonly else self._sessions
        # SQLite has one writer at a time; queueing this process's writers on a lock is fair
        # and immediate, where SQLite's busy handler sleeps and retries.
        gate = self._write_gate if not readonly else contextlib.nullcontext()
        changes = self._changes if not readonly else None
        for attempt in range(1, attempts + 1):
            if changes is not None:
                changes.beginning()
            try:
                with gate, sessions() as session, session.begin():
                    result = work(session)
            except OperationalError as exc:
                if not _retryable(exc):
                    raise  # e.g. a missing table: a bug, not something waiting helps with
                self._troubled(exc, what)
                if attempt == attempts:
                    raise TransientError(f"{what}: {_one_line(exc)}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._trouble is not None:
                self._trouble = None
                log.info("database reachable again")
            if changes is not None:
                changes.committed()  # at once for this process; others hear the notice
            return result
        raise AssertionError("unreachable")

    def _troubled(self, exc: OperationalError, what: str) -> None:
        """One warning when the database becomes busy or unreachable, not one per retry."""
        if self._trouble is None:
            log.warning("%s: database busy or unreachable (%s); retrying until it answers", what, _one_line(exc))
            self._trouble = _one_line(exc)
        else:
            log.debug("%s: database still busy or unreachable (%s)", what, _one_line(exc))

    def dispose(self) -> None:
        for leases in list(self._leases):
            leases.close()
        if self._changes is not None:
            self._changes.close()
        with self._stamp_lock:
            if self._stamp_connection is not None:
                self._stamp_connection.close()
                self._stamp_connection = None
        self.engine.dispose()
        self.read_engine.dispose()


class Leases:
    """Named claims that this process keeps until it lets them go or dies, for work shared out
    among replicas (a sink's partitions). On PostgreSQL, session advisory locks on a connection
    of their own: a replica that dies loses that connection, and its leases with it, at once.
    Elsewhere (one process) every lease asked for is granted.

    Not thread-safe: one user at a time (the publisher, within its pass)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None
        self._held: dict[str, int] = {}  # name -> lock key
        self.held: frozenset[str] = frozenset()  # replaced whole, so other threads may read it

    def take(self, names: Collection[str]) -> set[str]:
        """Take those of ``names`` that no other process holds, without waiting; returns the
        ones taken now. The same round trip confirms the ones already held: if the connection
        was lost (the database restarted), they went with it and are all let go here."""
        wanted = [name for name in names if name not in self._held]
        if self.db.dialect != "postgresql":
            self._held.update(dict.fromkeys(wanted, 0))
            self.held = frozenset(self._held)
            return set(wanted)
        try:
            conn = self._connection()
            rows = conn.execute(text(
                f"SELECT n, k, pg_try_advisory_lock(k) FROM (SELECT n, {_lock_key('n')} AS k "
                "FROM unnest(CAST(:names AS text[])) AS n) AS w"), {"names": wanted}).all()
            conn.commit()
        except (OperationalError, DBAPIError) as exc:
            self._lost(exc)
            return set()
        taken = {str(name): int(key) for name, key, got in rows if got}
        self._held.update(taken)
        self.held = frozenset(self._held)
        return set(taken)

    def release(self, names: Collection[str]) -> None:
        """Let ``names`` go (those held), for another replica to take."""
        keys = [self._held.pop(name) for name in names if name in self._held]
        self.held = frozenset(self._held)
        if not keys or self.db.dialect != "postgresql" or self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                               {"keys": keys})
            self._conn.commit()
        except (OperationalError, DBAPIError) as exc:
            self._lost(exc)

    def close(self) -> None:
        """Let every lease go (closing the connection ends its locks)."""
        self._held.clear()
        self.held = frozenset()
        if self._conn is not None:
            with contextlib.suppress(Exception):  # gone already: so are its locks
                self._conn.close()
            self._conn = None

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.db.engine.connect()
        return self._conn

    def _lost(self, exc: DBAPIError) -> None:
        if self._held:
            log.warning("%d lease(s) lost with their database connection (%s); taking them again where free",
                        len(self._held), _one_line(exc))
        self._held.clear()
        self.held = frozenset()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.invalidate()
                self._conn.close()
            self._conn = None


def _private_files(path: Path) -> None:
    """The database holds calendar data and encrypted tokens: its file, and the WAL and SHM
    files SQLite makes beside it with the same mode, are for their owner alone (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if existing.stat().st_mode & 0o077:
                existing.chmod(0o600)
        except FileNotFoundError:
            continue


def _retryable(exc: DBAPIError) -> bool:
    text = str(exc.orig).lower()
    return any(w in text for w in ("locked", "busy", "connection", "could not connect", "server closed",
                                   "terminating", "deadlock", "serialize"))


def _one_line(exc: DBAPIError) -> str:
    return first_line(exc.orig if exc.orig is not None else exc)
