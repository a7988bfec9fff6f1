"""With Graph subscriptions live, only the mailboxes that were notified are polled; the others
wait until ``push_poll_interval``. The real Outlook connector and push channels against the
fake Graph, whose change notifications reach `PushChannels` through a loopback hook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from connectors.registry import Connectors
from store.db import Database
from syncd.config import AccountConfig, Options
from syncd.service import Syncd
from syncd.service.push import PushChannels
from syncd.sync import LinkSyncer
from tests.conftest import Clock, make_config, user
from tests.connectors.contract import timed
from tests.connectors.outlook.support import OutlookPerson, options_for
from tests.fakes.graph import FakeGraph
from tests.support import PushHook

TZ = "Europe/Stockholm"
PEOPLE = ("ann", "ben", "cat", "dan", "eve")


@pytest.fixture
def fake() -> Iterator[FakeGraph]:  # fresh for each database: its notifications are this run's
    with FakeGraph() as server:
        yield server


def test_only_notified_mailboxes_are_due_and_the_others_wait_for_push_poll_interval(
        fake: FakeGraph, database: Database, clock: Clock) -> None:
    clock.set(datetime.now(UTC))  # the fake grants subscriptions from the real time
    start = clock.now
    with PushHook("outlook") as hook:
        account = AccountConfig(name="m365", provider="outlook", options=Options(options_for(
            fake, push_url=hook.url, push_poll_interval=timedelta(hours=2))))
        config = make_config([user(p, "primary", account="m365", tz=TZ) for p in PEOPLE],
                             accounts={"m365": account}, poll_interval=timedelta(minutes=5))
        service = Syncd(config, database, clock=clock)
        service.prepare()
        connectors = Connectors(config.accounts)
        try:
            syncer = LinkSyncer(service, connectors, replica="test")
            push = hook.push = PushChannels(service, connectors)
            assert push.refresh() == len(PEOPLE)  # one subscription each, handshakes answered by the hook
            assert len(fake.subscriptions) == len(PEOPLE)
            ids = syncer.link_ids()
            by_person = dict(zip(sorted(PEOPLE), ids, strict=True))
            # The poll after the subscriptions opened (it catches what changed before them).
            assert all(o.ok for o in syncer.sync_many(ids))

            clock.advance(timedelta(minutes=30))  # six poll intervals: nobody was notified, nothing is due
            assert syncer.claim_due(limit=100) == []

            for person in ("ben", "dan"):
                OutlookPerson(fake, f"{person}@example.com", TZ).add(timed(3))
            fake.wait_notifications(2)  # recorded once the hook has answered, after `receive`
            assert hook.received == 2
            due = syncer.claim_due(limit=100)
            assert sorted(due) == sorted([by_person["ben"], by_person["dan"]])

            fake.reset_counts()
            outcomes = syncer.sync_many(due)
            assert all(o.ok for o in outcomes) and sum(o.actions for o in outcomes) == 2
            counts = fake.request_counts()
            # The notified mailboxes are listed together: one $batch carrying both delta requests.
            assert (counts["graph_requests"], counts["batch_parts"]) == (1, 2)
            assert [len(service.list_blocks(p)) for p in sorted(PEOPLE)] == [0, 1, 0, 1, 0]

            clock.set(start + timedelta(hours=1, minutes=45))  # still inside push_poll_interval (2 h ± 10 %)
            assert syncer.claim_due(limit=100) == []
            clock.set(start + timedelta(hours=3))  # the fallback poll of every mailbox
            assert sorted(syncer.claim_due(limit=100)) == sorted(ids)
        finally:
            push.stop_all()
            connectors.close()
