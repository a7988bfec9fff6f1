"""Two-way calendar sync end to end: the service and `LinkSyncer` on a real
database, with memory calendars that each test edits as the person would.

Every scenario starts on Monday 2026-03-02 09:00 UTC (the `clock` fixture); "day N" is N days later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store.models import CalendarLinkRow, EventLinkRow
from syncd.config import CalendarLinkConfig, UserConfig
from syncd.core.calendars import EventDraft, RemoteEvent
from syncd.core.ooo import OooContent, timed_content
from syncd.sync import LinkSyncer
from tests.conftest import Harness, user

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TZ = "Europe/Stockholm"
HOUR = timedelta(hours=1)
HarnessFactory = Callable[..., Harness]
View = list[tuple[datetime, datetime, str]]


def ooo(day: int, title: str, hours: int = 8) -> OooContent:
    start = START + timedelta(days=day)
    return timed_content(start, start + timedelta(hours=hours), title)


def view(c: OooContent) -> tuple[datetime, datetime, str]:
    return (c.start, c.end, c.title)


def calendar_view(h: Harness, cal: str) -> View:
    return sorted(view(e.content) for e in h.calendars.calendar(cal).events.values())


def helpdesk_view(h: Harness, uid: str = "alice") -> View:
    return sorted((b.start, b.end, b.title) for b in h.service.list_blocks(uid))


def only_event(h: Harness, cal: str) -> RemoteEvent:
    (event,) = h.calendars.calendar(cal).events.values()
    return event


def link_row(h: Harness, cal: str) -> CalendarLinkRow:
    def work(session: Session) -> CalendarLinkRow:
        row = session.scalars(select(CalendarLinkRow).where(CalendarLinkRow.calendar == cal)).one()
        session.expunge(row)
        return row
    return h.service.db.run(work)


def event_links(h: Harness, cal: str) -> dict[str, str]:
    """event id -> block id, for one calendar."""
    def work(session: Session) -> dict[str, str]:
        rows = session.execute(select(EventLinkRow.event_id, EventLinkRow.block_id).join(
            CalendarLinkRow, CalendarLinkRow.id == EventLinkRow.link_id).where(CalendarLinkRow.calendar == cal))
        return {event_id: block_id for event_id, block_id in rows}
    return h.service.db.run(work)


def assert_in_step(h: Harness, *cals: str, uid: str = "alice") -> None:
    """Every calendar holds exactly one linked event per live block, with the block's content."""
    blocks = {b.id: (b.start, b.end, b.title) for b in h.service.list_blocks(uid)}
    for cal in cals:
        events = h.calendars.calendar(cal).events
        links = event_links(h, cal)
        assert set(links) == set(events), f"{cal}: every event linked"
        assert sorted(links.values()) == sorted(blocks), f"{cal}: one event per live block"
        for event_id, block_id in links.items():
            assert view(events[event_id].content) == blocks[block_id], f"{cal}: event shows its block"


def two_way(h_factory: HarnessFactory, *cals: str, **daemon: Any) -> Harness:
    return h_factory([user("alice", *cals, tz=TZ)], **daemon)


# -- adding ----------------------------------------------------------------------------------
def test_calendar_ooo_becomes_a_block_and_is_mirrored_to_the_other_calendar(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    h.sync()
    h.calendars.add("work", ooo(1, "Dentist"))
    h.sync()
    assert helpdesk_view(h) == [view(ooo(1, "Dentist"))]
    (block,) = h.service.list_blocks("alice")
    assert block.source == "calendar:mem/work"
    assert calendar_view(h, "home") == [view(ooo(1, "Dentist"))]
    assert only_event(h, "home").block_id == block.id  # our marker, for echo suppression
    assert_in_step(h, "work", "home")


def test_helpdesk_block_reaches_two_way_and_push_calendars_but_not_pull_ones(harness_factory: HarnessFactory) -> None:
    alice = UserConfig(id="alice", email="alice@example.com", timezone=TZ, calendars=(
        CalendarLinkConfig("mem", "work", direction="two-way"),
        CalendarLinkConfig("mem", "shared", direction="push"),
        CalendarLinkConfig("mem", "team", direction="pull"),
    ))
    h = harness_factory([alice])
    block = h.service.add_block("alice", ooo(2, "Conference"))
    h.sync()
    assert calendar_view(h, "work") == [view(ooo(2, "Conference"))]
    assert calendar_view(h, "shared") == [view(ooo(2, "Conference"))]
    assert calendar_view(h, "team") == []
    assert only_event(h, "work").block_id == block.id


def test_pull_calendar_ooo_becomes_a_block_and_reaches_two_way_calendars(harness_factory: HarnessFactory) -> None:
    alice = UserConfig(id="alice", email="alice@example.com", timezone=TZ, calendars=(
        CalendarLinkConfig("mem", "team", direction="pull"),
        CalendarLinkConfig("mem", "work", direction="two-way"),
    ))
    h = harness_factory([alice])
    h.calendars.add("team", ooo(1, "Offsite"))
    h.sync()
    assert helpdesk_view(h) == [view(ooo(1, "Offsite"))]
    assert calendar_view(h, "work") == [view(ooo(1, "Offsite"))]
    assert len(h.calendars.calendar("team").events) == 1  # never written to


def test_push_calendar_does_not_turn_its_events_into_blocks(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user("alice", "shared", tz=TZ, direction="push")])
    h.calendars.add("shared", ooo(1, "Somebody else's note"))
    h.sync()
    assert helpdesk_view(h) == []


# -- editing -----------------------------------------------------------------------------------
def test_calendar_edit_updates_the_block_and_the_mirror(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    event = h.calendars.add("work", ooo(1, "Dentist"))
    h.sync()
    (block,) = h.service.list_blocks("alice")
    h.clock.advance(HOUR)
    h.calendars.edit("work", event.event_id, ooo(3, "Dentist, moved"))
    h.sync()
    (after,) = h.service.list_blocks("alice")
    assert after.id == block.id and after.revision > block.revision
    assert helpdesk_view(h) == [view(ooo(3, "Dentist, moved"))]
    assert calendar_view(h, "home") == [view(ooo(3, "Dentist, moved"))]
    assert_in_step(h, "work", "home")


def test_helpdesk_edit_updates_every_calendar(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    block = h.service.add_block("alice", ooo(1, "Training"))
    h.sync()
    ids = {cal: only_event(h, cal).event_id for cal in ("work", "home")}
    h.service.edit_block(block.id, ooo(2, "Training, day two"))
    h.sync()
    for cal in ("work", "home"):
        assert calendar_view(h, cal) == [view(ooo(2, "Training, day two"))]
        assert only_event(h, cal).event_id == ids[cal]  # updated in place, not re-created
    assert_in_step(h, "work", "home")


def test_end_block_early_reaches_the_calendars(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    block = h.service.add_block("alice", timed_content(START - HOUR, START + 8 * HOUR, "Sick"))
    h.sync()
    h.clock.advance(HOUR)
    h.service.end_block_early(block.id)
    h.sync()
    for cal in ("work", "home"):
        assert calendar_view(h, cal) == [(START - HOUR, START + HOUR, "Sick")]


# -- deleting ----------------------------------------------------------------------------------
def test_calendar_delete_deletes_the_block_and_the_mirror(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    event = h.calendars.add("work", ooo(1, "Dentist"))
    h.sync()
    h.calendars.remove("work", event.event_id)
    h.sync()
    assert helpdesk_view(h) == []
    assert calendar_view(h, "home") == []
    assert event_links(h, "work") == {} and event_links(h, "home") == {}


def test_helpdesk_delete_deletes_every_event(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    block = h.service.add_block("alice", ooo(1, "Training"))
    h.sync()
    h.service.delete_block(block.id)
    h.sync()
    assert calendar_view(h, "work") == [] and calendar_view(h, "home") == []
    assert event_links(h, "work") == {} and event_links(h, "home") == {}


def test_event_that_stops_being_ooo_deletes_the_block_and_the_mirrors(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home", "phone")
    event = h.calendars.add("home", ooo(1, "Vacation"))
    h.sync()
    assert calendar_view(h, "work") == calendar_view(h, "phone") == [view(ooo(1, "Vacation"))]
    h.calendars.unmark_ooo("home", event.event_id)
    h.sync()
    assert helpdesk_view(h) == []
    assert calendar_view(h, "work") == [] and calendar_view(h, "phone") == []
    assert event.event_id in h.calendars.calendar("home").not_ooo  # the person's event itself is left alone


def test_second_sync_is_quiet(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    h.calendars.add("work", ooo(1, "Dentist"))
    h.service.add_block("alice", ooo(2, "Training"))
    h.sync()
    writes = h.calendars.writes
    h.sync()
    h.sync()
    assert h.calendars.writes == writes  # our own writes come back as echoes, not as changes
    assert_in_step(h, "work", "home")


# -- recovery ------------------------------------------------------------------------------------
def test_expired_cursor_resyncs_without_duplicates_or_spurious_deletions(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    h.calendars.add("work", ooo(1, "Dentist"))
    h.calendars.add("home", ooo(2, "Vacation"))
    h.service.add_block("alice", ooo(3, "Training"))
    h.service.add_block("alice", ooo(400, "Sabbatical"))  # beyond the window: not in a full listing
    h.sync()
    before, writes = helpdesk_view(h), h.calendars.writes
    h.calendars.expire("work")
    h.calendars.expire("home")
    outcomes = h.sync()
    assert all(o.ok for o in outcomes)
    assert helpdesk_view(h) == before
    assert calendar_view(h, "work") == calendar_view(h, "home") == before
    assert h.calendars.writes == writes
    assert_in_step(h, "work", "home")


def test_expired_cursor_resync_still_applies_changes_made_meanwhile(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    dentist = h.calendars.add("work", ooo(1, "Dentist"))
    h.calendars.add("work", ooo(2, "Vacation"))
    h.service.add_block("alice", ooo(3, "Training"))
    h.sync()
    vacation_home = next(e for e in h.calendars.calendar("home").events.values() if e.content.title == "Vacation")
    h.calendars.expire("work")
    h.calendars.expire("home")
    h.calendars.edit("work", dentist.event_id, ooo(4, "Dentist, moved"))
    h.calendars.remove("home", vacation_home.event_id)
    h.service.add_block("alice", ooo(5, "Course"))
    h.sync()
    expected = sorted([view(ooo(4, "Dentist, moved")), view(ooo(3, "Training")), view(ooo(5, "Course"))])
    assert helpdesk_view(h) == expected
    assert calendar_view(h, "work") == calendar_view(h, "home") == expected
    assert_in_step(h, "work", "home")


@pytest.mark.parametrize("synced_before", [False, True], ids=["first-sync", "incremental"])
def test_crash_after_create_before_link_is_adopted_not_duplicated(harness_factory: HarnessFactory,
                                                                 synced_before: bool) -> None:
    h = two_way(harness_factory, "work", "home")
    if synced_before:
        h.sync()
    block = h.service.add_block("alice", ooo(1, "Training"))
    # syncd wrote the event, then died before saving the link.
    h.calendars.create("work", EventDraft(block.id, ooo(1, "Training"), TZ))
    assert event_links(h, "work") == {}
    h.sync()
    assert len(h.calendars.calendar("work").events) == 1
    assert helpdesk_view(h) == [view(ooo(1, "Training"))]  # no block made from our own event
    assert_in_step(h, "work", "home")


def test_crash_after_create_then_helpdesk_edit_keeps_the_edit(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    h.sync()
    block = h.service.add_block("alice", ooo(1, "Training"))
    h.calendars.create("work", EventDraft(block.id, ooo(1, "Training"), TZ))  # crash before the link
    h.clock.advance(HOUR)
    h.service.edit_block(block.id, ooo(2, "Training, moved"))
    h.sync()
    assert helpdesk_view(h) == [view(ooo(2, "Training, moved"))]
    assert calendar_view(h, "work") == calendar_view(h, "home") == [view(ooo(2, "Training, moved"))]
    assert_in_step(h, "work", "home")


def test_stale_event_of_ours_returned_by_create_is_brought_up_to_date(harness_factory: HarnessFactory) -> None:
    # Beyond the window the crashed write is in no change set, so the next pass tries to create
    # the event again and the idempotent `create` hands back the old one.
    h = two_way(harness_factory, "work")
    h.sync()
    block = h.service.add_block("alice", ooo(400, "Sabbatical"))
    h.calendars.create("work", EventDraft(block.id, ooo(400, "Sabbatical"), TZ))  # crash before the link
    h.service.edit_block(block.id, ooo(401, "Sabbatical, extended"))
    h.sync()
    assert calendar_view(h, "work") == [view(ooo(401, "Sabbatical, extended"))]
    assert_in_step(h, "work")


# -- lost write races ---------------------------------------------------------------------------
class RacingCalendar(MemoryConnector):
    """A memory calendar where the person saves an edit between syncd's read and its write."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        super().__init__(clock=clock)
        self.person_edits: dict[str, OooContent] = {}  # event id -> what the person saves first
        self.lost_races = 0

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        person = self.person_edits.pop(event_id, None)
        if person is not None:
            self.edit(calendar, event_id, person)
            self.lost_races += 1
        return super().update(calendar, event_id, draft, etag)


def racing(h: Harness) -> tuple[Harness, RacingCalendar]:
    calendars = RacingCalendar(h.clock)
    syncer = LinkSyncer(h.service, Connectors(h.service.config.accounts, overrides={"mem": calendars}))
    return replace(h, calendars=calendars, syncer=syncer), calendars


@pytest.mark.parametrize(("policy", "kept"), [("newest", "calendar"), ("calendar", "calendar"),
                                              ("helpdesk", "helpdesk")])
def test_lost_write_race_rereads_and_remerges(harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture,
                                              policy: str, kept: str) -> None:
    h, calendars = racing(harness_factory([user("alice", "work", tz=TZ)], conflict_policy=policy))
    block = h.service.add_block("alice", ooo(1, "Training"))
    h.sync()
    event = only_event(h, "work")
    h.clock.advance(HOUR)
    h.service.edit_block(block.id, ooo(2, "Training, helpdesk"))
    h.clock.advance(HOUR)
    calendars.person_edits[event.event_id] = ooo(3, "Training, person")  # later than the helpdesk edit
    with caplog.at_level(logging.WARNING, logger="syncd.sync"):
        (outcome,) = h.sync()
    assert outcome.ok and calendars.lost_races == 1
    winner = ooo(3, "Training, person") if kept == "calendar" else ooo(2, "Training, helpdesk")
    assert helpdesk_view(h) == calendar_view(h, "work") == [view(winner)]
    # Whoever won, it was decided after re-reading the person's edit, and logged as a conflict:
    # both versions' times, and no title (what someone wrote in their calendar stays out of logs).
    (conflict,) = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage()]
    assert block.id in conflict and "title differs" in conflict
    assert "2026-03-04T09:00:00Z" in conflict and "2026-03-05T09:00:00Z" in conflict
    assert "Training" not in conflict
    assert_in_step(h, "work")


def test_held_deletions_stay_held_after_a_lost_write_race(harness_factory: HarnessFactory) -> None:
    h, calendars = racing(harness_factory([user("alice", "work", tz=TZ)]))
    blocks = [h.service.add_block("alice", ooo(day, f"Block {day}")) for day in range(1, 6)]
    h.sync()
    events = {e.block_id: e for e in calendars.calendar("work").events.values()}
    for b in blocks[:4]:  # the provider suddenly lists almost nothing ...
        calendars.remove("work", events[b.id].event_id)
    h.service.edit_block(blocks[4].id, ooo(5, "Block 5, helpdesk"))  # ... while a write to the last one races
    calendars.person_edits[events[blocks[4].id].event_id] = ooo(6, "Block 5, person")
    (outcome,) = h.sync()
    assert calendars.lost_races == 1
    assert outcome.held_deletions == 4
    assert link_row(h, "work").state == "held"
    assert len(h.service.list_blocks("alice")) == 5
    h.syncer.release_deletions(link_row(h, "work").id)
    h.sync()
    assert len(h.service.list_blocks("alice")) == 1
    assert link_row(h, "work").state == "ok"


# -- conflicts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("policy", "later", "kept"), [
    pytest.param("newest", "calendar", "calendar", id="newest-calendar-later"),
    pytest.param("newest", "helpdesk", "helpdesk", id="newest-helpdesk-later"),
    pytest.param("calendar", "helpdesk", "calendar", id="calendar"),
    pytest.param("helpdesk", "calendar", "helpdesk", id="helpdesk"),
])
def test_conflict_policy(harness_factory: HarnessFactory, caplog: pytest.LogCaptureFixture, policy: str,
                         later: str, kept: str) -> None:
    h = two_way(harness_factory, "work", "home", conflict_policy=policy)
    block = h.service.add_block("alice", ooo(1, "Trip"))
    h.sync()
    event = only_event(h, "work")
    helpdesk, calendar = ooo(2, "Trip, per helpdesk"), ooo(3, "Trip, per calendar")
    edits: list[Callable[[], object]] = [lambda: h.service.edit_block(block.id, helpdesk),
                                         lambda: h.calendars.edit("work", event.event_id, calendar)]
    for edit in edits if later == "calendar" else reversed(edits):
        h.clock.advance(HOUR)
        edit()
    with caplog.at_level(logging.WARNING, logger="syncd.sync"):
        h.sync()
    winner = calendar if kept == "calendar" else helpdesk
    assert helpdesk_view(h) == calendar_view(h, "work") == calendar_view(h, "home") == [view(winner)]
    (message,) = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage()]
    # Both versions' times, never their titles (a person's words stay out of logs).
    assert "2026-03-04T09:00:00Z" in message and "2026-03-05T09:00:00Z" in message and "Trip" not in message
    assert f"kept the {kept} copy" in message and policy in message
    assert "alice/mem/work" in message
    assert_in_step(h, "work", "home")


def test_conflict_between_two_calendars_converges(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home")
    h.service.add_block("alice", ooo(1, "Trip"))
    h.sync()
    h.clock.advance(HOUR)
    h.calendars.edit("work", only_event(h, "work").event_id, ooo(2, "Trip, work"))
    h.clock.advance(HOUR)
    h.calendars.edit("home", only_event(h, "home").event_id, ooo(3, "Trip, home"))
    h.sync()
    assert len(helpdesk_view(h)) == 1
    assert calendar_view(h, "work") == calendar_view(h, "home") == helpdesk_view(h)
    assert_in_step(h, "work", "home")


# -- the safety valve --------------------------------------------------------------------------------
def test_mass_deletion_is_held_until_released(harness_factory: HarnessFactory,
                                              caplog: pytest.LogCaptureFixture) -> None:
    h = two_way(harness_factory, "work", "home", mass_delete_min=3)
    for day in range(1, 5):
        h.service.add_block("alice", ooo(day, f"Block {day}"))
    h.sync()
    for event in list(h.calendars.calendar("work").events.values()):  # a provider outage empties the listing
        h.calendars.remove("work", event.event_id)
    with caplog.at_level(logging.WARNING, logger="syncd.sync"):
        (work, home) = h.sync()
    assert work.held_deletions == 4
    row = link_row(h, "work")
    assert row.state == "held" and row.held_deletions == 4 and f"release-deletions {row.id}" in (row.last_error or "")
    assert len(h.service.list_blocks("alice")) == 4  # kept
    assert len(calendar_view(h, "home")) == 4
    assert sum("held 4 deletions" in r.getMessage() for r in caplog.records) == 1
    h.sync()  # still held on the next poll, and not reported again
    assert len(h.service.list_blocks("alice")) == 4
    assert sum("held 4 deletions" in r.getMessage() for r in caplog.records) == 1

    h.syncer.release_deletions(row.id)
    h.sync()
    assert h.service.list_blocks("alice") == []
    assert calendar_view(h, "home") == []
    row = link_row(h, "work")
    assert row.state == "ok" and row.held_deletions == 0 and not row.release_deletions


def test_few_deletions_are_not_held(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work", "home", mass_delete_min=3)
    for day in range(1, 3):
        h.service.add_block("alice", ooo(day, f"Block {day}"))
    h.sync()
    for event in list(h.calendars.calendar("work").events.values()):
        h.calendars.remove("work", event.event_id)
    h.sync()
    assert h.service.list_blocks("alice") == []
    assert link_row(h, "work").state == "ok"


# -- status and failures ----------------------------------------------------------------------------
def test_status_follows_calendar_sourced_blocks(harness_factory: HarnessFactory) -> None:
    h = two_way(harness_factory, "work")
    h.sync()
    event = h.calendars.add("work", timed_content(START - HOUR, START + 8 * HOUR, "Sick"))
    assert h.service.status("alice").status == "available"
    h.sync()
    status = h.service.status("alice")
    assert status.status == "away"
    assert status.blocks == [b.id for b in h.service.list_blocks("alice")]
    h.calendars.remove("work", event.event_id)
    h.sync()
    assert h.service.status("alice").status == "available"


def test_link_with_unknown_account_fails_alone(harness_factory: HarnessFactory,
                                               caplog: pytest.LogCaptureFixture) -> None:
    h = harness_factory([user("aaron", "work", tz=TZ, account="nope"), user("bob", "work", tz=TZ)])
    h.calendars.add("work", ooo(1, "Dentist"))
    with caplog.at_level(logging.WARNING, logger="syncd.sync"):
        aaron, bob = h.sync()
    assert not aaron.ok and aaron.error is not None and "nope" in aaron.error and "\n" not in aaron.error
    assert bob.ok
    assert helpdesk_view(h, "bob") == [view(ooo(1, "Dentist"))]
    failures = [r for r in caplog.records if "aaron" in r.getMessage()]
    assert len(failures) == 1
    assert "\n" not in failures[0].getMessage() and not failures[0].exc_info
    states = h.service.db.run(lambda s: {r.user_id: r.state for r in s.scalars(select(CalendarLinkRow))})
    assert states == {"aaron": "error", "bob": "ok"}
