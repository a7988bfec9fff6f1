"""PostgreSQL telling this process that what a status is read from has changed.

SQLite answers "has anything been committed since?" from shared memory (``PRAGMA
data_version``), cheaply enough to ask on every request, and a counter its triggers move
says whether it was such a change. PostgreSQL has nothing that cheap to ask, so it is told
instead: triggers (migration 0015) notify channel ``syncd_changes``,
with the schema as payload, whenever a statement changes ``users``, ``user_status`` or
``ooo_blocks``, and one connection per process listens (`ChangeFeed`). The notification is
sent when the writing transaction commits, so once it has arrived the change is visible to
every read that begins after. Between the commit and its arrival at another process (well
under a millisecond on one host) that process may still answer from what it read before.
This process's own commits that wrote to those tables move the stamp at once
(`ChangeFeed.committed`), so a caller reads its own writes; the statements are told by an
engine event, as the triggers tell theirs, and a commit that wrote elsewhere (a heartbeat, a
delivery, a lease) moves nothing.

While the listening connection is down nothing can be known, and the stamp is None: callers
then keep nothing, as on a database that cannot tell.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from sqlalchemy import Delete, Insert, TextClause, Update, event
from sqlalchemy.engine import Engine

from syncd.core.text import first_line

__all__ = ["APPLICATION", "CHANNEL", "ChangeFeed"]

log = logging.getLogger(__name__)
CHANNEL = "syncd_changes"
APPLICATION = "syncd changes"  # the listening connection's application_name, with the schema
WAIT = 1.0  # seconds one wait for notifications lasts: how long `close` may wait for the thread
CHECK_EVERY = 10.0  # seconds without a notification after which the connection is asked if it lives
RETRY_MAX = 30.0  # seconds between attempts to listen again, at most
WATCHED = frozenset({"users", "user_status", "ooo_blocks"})  # what migration 0015's triggers watch
MAX_OWED = 256  # backends remembered before the settled ones are forgotten
_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "MERGE", "WITH")


class ChangeFeed:
    """A stamp that grows whenever ``users``, ``user_status`` or ``ooo_blocks`` of this schema
    may have changed, by a commit of this process or any other. Listens from a thread of its
    own, started by the first `stamp`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._count = 0
        self._listening = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wrote = threading.local()  # per thread: its transaction wrote to WATCHED, on which backend
        # Per backend of this process: its notices heard minus its commits counted.
        self._owed: dict[int, int] = {}
        event.listen(engine, "before_execute", self._executing)

    def stamp(self) -> int | None:
        """The number of changes seen, or None while not listening (nothing can be known)."""
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name="syncd-changes", daemon=True)
                self._thread.start()
            return self._count if self._listening else None

    def beginning(self) -> None:
        """This thread begins a write transaction: what came before it is not its writing."""
        self._wrote.pid, self._wrote.text = None, False

    def committed(self) -> None:
        """This thread's transaction committed: if it wrote to what a status is read from,
        move the stamp now, not when the notice comes back (then that notice moves nothing)."""
        pid, text = getattr(self._wrote, "pid", None), getattr(self._wrote, "text", False)
        self._wrote.pid, self._wrote.text = None, False
        with self._lock:
            if pid is not None:
                # One notice per such transaction (the triggers are per statement, and
                # PostgreSQL folds a transaction's identical notices). It may have come first.
                heard = self._owed.get(pid, 0)
                self._owed[pid] = heard - 1
                if heard <= 0:
                    self._count += 1
            elif text:
                self._count += 1  # written SQL: counted here, and again if a notice comes

    def _heard(self, pid: int) -> None:
        with self._lock:
            owed = self._owed.get(pid)
            if owed is not None:
                self._owed[pid] = owed + 1
                if owed < 0:
                    return  # this process's commit, counted when it committed
            self._count += 1

    def _executing(self, conn: Any, clause: Any, *_args: Any) -> None:
        if isinstance(clause, (Insert, Update, Delete)):
            if getattr(clause.table, "name", None) in WATCHED:
                pid = _backend_pid(conn)
                self._wrote.pid = pid
                if pid is not None:
                    with self._lock:
                        if len(self._owed) > MAX_OWED:  # connections come and go
                            self._owed = {p: n for p, n in self._owed.items() if n}
                        self._owed.setdefault(pid, 0)
        elif isinstance(clause, TextClause) and clause.text.lstrip().upper().startswith(_WRITES):
            self._wrote.text = True  # written SQL is not parsed: any write may be one

    def close(self) -> None:
        self._stopping.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=WAIT * 3)

    def _run(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                conn, schema = self._connect()
            except Exception as exc:  # the database is away: statuses are read, not kept, meanwhile
                log.debug("change feed: cannot listen (%s); again in %.0f s", first_line(exc), delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = 0.5
            try:
                self._listen(conn, schema)
            except Exception as exc:
                if not self._stopping.is_set():
                    log.warning("status answers are not kept until the database's change notices are heard "
                                "again (%s)", first_line(exc))
            finally:
                with self._lock:
                    self._listening = False
                with contextlib.suppress(Exception):
                    conn.close()

    def _connect(self) -> tuple[Any, str]:
        """A connection of its own (the engine's arguments, so the same schema), listening."""
        fairy = self._engine.raw_connection()
        conn: Any = fairy.driver_connection
        fairy.detach()  # never back to the pool: it stays listening
        conn.rollback()
        conn.autocommit = True
        schema = str(conn.execute("SELECT current_schema()").fetchone()[0] or "")
        # Named in pg_stat_activity, for an operator wondering what the idle connection is.
        conn.execute("SELECT set_config('application_name', %s, false)", (f"{APPLICATION}:{schema}"[:63],))
        conn.execute(f"LISTEN {CHANNEL}")
        return conn, schema

    def _listen(self, conn: Any, schema: str) -> None:
        with self._lock:
            self._count += 1  # anything may have changed while nobody listened
            self._owed.clear()  # notices owed from then are lost
            self._listening = True
        quiet_since = time.monotonic()
        while not self._stopping.is_set():
            seen = False
            for note in conn.notifies(timeout=WAIT):  # yields each notice as it comes
                if note.payload == schema:  # the channel is per database; other schemas' news is not ours
                    self._heard(note.pid)
                    seen = True
            if seen:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > CHECK_EVERY:
                conn.execute("SELECT 1")  # raises if the connection died unnoticed
                quiet_since = time.monotonic()


def _backend_pid(conn: Any) -> int | None:
    """The server process of a SQLAlchemy connection (psycopg knows it: no round trip)."""
    try:
        return int(conn.connection.driver_connection.info.backend_pid)
    except (AttributeError, TypeError, ValueError):
        return None
