"""The connector contract of `connectors.base`, as one test suite every connector runs.

A subclass of `ConnectorContract` provides three fixtures:

``connector``
    the `CalendarConnector` under test;
``calendar``
    the name of an (empty) calendar in it;
``person``
    a `Person`: how a human edits that calendar outside syncd (adds, edits, deletes an
    event, or turns an OOO event into an ordinary one).

It may override ``window`` (the sync window, read in `TZ`), and set ``LISTS_BLOCK_IDS = False``
for a provider whose listings cannot carry syncd's block id (Microsoft Graph's delta never
returns extended properties): its events are then recognised through stored links, and the
tests check `find_by_block_id` instead. A subclass whose calendar is addressed through the
user's email (Google, Graph) overrides `linked_as`, for the tests that run the sync engine
over the connector.

The tests cover each clause of the contract: full and incremental listings, removals (an
event that stops being OOO is removed; our own write deleted by the person before our next
listing is gone, and the engine deletes its block), the window, create idempotent per block
id, block ids in listings, etag preconditions, NotFound, deleting what is gone,
find_by_block_id, and round trips of all-day dates and timed instants.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from connectors.base import CalendarConnector
from connectors.registry import Connectors
from store.db import Database
from syncd.config import AccountConfig, CalendarLinkConfig, UserConfig
from syncd.core.calendars import ChangeSet, EventDraft, RemoteEvent, SyncWindow, unique_ids
from syncd.core.errors import NotFound, PreconditionFailed
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import make_config

__all__ = ["TZ", "ConnectorContract", "Person", "all_day", "timed"]

TZ = "Europe/Stockholm"


class Person(Protocol):
    """Somebody editing the calendar in their own calendar app."""

    def add(self, content: OooContent, ooo: bool = True) -> str: ...

    def edit(self, event_id: str, content: OooContent) -> None: ...

    def remove(self, event_id: str) -> None: ...

    def unmark_ooo(self, event_id: str) -> None: ...


def _today() -> date:
    return datetime.now(UTC).date()


def timed(days: int, hours: float = 8, start_hour: int = 9, title: str = "Out of office") -> OooContent:
    """A timed period ``days`` from today, starting at ``start_hour``:17 UTC (odd minutes on purpose)."""
    start = datetime.combine(_today() + timedelta(days=days), time(start_hour, 17), tzinfo=UTC)
    return timed_content(start, start + timedelta(hours=hours), title)


def all_day(days: int, length: int = 1, title: str = "Vacation") -> OooContent:
    first = _today() + timedelta(days=days)
    return all_day_content(first, first + timedelta(days=length), TZ, title)


def draft(block_id: str, content: OooContent) -> EventDraft:
    return EventDraft(block_id=block_id, content=content, timezone=TZ)


def by_id(changes: ChangeSet) -> dict[str, RemoteEvent]:
    assert unique_ids(changes.events), "event ids in one change set must be unique"
    return {e.event_id: e for e in changes.events}


class ConnectorContract:
    """Test methods only; see the module docstring for the fixtures a subclass provides."""

    LISTS_BLOCK_IDS = True

    def listed_block_id(self, connector: CalendarConnector, calendar: str, event: RemoteEvent,
                        block_id: str) -> str | None:
        """The block id a listing carries for ``event`` (or, where listings cannot carry one,
        the one `find_by_block_id` finds the event by)."""
        if self.LISTS_BLOCK_IDS:
            return event.block_id
        found = connector.find_by_block_id(calendar, block_id)
        return block_id if found is not None and found.event_id == event.event_id else None

    @pytest.fixture
    def window(self) -> SyncWindow:
        now = datetime.now(UTC)
        return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)

    # -- listings ----------------------------------------------------------------------------
    def test_full_listing_lists_every_ooo_event_and_nothing_else(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        trip = person.add(timed(5))
        vacation = person.add(all_day(10, 3))
        meeting = person.add(timed(6), ooo=False)
        changes = connector.changes(calendar, None, window)
        assert changes.full
        assert changes.cursor
        events = by_id(changes)
        assert set(events) == {trip, vacation}
        assert meeting not in events
        assert events[trip].content == timed(5)
        assert events[vacation].content == all_day(10, 3)

    def test_full_listing_of_an_empty_calendar_is_empty(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        changes = connector.changes(calendar, None, window)
        assert changes.full and changes.events == [] and changes.removed == []

    def test_full_listing_keeps_to_the_window(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        inside = person.add(timed(40))
        straddling = person.add(timed(-31, hours=48))  # ends inside the window
        beyond = person.add(timed(400))
        long_ago = person.add(timed(-60))
        events = by_id(connector.changes(calendar, None, window))
        assert inside in events and straddling in events
        assert beyond not in events and long_ago not in events

    def test_incremental_listing_of_an_unchanged_calendar_is_empty(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        person.add(timed(5))
        first = connector.changes(calendar, None, window)
        again = connector.changes(calendar, first.cursor, window)
        assert not again.full
        assert again.events == [] and again.removed == []
        assert again.cursor

    def test_incremental_listing_has_new_and_changed_events_only(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        edited = person.add(timed(5))
        untouched = person.add(timed(7))
        first = connector.changes(calendar, None, window)
        person.edit(edited, timed(5, hours=3, title="Dentist, then home"))
        added = person.add(all_day(20))
        changes = connector.changes(calendar, first.cursor, window)
        assert not changes.full
        events = by_id(changes)
        assert set(events) == {edited, added}
        assert untouched not in events
        assert events[edited].content == timed(5, hours=3, title="Dentist, then home")
        assert changes.removed == []

    def test_incremental_listing_reports_removed_events(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        gone = person.add(timed(5))
        kept = person.add(timed(6))
        first = connector.changes(calendar, None, window)
        person.remove(gone)
        changes = connector.changes(calendar, first.cursor, window)
        assert changes.removed == [gone]
        assert kept not in by_id(changes)
        assert gone not in by_id(connector.changes(calendar, None, window))

    def test_event_that_stops_being_ooo_is_removed(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        first = connector.changes(calendar, None, window)
        person.unmark_ooo(event_id)
        changes = connector.changes(calendar, first.cursor, window)
        assert event_id in changes.removed
        assert event_id not in by_id(changes)
        assert event_id not in by_id(connector.changes(calendar, None, window))
        assert connector.get(calendar, event_id) is None

    def test_new_ordinary_event_is_not_reported(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        first = connector.changes(calendar, None, window)
        meeting = person.add(timed(5), ooo=False)
        changes = connector.changes(calendar, first.cursor, window)
        assert meeting not in by_id(changes)

    def test_event_moved_out_of_the_window_is_not_reported_removed(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        first = connector.changes(calendar, None, window)
        person.edit(event_id, timed(500))
        changes = connector.changes(calendar, first.cursor, window)
        assert event_id not in changes.removed
        moved = connector.get(calendar, event_id)  # still there, just later
        assert moved is not None and moved.content == timed(500)

    def test_cursor_chain_sees_every_change_once(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        a = person.add(timed(5))
        cursor = connector.changes(calendar, None, window).cursor
        person.edit(a, timed(6))
        second = connector.changes(calendar, cursor, window)
        assert set(by_id(second)) == {a}
        third = connector.changes(calendar, second.cursor, window)
        assert third.events == [] and third.removed == []

    # -- writes ------------------------------------------------------------------------------
    def test_create_returns_the_event_with_its_block_id(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        created = connector.create(calendar, draft("b1", timed(3)))
        assert created.block_id == "b1"
        assert created.content == timed(3)
        assert created.etag
        listed = by_id(connector.changes(calendar, None, window))
        assert self.listed_block_id(connector, calendar, listed[created.event_id], "b1") == "b1"
        assert listed[created.event_id].content == timed(3)
        assert listed[created.event_id].etag == created.etag

    def test_create_is_idempotent_per_block_id(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        first = connector.create(calendar, draft("b1", all_day(4)))
        again = connector.create(calendar, draft("b1", all_day(4)))
        assert again.event_id == first.event_id
        listed = connector.changes(calendar, None, window).events
        assert [e.event_id for e in listed if self.listed_block_id(connector, calendar, e, "b1") == "b1"] == [
            first.event_id]

    def test_own_create_shows_up_in_the_next_incremental_listing(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        cursor = connector.changes(calendar, None, window).cursor
        created = connector.create(calendar, draft("b1", timed(3)))
        changes = connector.changes(calendar, cursor, window)
        assert self.listed_block_id(connector, calendar, by_id(changes)[created.event_id], "b1") == "b1"

    def test_update_replaces_content_and_etag(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        created = connector.create(calendar, draft("b1", timed(3)))
        updated = connector.update(calendar, created.event_id, draft("b1", timed(4, hours=2)), created.etag)
        assert updated.event_id == created.event_id
        assert updated.content == timed(4, hours=2)
        assert updated.etag != created.etag
        assert updated.block_id == "b1"
        listed = by_id(connector.changes(calendar, None, window))[created.event_id]
        assert listed.content == timed(4, hours=2)
        assert listed.etag == updated.etag
        current = connector.get(calendar, created.event_id)
        assert current is not None and current.content == timed(4, hours=2)

    def test_update_of_a_persons_event_takes_it_over(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(all_day(8, 2))
        etag = by_id(connector.changes(calendar, None, window))[event_id].etag
        updated = connector.update(calendar, event_id, draft("b7", all_day(8, 5)), etag)
        assert updated.content == all_day(8, 5)
        assert updated.block_id == "b7"
        assert by_id(connector.changes(calendar, None, window))[event_id].content == all_day(8, 5)

    def test_update_with_a_stale_etag_fails(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        stale = by_id(connector.changes(calendar, None, window))[event_id].etag
        person.edit(event_id, timed(5, title="Sick"))
        with pytest.raises(PreconditionFailed):
            connector.update(calendar, event_id, draft("b1", timed(9)), stale)
        current = connector.get(calendar, event_id)
        assert current is not None and current.content == timed(5, title="Sick")

    def test_update_after_our_own_update_needs_the_new_etag(
        self, connector: CalendarConnector, calendar: str
    ) -> None:
        created = connector.create(calendar, draft("b1", timed(3)))
        connector.update(calendar, created.event_id, draft("b1", timed(4)), created.etag)
        with pytest.raises(PreconditionFailed):
            connector.update(calendar, created.event_id, draft("b1", timed(5)), created.etag)

    def test_update_of_a_missing_event_raises_not_found(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        with pytest.raises(NotFound):
            connector.update(calendar, "no-such-event", draft("b1", timed(3)), "any-etag")
        event_id = person.add(timed(5))
        etag = by_id(connector.changes(calendar, None, window))[event_id].etag
        person.remove(event_id)
        with pytest.raises(NotFound):
            connector.update(calendar, event_id, draft("b1", timed(3)), etag)

    def test_delete_removes_the_event(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        created = connector.create(calendar, draft("b1", timed(3)))
        cursor = connector.changes(calendar, None, window).cursor
        connector.delete(calendar, created.event_id, created.etag)
        changes = connector.changes(calendar, cursor, window)
        assert changes.removed == [created.event_id]
        assert connector.get(calendar, created.event_id) is None
        assert connector.find_by_block_id(calendar, "b1") is None

    def test_delete_with_a_stale_etag_fails(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        stale = by_id(connector.changes(calendar, None, window))[event_id].etag
        person.edit(event_id, timed(6))
        with pytest.raises(PreconditionFailed):
            connector.delete(calendar, event_id, stale)
        assert connector.get(calendar, event_id) is not None

    def test_delete_of_what_is_gone_succeeds(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        connector.delete(calendar, "no-such-event", None)
        connector.delete(calendar, "no-such-event", "any-etag")
        created = connector.create(calendar, draft("b1", timed(3)))
        connector.delete(calendar, created.event_id, created.etag)
        connector.delete(calendar, created.event_id, created.etag)
        event_id = person.add(timed(5))
        etag = by_id(connector.changes(calendar, None, window))[event_id].etag
        person.remove(event_id)
        connector.delete(calendar, event_id, etag)

    def test_delete_without_an_etag_deletes(
        self, connector: CalendarConnector, calendar: str, person: Person
    ) -> None:
        event_id = person.add(timed(5))
        connector.delete(calendar, event_id, None)
        assert connector.get(calendar, event_id) is None

    def test_our_write_deleted_before_our_next_listing_is_gone(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        """Written by us, deleted by the person before our next listing. A listing need not report
        the removal of an event it never listed (a folder, a CalDAV token, a Graph delta may not),
        but it must not show the event, and `get`, which the engine then asks, must say it is gone."""
        cursor = connector.changes(calendar, None, window).cursor
        created = connector.create(calendar, draft("b1", timed(3)))
        person.remove(created.event_id)
        changes = connector.changes(calendar, cursor, window)
        assert created.event_id not in by_id(changes)
        assert connector.get(calendar, created.event_id) is None

    # -- the engine over this connector ----------------------------------------------------------
    def linked_as(self, calendar: str) -> tuple[str, str]:
        """(the user's email, the link's calendar in the config) that address ``calendar``."""
        return "alice@example.com", calendar

    def engine(self, connector: CalendarConnector, calendar: str, tmp_path: Path) -> tuple[Syncd, LinkSyncer]:
        """The sync engine on SQLite, with one user whose one two-way link is ``calendar``."""
        email, linked = self.linked_as(calendar)
        alice = UserConfig(id="alice", email=email, timezone=TZ,
                           calendars=(CalendarLinkConfig(account="cal", calendar=linked),))
        config = make_config([alice], accounts={"cal": AccountConfig(name="cal", provider=connector.provider)})
        service = Syncd(config, Database(f"sqlite:///{tmp_path / 'contract.db'}"))
        service.prepare()
        return service, LinkSyncer(service, Connectors(config.accounts, overrides={"cal": connector}))

    def test_written_by_us_deleted_by_the_person_before_our_next_listing(
        self, connector: CalendarConnector, calendar: str, person: Person, tmp_path: Path
    ) -> None:
        service, syncer = self.engine(connector, calendar, tmp_path)
        try:
            syncer.sync_once()
            block = service.add_block("alice", timed(3))
            syncer.sync_once()  # lists (nothing new), then writes the block's event
            written = connector.find_by_block_id(calendar, block.id)
            assert written is not None
            person.remove(written.event_id)  # before syncd lists the calendar again
            assert all(outcome.ok for outcome in syncer.sync_once())
            assert service.list_blocks("alice") == []
            assert all(outcome.ok and not outcome.actions for outcome in syncer.sync_once())
        finally:
            service.db.dispose()

    def test_written_by_us_deleted_by_the_person_while_the_helpdesk_edited_the_block(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow, tmp_path: Path
    ) -> None:
        service, syncer = self.engine(connector, calendar, tmp_path)
        try:
            syncer.sync_once()
            block = service.add_block("alice", timed(3))
            syncer.sync_once()
            written = connector.find_by_block_id(calendar, block.id)
            assert written is not None
            person.remove(written.event_id)
            service.edit_block(block.id, timed(4, title="Longer trip"))  # the edit wins: written again
            assert all(outcome.ok for outcome in syncer.sync_once())
            [kept] = service.list_blocks("alice")
            assert kept.id == block.id and kept.content == timed(4, title="Longer trip")
            again = connector.find_by_block_id(calendar, block.id)
            assert again is not None and again.content == timed(4, title="Longer trip")
            listed = [e for e in connector.changes(calendar, None, window).events
                      if self.listed_block_id(connector, calendar, e, block.id) == block.id]
            assert [e.event_id for e in listed] == [again.event_id]
        finally:
            service.db.dispose()

    # -- lookups -------------------------------------------------------------------------------
    def test_find_by_block_id(self, connector: CalendarConnector, calendar: str, window: SyncWindow) -> None:
        connector.changes(calendar, None, window)
        one = connector.create(calendar, draft("b1", timed(3)))
        two = connector.create(calendar, draft("b2", all_day(6)))
        found = connector.find_by_block_id(calendar, "b1")
        assert found is not None and found.event_id == one.event_id and found.content == timed(3)
        found = connector.find_by_block_id(calendar, "b2")
        assert found is not None and found.event_id == two.event_id
        assert connector.find_by_block_id(calendar, "b3") is None

    def test_get_follows_the_person(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        connector.changes(calendar, None, window)
        current = connector.get(calendar, event_id)
        assert current is not None and current.content == timed(5)
        person.edit(event_id, timed(6))
        current = connector.get(calendar, event_id)
        assert current is not None and current.content == timed(6)
        person.remove(event_id)
        assert connector.get(calendar, event_id) is None
        assert connector.get(calendar, "no-such-event") is None

    def test_persons_edit_changes_the_etag(
        self, connector: CalendarConnector, calendar: str, person: Person, window: SyncWindow
    ) -> None:
        event_id = person.add(timed(5))
        before = by_id(connector.changes(calendar, None, window))[event_id].etag
        person.edit(event_id, timed(5, title="Parental leave"))
        after = by_id(connector.changes(calendar, None, window))[event_id].etag
        assert before != after

    # -- round trips ---------------------------------------------------------------------------
    def test_all_day_round_trip_keeps_the_dates(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        content = all_day(12, 5, title="Semester")
        created = connector.create(calendar, draft("b1", content))
        listed = by_id(connector.changes(calendar, None, window))[created.event_id].content
        assert listed.all_day
        assert (listed.start_date, listed.end_date) == (content.start_date, content.end_date)
        assert (listed.start, listed.end) == (content.start, content.end)
        assert listed.fingerprint() == content.fingerprint()

    def test_timed_round_trip_keeps_the_instants(
        self, connector: CalendarConnector, calendar: str, window: SyncWindow
    ) -> None:
        content = timed(9, hours=27.5, start_hour=22, title="Night train to Kiruna")
        created = connector.create(calendar, draft("b1", content))
        listed = by_id(connector.changes(calendar, None, window))[created.event_id].content
        assert not listed.all_day
        assert (listed.start, listed.end) == (content.start, content.end)
        assert listed.fingerprint() == content.fingerprint()
