"""Replicas share a sink's delivery by partitions of its outbox: each partition held by one
replica at a time (a lease kept between passes), the fair share each, taken over when a
replica dies or its connection is lost, and let go when more replicas come. Real PostgreSQL,
real `Publisher`s standing for replicas, fake sinks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import select, text

from store.db import MIGRATIONS, Database
from store.models import DeliveryRow
from store.outbox import PARTITIONS, partition_of
from syncd.config import SinkConfig
from syncd.publish.partitions import STALE
from syncd.publish.publisher import Publisher
from tests.conftest import Clock, Harness, pg_url_for, user
from tests.publish.test_publisher import FakeSink

HarnessFactory = Callable[..., Harness]
ROOT = Path(__file__).resolve().parents[2]
USERS = [f"u{n}" for n in range(40)]  # every one of the 16 partitions has a user or more


@pytest.fixture
def h(harness_factory: HarnessFactory) -> Harness:
    h = harness_factory([user(uid) for uid in USERS], sinks=(SinkConfig(type="stdout", name="a"),))
    if h.service.db.dialect != "postgresql":
        pytest.skip("SQLite serves one replica, which delivers every partition")
    return h


def replica(h: Harness, clock: Clock, replicas: int) -> tuple[FakeSink, Publisher]:
    sink = FakeSink("a", clock)
    return sink, Publisher(h.service.db, {"a": sink}, dead_letter_after=timedelta(hours=1), clock=clock,
                           replicas=lambda: replicas)


def everyone_away(h: Harness, clock: Clock) -> None:
    for uid in USERS:
        clock.advance(timedelta(seconds=1))
        h.service.set_status(uid, "away")


def users_in(partitions: frozenset[int] | None) -> set[str]:
    assert partitions is not None
    return {uid for uid in USERS if partition_of(uid) in partitions}


def test_the_partition_of_a_user_is_the_same_in_every_process() -> None:
    # CRC-32, which Python's per-process hash randomisation does not touch.
    assert partition_of("alice") == zlib.crc32(b"alice") % PARTITIONS == 7
    assert {partition_of(uid) for uid in USERS} == set(range(PARTITIONS))


def test_two_replicas_each_take_half_and_deliver_only_their_own(h: Harness, clock: Clock) -> None:
    everyone_away(h, clock)
    (sink_a, a), (sink_b, b) = replica(h, clock, 2), replica(h, clock, 2)
    a.deliver_due()
    b.deliver_due()
    mine_a, mine_b = a.partitions("a"), b.partitions("a")
    assert mine_a is not None and mine_b is not None
    assert len(mine_a) == len(mine_b) == PARTITIONS // 2 and not mine_a & mine_b
    assert {u for u, _ in sink_a.seen()} == users_in(mine_a)
    assert {u for u, _ in sink_b.seen()} == users_in(mine_b)
    assert len(sink_a.events) + len(sink_b.events) == len(USERS)  # each once


def test_a_replica_that_comes_later_gets_its_share(h: Harness, clock: Clock) -> None:
    alive = [1]
    sink_a = FakeSink("a", clock)
    a = Publisher(h.service.db, {"a": sink_a}, dead_letter_after=timedelta(hours=1), clock=clock,
                  replicas=lambda: alive[0])
    a.deliver_due()
    assert a.partitions("a") == frozenset(range(PARTITIONS))  # alone, it delivers everything
    alive[0] = 2
    sink_b, b = replica(h, clock, 2)
    a.deliver_due()  # sees the second replica's heartbeat: lets its excess go
    b.deliver_due()
    assert a.partitions("a") == frozenset(range(8)) and b.partitions("a") == frozenset(range(8, 16))
    everyone_away(h, clock)
    a.deliver_due()
    b.deliver_due()
    assert {u for u, _ in sink_b.seen()} == users_in(frozenset(range(8, 16)))
    assert len(sink_a.events) + len(sink_b.events) == len(USERS)


def test_a_replica_that_dies_hands_its_partitions_over(h: Harness, clock: Clock) -> None:
    # Another process takes partitions 8-15 the way a replica does, and is killed.
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from store.db import Database
            leases = Database({h.service.db.url!r}).leases()
            leases.take([f"sink:a:{{p}}" for p in range(8, 16)])
            print(len(leases.held), flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "8"
        everyone_away(h, clock)
        sink, survivor = replica(h, clock, 2)  # the dead one's heartbeat has not aged out yet
        survivor.deliver_due()
        assert survivor.partitions("a") == frozenset(range(8))
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
        if other.stdout is not None:
            other.stdout.close()
    survivor.deliver_due()  # its leases went with its connection; free, but maybe not for long
    assert survivor.partitions("a") == frozenset(range(8))
    clock.advance(STALE)
    survivor.deliver_due()  # nobody took them: the survivor does, above its fair share
    assert survivor.partitions("a") == frozenset(range(PARTITIONS))
    assert sorted(u for u, _ in sink.seen()) == sorted(USERS)  # every event once


def test_leases_lost_with_the_connection_are_taken_again(h: Harness, clock: Clock,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    sink, a = replica(h, clock, 1)
    a.deliver_due()
    assert a.partitions("a") == frozenset(range(PARTITIONS))
    # The database ends the connection that holds the leases (as a restart would).
    db = h.service.db
    ended = db.run(lambda s: s.execute(text(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l, unnest(CAST(:names AS text[])) AS n "
        "WHERE l.locktype = 'advisory' AND ((l.classid::bigint << 32) | l.objid::bigint) = "
        "hashtextextended('syncd:' || current_schema() || ':' || n, 0) GROUP BY l.pid"),
        {"names": [f"sink:a:{p}" for p in range(PARTITIONS)]}).scalars().all())
    assert ended == [True]
    everyone_away(h, clock)
    with caplog.at_level(logging.WARNING, logger="store.db"):
        a.deliver_due()  # finds the connection gone: nothing held, nothing sent by it
    assert "16 lease(s) lost with their database connection" in caplog.text
    assert a.partitions("a") == frozenset()
    a.deliver_due()
    assert a.partitions("a") == frozenset(range(PARTITIONS))
    assert sorted(u for u, _ in sink.seen()) == sorted(USERS)


def test_the_migration_gives_waiting_deliveries_their_partition(pg_schema: str) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    db = Database(pg_url_for(pg_schema))
    try:
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0012")
            conn.execute(text("INSERT INTO outbox (seq, event_id, user_id, created_at, payload) VALUES "
                              "(1, 'e1', 'alice', now(), '{}'), (2, 'e2', 'carol', now(), '{}')"))
            conn.execute(text("INSERT INTO deliveries (outbox_seq, sink, user_id, state, attempts, next_attempt_at, "
                              "created_at) VALUES (1, 'a', 'alice', 'pending', 0, now(), now()), "
                              "(2, 'a', 'carol', 'delivered', 1, now(), now())"))
        db.migrate()
        rows = db.read(lambda s: s.execute(select(DeliveryRow.user_id, DeliveryRow.partition)
                                           .order_by(DeliveryRow.outbox_seq)).all())
        assert [tuple(r) for r in rows] == [("alice", partition_of("alice")), ("carol", 0)]  # sent: never read
    finally:
        db.dispose()
