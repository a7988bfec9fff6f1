"""Working hours kept in the Microsoft 365 mailbox drive the status end to end: the service,
the hours reader, msal and the fake Graph over TLS, with a controlled clock. And the mailbox's
scheduled automatic replies with Exchange's OOF event of the same period: one block."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.registry import Connectors
from store.db import Database
from store.models import StatusLogRow
from syncd.config import AccountConfig, Options, UserConfig
from syncd.config.model import CalendarLinkConfig
from syncd.core.ooo import OooContent
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import Clock, make_config
from tests.connectors.outlook.support import OutlookPerson, options_for
from tests.fakes.graph import FakeGraph

ALICE = "alice@example.com"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]
NINE_TO_FIVE = {day: ((time(9), time(17)),) for day in range(5)}
# Friday 27 March 2026, 12:00 UTC; Europe goes to summer time on Sunday the 29th at 01:00 UTC.
FRIDAY_NOON = datetime(2026, 3, 27, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


def build(fake: FakeGraph, database: Database, clock: Clock, **person: Any) -> tuple[Syncd, LinkSyncer]:
    alice = UserConfig(id="alice", email=ALICE, timezone=person.pop("timezone", "Europe/Stockholm"),
                       working_hours=NINE_TO_FIVE, working_hours_from=person.pop("working_hours_from", "calendar"),
                       calendars=(CalendarLinkConfig(account="m365", calendar="primary"),))
    account = AccountConfig(name="m365", provider="outlook", options=Options(options_for(fake)))
    config = make_config([alice], accounts={"m365": account}, away_outside_working_hours=True)
    service = Syncd(config, database, clock=clock)
    service.prepare()
    return service, LinkSyncer(service, Connectors(config.accounts))


def transitions(database: Database) -> list[tuple[str, str, datetime]]:
    with database.session() as s:
        return [(r.status, r.reason, r.effective_at)
                for r in s.scalars(select(StatusLogRow).where(StatusLogRow.user_id == "alice")
                                   .order_by(StatusLogRow.id))]


def at(clock: Clock, service: Syncd, when: datetime) -> None:
    """The boundary timer at ``when``."""
    clock.set(when)
    service.advance_due()


def test_mailbox_hours_drive_the_status_at_the_right_instants_across_dst(
        fake: FakeGraph, database: Database, clock: Clock) -> None:
    fake.set_working_hours(ALICE, WEEKDAYS, "08:00", "16:00", "W. Europe Standard Time")
    clock.set(FRIDAY_NOON)
    service, syncer = build(fake, database, clock)
    try:
        assert service.status("alice").status == "available"  # 13:00 in Stockholm: config hours too
        syncer.hours.read_due()
        weekdays = ("mon", "tue", "wed", "thu", "fri")
        assert service.working_hours("alice") == {"working_hours": {d: ["08:00-16:00"] for d in weekdays},
                                                  "timezone": "Europe/Berlin", "source": "outlook:m365"}
        # 16:00 CET is 15:00 UTC (the config's 17:00 would have been 16:00 UTC).
        at(clock, service, datetime(2026, 3, 27, 15, tzinfo=UTC))
        # Monday 08:00 CEST, after the change to summer time, is 06:00 UTC.
        at(clock, service, datetime(2026, 3, 30, 6, tzinfo=UTC))
        assert syncer.hours.read_due() == 0  # read again: the same hours, nothing changes
        assert transitions(database) == [
            ("away", "working_hours", datetime(2026, 3, 27, 15, tzinfo=UTC)),
            ("available", "working_hours", datetime(2026, 3, 30, 6, tzinfo=UTC)),
        ]
        # Outlook's settings change to 10:00-18:00 while she works: read at the next poll,
        # an hour later, which puts her outside her hours at once (09:00 CEST).
        fake.set_working_hours(ALICE, WEEKDAYS, "10:00", "18:00", "W. Europe Standard Time")
        clock.set(datetime(2026, 3, 30, 6, 30, tzinfo=UTC))
        assert syncer.hours.read_due() == 0  # not due yet: read every working_hours_poll (1h)
        clock.set(datetime(2026, 3, 30, 7, 1, tzinfo=UTC))
        assert syncer.hours.read_due() == 1
        at(clock, service, datetime(2026, 3, 30, 8, tzinfo=UTC))  # 10:00 CEST
        assert transitions(database)[2:] == [
            ("away", "working_hours", datetime(2026, 3, 30, 7, 1, tzinfo=UTC)),
            ("available", "working_hours", datetime(2026, 3, 30, 8, tzinfo=UTC)),
        ]
        assert service.status("alice").until == datetime(2026, 3, 30, 16, tzinfo=UTC)  # 18:00 CEST
    finally:
        syncer.connectors.close()


def test_unreadable_hours_fall_back_to_the_config_and_are_reported_once(
        fake: FakeGraph, database: Database, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    fake.set_working_hours(ALICE, WEEKDAYS, "08:00", "16:00", "Nowhere Standard Time")
    clock.set(FRIDAY_NOON)
    service, syncer = build(fake, database, clock)
    try:
        with caplog.at_level(logging.INFO):
            syncer.hours.read_due()
            clock.advance(timedelta(hours=2))
            syncer.hours.read_due()
        warned = [r.getMessage() for r in caplog.records if "unreadable working hours" in r.getMessage()]
        assert warned == ["link alice/m365/primary: unreadable working hours (workingHours: unknown time zone "
                          "'Nowhere Standard Time'); the config's apply"]
        assert service.working_hours("alice")["source"] == "config"
        [link] = service.links()
        assert link["working_hours"] == {"state": "invalid", "problem": warned[0].split(": ", 1)[1]}
        fake.set_working_hours(ALICE, WEEKDAYS, "08:00", "16:00", "Europe/Stockholm")
        clock.advance(timedelta(hours=2))
        syncer.hours.read_due()
        assert service.working_hours("alice")["source"] == "outlook:m365"
    finally:
        syncer.connectors.close()


def test_timezone_calendar_takes_the_mailbox_zone(fake: FakeGraph, database: Database, clock: Clock) -> None:
    fake.set_working_hours(ALICE, WEEKDAYS, "08:00", "16:00", "Pacific Standard Time")
    clock.set(FRIDAY_NOON)
    service, syncer = build(fake, database, clock, timezone="calendar")
    try:
        assert service.user_timezone("alice") == "UTC"  # until the mailbox is first read
        syncer.hours.read_due()
        assert service.user_timezone("alice") == "America/Los_Angeles"
        # 05:00 in Los Angeles: outside her hours.
        assert service.status("alice").status == "away"
    finally:
        syncer.connectors.close()


def test_config_hours_stay_when_the_user_does_not_take_them_from_the_calendar(
        fake: FakeGraph, database: Database, clock: Clock) -> None:
    clock.set(FRIDAY_NOON)
    service, syncer = build(fake, database, clock, working_hours_from="config")
    try:
        syncer.hours.read_due()
        assert service.working_hours("alice")["source"] == "config"
        assert service.links()[0]["working_hours"] == {"state": None, "problem": None}
    finally:
        syncer.connectors.close()


# -- automatic replies and Exchange's OOF event: one absence, one block ---------------------------


def replies_world(fake: FakeGraph, database: Database) -> tuple[Syncd, LinkSyncer]:
    alice = UserConfig(id="alice", email=ALICE, timezone="Europe/Stockholm",
                       calendars=(CalendarLinkConfig(account="m365", calendar="primary"),))
    account = AccountConfig(name="m365", provider="outlook",
                            options=Options(options_for(fake, automatic_replies=True)))
    config = make_config([alice], accounts={"m365": account})
    service = Syncd(config, database)
    service.prepare()
    return service, LinkSyncer(service, Connectors(config.accounts))


@pytest.mark.parametrize("event_first", [True, False], ids=["together", "event-later"])
def test_scheduled_replies_and_their_oof_event_are_one_block(fake: FakeGraph, database: Database,
                                                             event_first: bool) -> None:
    for event in fake.events(ALICE):
        fake.delete_event(ALICE, event["id"])
    person = OutlookPerson(fake, ALICE, "Europe/Stockholm")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    period = OooContent(start, start + timedelta(days=2), title="Out of office")
    service, syncer = replies_world(fake, database)
    try:
        fake.set_automatic_replies(ALICE, "scheduled", start, start + timedelta(days=2))
        if event_first:
            person.add(period)  # what Exchange does when "block my calendar" is ticked
        assert all(o.ok for o in syncer.sync_once())
        if not event_first:
            assert [b.title for b in service.list_blocks("alice")] == ["Automatic replies"]
            person.add(period)
            assert all(o.ok for o in syncer.sync_once())
        [block] = service.list_blocks("alice")
        assert (block.start, block.end, block.title) == (start, start + timedelta(days=2), "Out of office")
        assert all(o.ok for o in syncer.sync_once())  # a quiet poll changes nothing
        assert len(service.list_blocks("alice")) == 1
        # The event is deleted while the replies stay scheduled: the replies are the absence again.
        [event] = person.events()
        person.remove(event["id"])
        assert all(o.ok for o in syncer.sync_once())
        [block] = service.list_blocks("alice")
        assert (block.start, block.end, block.title) == (start, start + timedelta(days=2), "Automatic replies")
    finally:
        fake.set_automatic_replies(ALICE, "disabled")
        syncer.connectors.close()


def test_a_full_listing_reads_the_hours_again_before_the_poll_is_due(
        fake: FakeGraph, database: Database, clock: Clock) -> None:
    fake.set_working_hours(ALICE, WEEKDAYS, "08:00", "16:00", "Europe/Stockholm")
    clock.set(FRIDAY_NOON)
    service, syncer = build(fake, database, clock)
    try:
        syncer.hours.read_due()
        fake.set_working_hours(ALICE, WEEKDAYS, "07:00", "15:00", "Europe/Stockholm")
        clock.advance(timedelta(minutes=10))
        assert syncer.hours.read_due() == 0  # the poll is an hour
        assert service.working_hours("alice")["working_hours"]["mon"] == ["08:00-16:00"]
        assert all(o.ok for o in syncer.sync_once())  # the link's first sync: a full listing
        assert service.working_hours("alice")["working_hours"]["mon"] == ["07:00-15:00"]
    finally:
        syncer.connectors.close()
