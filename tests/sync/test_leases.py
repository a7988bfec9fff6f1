"""Link leases: several replicas share one database, and each link is synced by one at a time."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.base import PushNotice
from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store.db import Database
from store.models import CalendarLinkRow, PushChannelRow
from syncd.core.calendars import ChangeSet, SyncWindow
from syncd.core.ooo import timed_content
from syncd.service.push import PushChannels, digest
from syncd.sync import LinkSyncer
from syncd.sync.replica import ProcessIdentity, holder_is_dead, this_process
from tests.conftest import Clock, Harness, make_config, pg_url_for, user

HarnessFactory = Callable[..., Harness]


def replicas(h: Harness, *names: str, ttl: timedelta = timedelta(seconds=60)) -> list[LinkSyncer]:
    connectors = Connectors(h.service.config.accounts, overrides={"mem": h.calendars})
    return [LinkSyncer(h.service, connectors, replica=name, lease_ttl=ttl) for name in names]


def everyone_due(h: Harness) -> None:
    with h.service.db.session() as session:
        session.execute(update(CalendarLinkRow).values(next_poll_at=h.clock()))


def test_replicas_claim_disjoint_links(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user(f"u{n}", "work") for n in range(6)])
    everyone_due(h)
    a, b = replicas(h, "a", "b")
    first = a.claim_due(limit=4)
    second = b.claim_due(limit=4)
    assert len(first) == 4 and len(second) == 2
    assert not set(first) & set(second)
    assert b.claim_due() == [] and a.claim_due() == []  # all leased
    owners = {link["id"]: link["owner"] for link in h.service.links()}
    assert {owners[i] for i in first} == {"a"} and {owners[i] for i in second} == {"b"}


def test_a_dead_replicas_links_are_taken_over_after_the_ttl(harness_factory: HarnessFactory, clock: Clock) -> None:
    h = harness_factory([user("alice", "work"), user("bob", "work")])
    everyone_due(h)
    a, b = replicas(h, "a", "b")
    taken = a.claim_due()
    assert len(taken) == 2
    clock.advance(timedelta(seconds=59))
    assert b.claim_due() == []
    clock.advance(timedelta(seconds=2))  # "a" died: its leases ran out
    assert sorted(b.claim_due()) == sorted(taken)


def test_a_lease_is_renewed_while_its_sync_runs(harness_factory: HarnessFactory, clock: Clock) -> None:
    h = harness_factory([user("alice", "work")])
    everyone_due(h)
    a, b = replicas(h, "a", "b")
    [link] = a.claim_due()
    clock.advance(timedelta(seconds=50))
    a.leases.renew([link])
    b.leases.renew([link])  # not b's: nothing happens
    clock.advance(timedelta(seconds=50))
    assert b.claim_due() == []  # renewed 50 s ago, good for 60
    with h.service.db.session() as session:
        row = session.get(CalendarLinkRow, link)
        assert row is not None and row.lease_owner == "a"


def test_a_finished_sync_frees_the_link_and_records_its_owner(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user("alice", "work")])
    h.calendars.add("work", timed_content(h.clock() + timedelta(days=1), h.clock() + timedelta(days=2)))
    everyone_due(h)
    [a] = replicas(h, "replica-a")
    [link] = a.claim_due()
    [outcome] = a.sync_many([link])
    assert outcome.ok
    [shown] = h.service.links()
    assert shown["owner"] == "replica-a" and not shown["syncing"] and shown["lag_s"] == 0
    with h.service.db.session() as session:
        row = session.get(CalendarLinkRow, link)
        assert row is not None and row.lease_expires is None and row.next_poll_at is not None
        assert row.next_poll_at > h.clock()


class _Notified(MemoryConnector):
    """A calendar that changes (and says so) while syncd is listing it: the listing runs a hook."""

    def __init__(self, hook: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hook = hook

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        listed = super().changes(calendar, cursor, window)
        self.hook()
        return listed


def _sync_with(h: Harness, calendar: MemoryConnector) -> datetime | None:
    """Claim and sync the one link through ``calendar``; when it is due next."""
    syncer = LinkSyncer(h.service, Connectors(h.service.config.accounts, overrides={"mem": calendar}), replica="a")
    [link] = syncer.claim_due()
    syncer.sync_many([link])
    with h.service.db.session() as session:
        return session.scalars(select(CalendarLinkRow.next_poll_at)).one()


def test_a_notification_during_a_sync_is_not_lost(harness_factory: HarnessFactory, clock: Clock) -> None:
    h = harness_factory([user("alice", "work")])
    everyone_due(h)

    def notified() -> None:  # what PushChannels.notify does, a moment after the listing began
        clock.advance(timedelta(seconds=1))
        with h.service.db.session() as session:
            session.execute(update(CalendarLinkRow).values(next_poll_at=clock()))
    due = _sync_with(h, _Notified(notified, clock=clock))
    assert due is not None and due <= clock()  # polled again at once, not in five minutes


def test_a_notification_for_a_link_being_synced_is_not_lost(harness_factory: HarnessFactory, clock: Clock) -> None:
    """The same through `PushChannels.receive`: the link was due before its sync began, which
    a notification arriving during the sync must not leave as it is."""
    h = harness_factory([user("alice", "work")])
    everyone_due(h)
    clock.advance(timedelta(minutes=1))  # the link has been due for a minute when it is claimed
    with h.service.db.session() as session:
        link_id = session.scalars(select(CalendarLinkRow.id)).one()
        session.add(PushChannelRow(id="ch-1", link_id=link_id, token_digest=digest("secret"), resource_id="r",
                                   expires_at=clock() + timedelta(days=1), created_at=clock()))
    connectors = Connectors(h.service.config.accounts)
    push = PushChannels(h.service, connectors)

    def notified() -> None:  # a change arrives a moment after the listing began
        clock.advance(timedelta(seconds=1))
        assert push.receive([PushNotice("ch-1", "secret", "exists")]) == 0
    due = _sync_with(h, _Notified(notified, clock=clock))
    assert due is not None and due <= clock()  # polled again at once, not at push_poll_interval


def test_replicas_racing_on_postgresql_never_share_a_link(harness_factory: HarnessFactory, database: Database) -> None:
    h = harness_factory([user(f"u{n}", "work") for n in range(40)])
    everyone_due(h)
    syncers = replicas(h, *(f"r{n}" for n in range(4)))
    claimed: dict[str, list[int]] = {}

    def claim(syncer: LinkSyncer) -> None:
        claimed[syncer.replica] = syncer.claim_due(limit=15)
    threads = [threading.Thread(target=claim, args=(s,)) for s in syncers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [link for links in claimed.values() for link in links]
    assert len(every) == len(set(every)) == 40


def test_leases_use_aware_instants(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user("alice", "work")])
    everyone_due(h)
    [a] = replicas(h, "a")
    a.claim_due()
    with h.service.db.session() as session:
        expires = session.scalars(select(CalendarLinkRow.lease_expires)).one()
    assert expires is not None and expires.tzinfo is not None and expires > datetime(2000, 1, 1, tzinfo=UTC)


def test_a_boundary_is_published_once_whatever_the_number_of_replicas(harness_factory: HarnessFactory,
                                                                     clock: Clock, database: Database) -> None:
    from store.models import StatusLogRow
    from syncd.service import Syncd

    h = harness_factory([user(f"u{n}") for n in range(30)])
    end = clock() + timedelta(minutes=30)
    for n in range(30):
        h.service.add_block(f"u{n}", timed_content(clock() - timedelta(hours=1), end))
    clock.set(end + timedelta(seconds=1))
    services = [Syncd(h.service.config, database, clock=clock) for _ in range(3)]
    threads = [threading.Thread(target=s.advance_due) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with database.session() as session:
        ended = list(session.scalars(select(StatusLogRow.user_id).where(StatusLogRow.reason == "ooo_ended")))
    assert sorted(ended) == sorted(f"u{n}" for n in range(30))  # each user's end once, by whichever replica


@pytest.mark.postgres
def test_replicas_starting_together_on_an_empty_database_all_start(pg_schema: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Migrations and the config's users and links are written under a start-up lock: the
    replicas of a new deployment, started at once, do not trip over each other's inserts."""
    from syncd.service import Syncd

    config = make_config([user(f"u{n}", "work") for n in range(30)])
    services = [Syncd(config, Database(pg_url_for(pg_schema))) for _ in range(4)]
    start = threading.Barrier(len(services))
    errors: list[BaseException] = []

    def prepare(service: Syncd) -> None:
        start.wait()
        try:
            service.prepare()
            service.advance_all()  # the start-up catch-up, while others may still be preparing
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=prepare, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert not [r for r in caplog.records if "deadlock" in r.getMessage()]
        assert len(services[0].user_ids()) == 30
        assert len(services[0].links()) == 30
    finally:
        for service in services:
            service.db.dispose()


# -- a dead process of this machine ---------------------------------------------------------------


@contextmanager
def another_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process of this machine (as a crashed daemon was), and its process key."""
    child = subprocess.Popen([sys.executable, "-c", "import sys\nfrom syncd.sync.replica import this_process\n"
                              "print(this_process().key, flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield child, child.stdout.readline().strip()
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def test_a_process_key_tells_a_dead_holder_from_a_live_one() -> None:
    me = this_process()
    assert me.key and not holder_is_dead(me.key)
    assert not holder_is_dead(None) and not holder_is_dead("")
    machine, pid, _start = me.key.split(":")
    assert holder_is_dead(f"{machine}:{pid}:1")  # this pid, but a process that started earlier: gone
    assert not holder_is_dead(f"{'0' * 16}:{pid}:1")  # another machine: only its lease's expiry tells
    with another_process() as (child, key):
        assert key.startswith(machine + ":") and not holder_is_dead(key)
        child.kill()
        child.wait()
        assert holder_is_dead(key)


def test_a_dead_local_holders_leases_are_taken_over_at_once(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user("alice", "work"), user("bob", "work")])
    everyone_due(h)
    connectors = Connectors(h.service.config.accounts, overrides={"mem": h.calendars})
    with another_process() as (child, key):
        crashed = LinkSyncer(h.service, connectors, replica=ProcessIdentity("host:1", key))
        taken = crashed.claim_due()
        assert len(taken) == 2
        assert LinkSyncer(h.service, connectors).claim_due() == []  # alive: its leases stand
        child.kill()
        child.wait()
        restarted = LinkSyncer(h.service, connectors)
        assert sorted(restarted.claim_due()) == sorted(taken)  # no lease TTL to wait out
    owners = {link["owner"] for link in h.service.links()}
    assert owners == {restarted.replica}


def test_leases_of_another_machine_wait_for_their_ttl(harness_factory: HarnessFactory, clock: Clock) -> None:
    h = harness_factory([user("alice", "work")])
    everyone_due(h)
    connectors = Connectors(h.service.config.accounts, overrides={"mem": h.calendars})
    elsewhere = LinkSyncer(h.service, connectors, replica=ProcessIdentity("other-host:7", f"{'0' * 16}:7:99"))
    [link] = elsewhere.claim_due()
    assert LinkSyncer(h.service, connectors).claim_due() == []
    clock.advance(timedelta(seconds=61))
    assert LinkSyncer(h.service, connectors).claim_due() == [link]
