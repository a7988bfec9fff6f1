"""Status answers kept between reads (`syncd.service.status_cache`): what the API answers from
the event loop must be what a fresh read would say, after every kind of change and as time passes.

Each test reads the way the route does: a kept answer if there is one, else a fresh read (which
keeps it). Without the invalidation the kept answers would be stale and these tests fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from store.db import Database
from store.models import UserRow
from syncd.core.ooo import timed_content
from syncd.service import Syncd
from syncd.service.base import StatusInfo
from syncd.service.status_cache import StatusCache
from tests.conftest import Harness, listening, make_config, stamp_when, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: a Monday


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def answer(h: Harness, user_id: str = "alice") -> StatusInfo:
    """What ``GET /v1/users/{id}/status`` answers."""
    return h.service.kept_status(user_id) or h.service.status(user_id)


def kept(h: Harness, user_id: str = "alice") -> bool:
    return h.service.kept_status(user_id) is not None


@pytest.fixture
def h(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory([user("alice", "work"), user("bob", "work")])


@contextmanager
def another_process(h: Harness, database: Database) -> Iterator[Syncd]:
    """A service on a connection pool of its own, as a CLI command or another replica has; on
    return, this process has heard of what it committed."""
    before = listening(database)
    other_db = Database(database.url, connect_args=schema_of(database))
    try:
        yield Syncd(h.service.config, other_db, clock=h.clock)
    finally:
        other_db.dispose()
    stamp_when(database, lambda s: s is not None and s > before, "this process never heard of the other's commit")


def schema_of(db: Database) -> dict[str, str]:
    if db.dialect != "postgresql":
        return {}
    with db.engine.connect() as conn:
        return {"options": f"-csearch_path={conn.execute(text('SELECT current_schema()')).scalar()}"}


def test_an_answer_is_kept(h: Harness) -> None:
    listening(h.service.db)
    first = h.service.status("alice")
    assert h.service.kept_status("alice") == first
    assert h.service.kept_status("bob") is None  # never read


def test_block_added_edited_ended_early_and_deleted(h: Harness) -> None:
    listening(h.service.db)
    assert answer(h).status == "available"
    assert kept(h)
    b = h.service.add_block("alice", timed_content(at(-1), at(2)))
    s = answer(h)
    assert (s.status, s.until, s.blocks) == ("away", at(2), [b.id])
    assert answer(h) == s
    edited = h.service.edit_block(b.id, timed_content(at(-1), at(3)))
    assert answer(h).until == at(3)
    h.clock.advance(timedelta(minutes=30))
    h.service.end_block_early(edited.id)
    s = answer(h)
    assert (s.status, s.reason, s.blocks) == ("available", "ooo_ended_early", [])
    later = h.service.add_block("alice", timed_content(at(0), at(5)))
    assert answer(h).status == "away"
    h.service.delete_block(later.id)
    assert answer(h).status == "available"


def test_manual_change(h: Harness) -> None:
    listening(h.service.db)
    assert answer(h).status == "available"
    h.service.set_status("alice", "away")
    s = answer(h)
    assert (s.status, s.reason) == ("away", "manual")
    h.service.set_status("alice", "available")
    assert answer(h).status == "available"


def test_manual_change_by_another_process(h: Harness, database: Database) -> None:
    listening(database)
    assert answer(h).status == "available"
    assert kept(h)
    with another_process(h, database) as other:
        other.set_status("alice", "away")  # `syncd status set`
    assert (answer(h).status, answer(h).reason) == ("away", "manual")


def test_time_passing_a_boundary_with_nothing_written(h: Harness) -> None:
    listening(h.service.db)
    b = h.service.add_block("alice", timed_content(at(2), at(4)))
    s = answer(h)
    assert (s.status, s.until) == ("available", at(2))
    assert kept(h)
    h.clock.set(at(0.5))
    assert kept(h)  # before the block: still right
    h.clock.set(at(2))  # the block starts; no timer has run, nothing is written
    assert not kept(h)
    s = answer(h)
    assert (s.status, s.until, s.blocks) == ("away", at(4), [b.id])
    h.clock.set(at(4))
    assert answer(h).status == "available"
    h.clock.set(at(3))  # a clock set back: what was kept at 4 is not an answer for 3
    assert answer(h).status == "away"


def test_a_write_by_another_process_is_seen(h: Harness, database: Database) -> None:
    listening(database)
    assert answer(h).status == "available"
    assert kept(h)
    with another_process(h, database) as other:  # a CLI command, or another replica
        b = other.add_block("alice", timed_content(at(-1), at(2)))
    s = answer(h)
    assert (s.status, s.blocks) == ("away", [b.id])


def test_other_users_answers_go_too_when_anything_is_written(h: Harness) -> None:
    listening(h.service.db)
    answer(h, "bob")
    assert kept(h, "bob")
    h.service.add_block("alice", timed_content(at(-1), at(2)))
    assert not kept(h, "bob")  # one stamp for the whole database: safe, and simple


# -- the store's change stamp and the cache alone -----------------------------------------------


def test_change_stamp_moves_on_commits_by_any_connection_to_what_a_status_reads(tmp_path: Path) -> None:
    path = f"sqlite:///{tmp_path}/s.db"
    db, other = Database(path), Database(path)
    try:
        db.migrate()
        first = db.change_stamp()
        assert first is not None and db.change_stamp() == first
        db.ping()
        assert db.change_stamp() == first  # reads change nothing
        with other.session() as s:  # another connection's writes elsewhere: a heartbeat, a delivery
            s.execute(text("DELETE FROM replicas"))
            s.execute(text("CREATE TABLE t (x INTEGER)"))
        assert db.change_stamp() == first
        with other.session() as s:
            s.add(UserRow(id="alice", email="alice@example.com", timezone="UTC", created_at=T0))
        second = db.change_stamp()
        assert second is not None and second > first
        with db.session() as s:  # this process's own writes too
            s.execute(text("UPDATE users SET timezone = 'Europe/Oslo'"))
        third = db.change_stamp()
        assert third is not None and third > second
    finally:
        db.dispose()
        other.dispose()
    assert Database("sqlite://").change_stamp() is None  # in memory: nothing to watch
    assert Database(f"sqlite:///{tmp_path}/new.db").change_stamp() is None  # not migrated: nothing known


def test_cache_drops_answers_read_before_a_change_it_has_seen() -> None:
    cache: StatusCache[str] = StatusCache()
    cache.put("a", 5, T0, at(1), "five")
    assert cache.get("a", 5, T0) == "five"
    assert cache.get("a", 6, T0) is None  # a commit since: everything goes
    cache.put("a", 5, T0, at(1), "stale")  # a read that began before that commit
    assert cache.get("a", 6, T0) is None
    cache.put("a", 6, T0, at(1), "six")
    assert cache.get("a", 6, at(0.5)) == "six"
    assert cache.get("a", 6, at(1)) is None  # the instant it may change
    assert cache.get("a", None, T0) is None  # no stamp: nothing is known


def test_cache_is_bounded() -> None:
    cache: StatusCache[int] = StatusCache(capacity=3)
    for n in range(5):
        cache.put(f"u{n}", 1, T0, at(1), n)
    assert [cache.get(f"u{n}", 1, T0) for n in range(5)] == [None, None, 2, 3, 4]


def test_status_route_answers_change_with_the_store(database: Database, clock: object) -> None:
    import dataclasses

    from fastapi.testclient import TestClient

    from syncd.api import create_app
    from syncd.config import ApiConfig, ApiToken

    config = dataclasses.replace(make_config([user("alice", "work")]),
                                 api=ApiConfig(tokens=(ApiToken("ro", "r-token-r-token-r-token-1", ("read",)),)))
    svc = Syncd(config, database, clock=clock)  # type: ignore[arg-type]
    svc.prepare()
    headers = {"Authorization": "Bearer r-token-r-token-r-token-1"}
    with TestClient(create_app(svc)) as client:
        assert client.get("/v1/users/alice/status", headers=headers).json()["status"] == "available"
        assert client.get("/v1/users/alice/status", headers=headers).json()["status"] == "available"
        svc.add_block("alice", timed_content(at(-1), at(2)))
        body = client.get("/v1/users/alice/status", headers=headers).json()
        assert (body["status"], body["until"]) == ("away", "2026-03-02T11:00:00Z")
        assert client.get("/v1/users/nobody/status", headers=headers).status_code == 404
