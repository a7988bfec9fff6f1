"""PostgreSQL's change stamp (`store.changes`): notices from the triggers of migration 0015,
heard by one listening connection per process, move it; nothing else does, and while the
listener is down there is no stamp (so nothing is kept on trust)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, text, update

from store.changes import APPLICATION
from store.db import Database
from store.models import ReplicaRow, UserRow
from tests.conftest import listening, pg_url_for, stamp_when

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def dbs(pg_schema: str) -> Iterator[tuple[Database, Database]]:
    """This process's database, and another connection pool on the same schema (another replica)."""
    db = Database(pg_url_for(pg_schema))
    db.migrate()
    other = Database(pg_url_for(pg_schema))
    yield db, other
    other.dispose()
    db.dispose()


def insert_user(db: Database, user_id: str) -> None:
    db.run(lambda s: s.add(UserRow(id=user_id, email=f"{user_id}@example.com", timezone="UTC", created_at=NOW)))


def test_a_commit_elsewhere_to_what_a_status_reads_moves_the_stamp(dbs: tuple[Database, Database]) -> None:
    db, other = dbs
    first = listening(db)
    insert_user(other, "alice")
    stamp_when(db, lambda s: (s or 0) > first, "another replica's new user went unheard")
    second = db.change_stamp()
    assert second is not None
    other.run(lambda s: s.execute(text("UPDATE users SET timezone = 'Europe/Oslo' WHERE id = 'alice'")))
    stamp_when(db, lambda s: (s or 0) > second, "another replica's change of a user went unheard")


def test_own_commits_move_it_at_once_and_reads_and_other_writes_do_not(dbs: tuple[Database, Database]) -> None:
    db, other = dbs
    first = listening(db)
    db.ping()
    db.run(lambda s: s.execute(text("SELECT count(*) FROM users")))
    db.run(lambda s: s.execute(delete(ReplicaRow)))  # a write elsewhere: a heartbeat, a delivery, a lease
    assert db.change_stamp() == first
    insert_user(db, "bob")  # through the ORM's flush
    second = db.change_stamp()
    assert second is not None and second > first  # no waiting for the notice: read-your-writes
    db.run(lambda s: s.execute(update(UserRow).where(UserRow.id == "bob").values(timezone="Europe/Oslo")))
    third = db.change_stamp()
    assert third == second + 1  # a statement of the store's own
    # Notices come in commit order: once a later one from elsewhere is heard, so are this
    # process's own two, and they moved nothing more (their commits were counted).
    other.run(lambda s: s.execute(update(UserRow).where(UserRow.id == "bob").values(timezone="UTC")))
    stamp_when(db, lambda s: (s or 0) > third, "the other replica's change went unheard")
    assert db.change_stamp() == third + 1


def test_what_no_status_reads_and_other_schemas_do_not_move_it(dbs: tuple[Database, Database]) -> None:
    db, other = dbs
    insert_user(other, "carol")
    first = listening(db)
    # A heartbeat table written by another replica, and a notice meant for another schema;
    # then a change that does count, to know the first two have been heard, if ever.
    other.run(lambda s: s.execute(text("DELETE FROM replicas")))
    other.run(lambda s: s.execute(text("SELECT pg_notify('syncd_changes', 'some_other_schema')")))
    other.run(lambda s: s.execute(text("UPDATE users SET email = 'c@example.com' WHERE id = 'carol'")))
    stamp_when(db, lambda s: (s or 0) > first, "the counted change went unheard")
    assert db.change_stamp() == first + 1


def test_a_listener_cut_off_gives_no_stamp_then_a_larger_one(dbs: tuple[Database, Database], pg_schema: str
                                                            ) -> None:
    db, other = dbs
    first = listening(db)
    ended = other.run(lambda s: s.execute(text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
        {"name": f"{APPLICATION}:{pg_schema}"}).scalars().all())
    assert ended == [True]
    insert_user(other, "dave")  # committed while nobody listens
    stamp_when(db, lambda s: (s or 0) > first, "the listener did not come back")
    # Whether or not the gap was seen as None, the stamp after it is not one a read before it had.
