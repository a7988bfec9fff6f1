"""Two-way sync as a Hypothesis state machine, after vdirsyncer's tests/unit/sync/test_sync.py.

One user, two two-way memory calendars ("work", "home"). Between syncs the helpdesk adds,
edits and deletes blocks while the person adds, edits, removes and un-marks events in either
calendar, and cursors expire. After every sync:

- in step: each calendar holds exactly one event per live block, with the block's meaning
  (compared as fingerprints, so a duplicate shows up as a count of two);
- no duplicates: titles are unique per add (edits keep the title), so two live blocks with
  one title mean one OOO period became two;
- nothing lost: content written on one side only (helpdesk, work or home) since the last sync
  and not touched again is what the block says; a deletion on one side only stays deleted.
  When two sides touched the same period before one sync, the conflict policy picks a copy
  and the model only asks for convergence.

Content comes from a handful of shapes (overlapping timed periods, and one all-day period
written both in the user's zone and in UTC, which mean the same days), so both sides often
make the same edit and the "both changed the same way" path is exercised.

A third machine lists like a calendar folder (a removal is reported only for events listed
before), and a rule syncs once without listing again, so the person may delete syncd's fresh
write before syncd has listed it: the block must go too.

One `sync_once` is enough to converge (its push pass carries blocks pulled from one calendar
to the other, and lost races are re-merged inside the pass); the `sync` rule then runs a
second one and asserts it writes nothing, so echoes of our own writes never look like edits.
Deletions held by the safety valve are released at once, as the operator would confirm them:
the person really did remove those events.

The machine builds its own SQLite database (Hypothesis state machines cannot use fixtures)
and runs on a fixed clock, so every edit has the same mtime and the `newest` policy keeps
the helpdesk copy on a tie.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store.blocks import content_of
from store.db import Database
from store.models import BlockRow, CalendarLinkRow, EventLinkRow
from syncd.core.calendars import ChangeSet, SyncWindow
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import Clock, make_config, user

TZ = "Europe/Stockholm"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CALENDARS = ("work", "home")
HELPDESK = "helpdesk"
SHAPES = range(5)


def shape(n: int, title: str) -> OooContent:
    day = NOW + timedelta(days=1)
    match n:
        case 0:
            return timed_content(day, day + timedelta(hours=8), title)
        case 1:
            return timed_content(day + timedelta(hours=4), day + timedelta(hours=8), title)
        case 2:
            return timed_content(day + timedelta(days=1), day + timedelta(days=1, hours=8), title)
        case 3:
            return all_day_content(date(2026, 3, 5), date(2026, 3, 7), TZ, title)
        case _:
            return all_day_content(date(2026, 3, 5), date(2026, 3, 7), "UTC", title)  # same days as 3


def fingerprint(content: OooContent) -> str:
    return content.in_zone(TZ).fingerprint()


class ListedOnly(MemoryConnector):
    """A calendar that reports a removal only for events it listed before, as a calendar folder,
    a CalDAV sync token or a Graph delta may: syncd's own write, deleted before syncd lists the
    calendar again, is then never reported removed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.listed: dict[str, set[str]] = {}

    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        changes = super().changes(calendar, cursor, window)
        seen = self.listed.setdefault(calendar, set())
        changes.removed = [event_id for event_id in changes.removed if event_id in seen]
        seen.update(e.event_id for e in changes.events)
        return changes


class TwoWaySync(RuleBasedStateMachine):
    policy: ClassVar[str] = "newest"
    calendar_type: ClassVar[type[MemoryConnector]] = MemoryConnector

    def __init__(self) -> None:
        super().__init__()
        self.titles = itertools.count(1)
        self.pinned: dict[str, str] = {}  # entity -> fingerprint it must have after the next sync
        self.gone: dict[str, str] = {}  # entity -> title no live block may have after the next sync
        self.touched: dict[str, set[str]] = {}  # entity -> sides that wrote it since the last sync
        self.provisional: dict[tuple[str, str], str] = {}  # (calendar, event id) not yet synced -> entity
        self.loose_titles: set[str] = set()  # one title the person typed into both calendars, then diverged
        self.entity_titles: dict[str, str] = {}
        self.db: Database | None = None

    @initialize()
    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="syncd-props-"))
        self.clock = Clock(NOW)
        self.db = db = Database(f"sqlite:///{self.dir / 'syncd.db'}")
        config = make_config([user("alice", *CALENDARS, tz=TZ)], sinks=(), conflict_policy=self.policy)
        self.calendars = self.calendar_type(clock=self.clock)
        self.service = Syncd(config, db, clock=self.clock)
        self.service.prepare()
        self.syncer = LinkSyncer(self.service, Connectors(config.accounts, overrides={"mem": self.calendars}))

    def teardown(self) -> None:
        if self.db is not None:
            self.db.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- the model ---------------------------------------------------------------------------
    def _title(self) -> str:
        return f"OOO {next(self.titles)}"

    def _links(self) -> dict[tuple[str, str], str]:
        """(calendar, event id) -> block id."""
        def work(session: Session) -> dict[tuple[str, str], str]:
            rows = session.execute(
                select(CalendarLinkRow.calendar, EventLinkRow.event_id, EventLinkRow.block_id)
                .join(CalendarLinkRow, CalendarLinkRow.id == EventLinkRow.link_id))
            return {(cal, event_id): block_id for cal, event_id, block_id in rows}
        return self.service.db.run(work)

    def _blocks(self) -> dict[str, OooContent]:
        def work(session: Session) -> dict[str, OooContent]:
            rows = session.scalars(select(BlockRow).where(BlockRow.deleted_at.is_(None)))
            return {r.id: content_of(r) for r in rows}
        return self.service.db.run(work)

    def _entity_of_event(self, cal: str, event_id: str) -> str:
        if (cal, event_id) in self.provisional:
            return self.provisional[(cal, event_id)]
        block_id = self._links().get((cal, event_id))
        assert block_id is not None, f"{cal}/{event_id} was synced but is not linked"
        return f"block:{block_id}"

    def _wrote(self, entity: str, side: str, content: OooContent | None) -> None:
        """One side wrote `content` (None: deleted) for `entity`."""
        sides = self.touched.setdefault(entity, set())
        sides.add(side)
        if len(sides) > 1:  # a conflict: the policy decides, the model only checks convergence
            self.pinned.pop(entity, None)
            self.gone.pop(entity, None)
            return
        if content is None:
            self.pinned.pop(entity, None)
            self.gone[entity] = self.entity_titles[entity]
        else:
            self.pinned[entity] = fingerprint(content)
            self.gone.pop(entity, None)

    # -- the helpdesk ------------------------------------------------------------------------
    @rule(n=st.sampled_from(SHAPES))
    def helpdesk_add(self, n: int) -> None:
        block = self.service.add_block("alice", shape(n, self._title()))
        self.entity_titles[f"block:{block.id}"] = block.title
        self._wrote(f"block:{block.id}", HELPDESK, self._blocks()[block.id])

    @rule(data=st.data(), n=st.sampled_from(SHAPES))
    def helpdesk_edit(self, data: st.DataObject, n: int) -> None:
        blocks = self._blocks()
        if not blocks:
            return
        block_id = data.draw(st.sampled_from(by_title(blocks)))
        self.service.edit_block(block_id, shape(n, blocks[block_id].title))
        self.entity_titles.setdefault(f"block:{block_id}", blocks[block_id].title)
        self._wrote(f"block:{block_id}", HELPDESK, self._blocks()[block_id])

    @rule(data=st.data())
    def helpdesk_delete(self, data: st.DataObject) -> None:
        blocks = self._blocks()
        if not blocks:
            return
        block_id = data.draw(st.sampled_from(by_title(blocks)))
        self.service.delete_block(block_id)
        self.entity_titles.setdefault(f"block:{block_id}", blocks[block_id].title)
        self._wrote(f"block:{block_id}", HELPDESK, None)

    # -- the person, in either calendar ------------------------------------------------------
    @rule(cal=st.sampled_from(CALENDARS), n=st.sampled_from(SHAPES))
    def person_add(self, cal: str, n: int) -> None:
        content = shape(n, self._title())
        event = self.calendars.add(cal, content, event_id=f"{cal}-{content.title}")
        entity = f"event:{cal}:{event.event_id}"
        self.provisional[(cal, event.event_id)] = entity
        self.entity_titles[entity] = content.title
        self._wrote(entity, cal, content)

    @rule(n=st.sampled_from(SHAPES))
    def person_add_in_both(self, n: int) -> None:
        """The same period typed into both calendars: one block, not two."""
        content = shape(n, self._title())
        entity = f"both:{content.title}"
        for cal in CALENDARS:
            event = self.calendars.add(cal, content, event_id=f"{cal}-{content.title}")
            self.provisional[(cal, event.event_id)] = entity
        self.entity_titles[entity] = content.title
        self._wrote(entity, "both", content)

    def _pick_event(self, data: st.DataObject, cal: str) -> tuple[str, OooContent] | None:
        events = self.calendars.calendar(cal).events
        if not events:
            return None
        event_id = data.draw(st.sampled_from(list(events)))  # insertion order: ids are random
        return event_id, events[event_id].content

    def _person_touch(self, cal: str, event_id: str, title: str, content: OooContent | None) -> None:
        entity = self._entity_of_event(cal, event_id)
        self.entity_titles.setdefault(entity, title)
        if entity.startswith("both:") and self.touched.get(entity, set()) - {cal}:
            self.loose_titles.add(title)  # the two copies now differ: two periods are fine
        self._wrote(entity, cal, content)

    @rule(data=st.data(), cal=st.sampled_from(CALENDARS), n=st.sampled_from(SHAPES))
    def person_edit(self, data: st.DataObject, cal: str, n: int) -> None:
        picked = self._pick_event(data, cal)
        if picked is None:
            return
        event_id, old = picked
        new = self.calendars.edit(cal, event_id, shape(n, old.title)).content
        self._person_touch(cal, event_id, old.title, new)

    @rule(data=st.data(), cal=st.sampled_from(CALENDARS))
    def person_remove(self, data: st.DataObject, cal: str) -> None:
        picked = self._pick_event(data, cal)
        if picked is None:
            return
        event_id, old = picked
        self.calendars.remove(cal, event_id)
        self._person_touch(cal, event_id, old.title, None)

    @rule(data=st.data(), cal=st.sampled_from(CALENDARS))
    def person_unmark(self, data: st.DataObject, cal: str) -> None:
        picked = self._pick_event(data, cal)
        if picked is None:
            return
        event_id, old = picked
        self.calendars.unmark_ooo(cal, event_id)
        self._person_touch(cal, event_id, old.title, None)

    @rule(cal=st.sampled_from(CALENDARS))
    def expire_cursor(self, cal: str) -> None:
        self.calendars.expire(cal)

    # -- syncing -----------------------------------------------------------------------------
    @rule()
    def sync(self) -> None:
        outcomes = self.syncer.sync_once()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        for outcome in outcomes:
            if outcome.held_deletions:  # the operator confirms: the person really cleared the calendar
                self.syncer.release_deletions(outcome.link_id)
                outcomes = self.syncer.sync_once()
                assert all(o.ok and not o.held_deletions for o in outcomes), outcomes
        self._check()
        self._settle_model()
        writes = self.calendars.writes
        assert all(o.ok for o in self.syncer.sync_once())
        assert self.calendars.writes == writes, "a second sync with nothing new must write nothing"
        self._check()

    @rule()
    def sync_and_let_the_person_race(self) -> None:
        """One pass only: the events it writes are not listed again before the person may edit
        (or delete) them."""
        outcomes = self.syncer.sync_once()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        for outcome in outcomes:
            if outcome.held_deletions:
                self.syncer.release_deletions(outcome.link_id)
                assert all(o.ok for o in self.syncer.sync_once())
        self._check()
        self._settle_model()

    def _check(self) -> None:
        blocks = self._blocks()
        want = Counter(fingerprint(c) for c in blocks.values())
        links = self._links()
        for cal in CALENDARS:
            events = self.calendars.calendar(cal).events
            have = Counter(fingerprint(e.content) for e in events.values())
            assert have == want, f"{cal} is not in step with the helpdesk"
            linked = {eid: bid for (c, eid), bid in links.items() if c == cal}
            assert set(linked) == set(events), f"{cal}: an event is not linked"
            assert sorted(linked.values()) == sorted(blocks), f"{cal}: not one event per live block"
            for event_id, block_id in linked.items():
                assert fingerprint(events[event_id].content) == fingerprint(blocks[block_id])
        titles = Counter(c.title for c in blocks.values())
        duplicated = {t for t, n in titles.items() if n > 1} - self.loose_titles
        assert not duplicated, f"one OOO period became several blocks: {duplicated}"
        live = set(want)
        for entity, fp in self.pinned.items():
            assert fp in live, f"{entity}: content written on one side only was lost"
        for entity, title in self.gone.items():
            if entity.startswith("block:"):
                assert entity.removeprefix("block:") not in blocks, f"{entity}: deleted on one side only, but kept"
            if title not in self.loose_titles:
                assert title not in titles, f"{entity}: deleted on one side only, but came back"

    def _settle_model(self) -> None:
        """Every period is linked now: from here on events are named by their block."""
        self.provisional.clear()
        self.pinned.clear()
        self.gone.clear()
        self.touched.clear()


def by_title(blocks: dict[str, OooContent]) -> list[str]:
    """Block ids in an order that does not depend on their (random) values, for replayable draws."""
    return sorted(blocks, key=lambda bid: (blocks[bid].title, fingerprint(blocks[bid])))


FAST = settings(max_examples=25, stateful_step_count=20, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


class TwoWaySyncCalendarWins(TwoWaySync):
    policy = "calendar"


class TwoWaySyncListedOnly(TwoWaySync):
    calendar_type = ListedOnly


TwoWaySync.TestCase.settings = FAST
TwoWaySyncCalendarWins.TestCase.settings = FAST
TwoWaySyncListedOnly.TestCase.settings = FAST
TestTwoWaySync = TwoWaySync.TestCase
TestTwoWaySyncCalendarWins = TwoWaySyncCalendarWins.TestCase
TestTwoWaySyncListedOnly = TwoWaySyncListedOnly.TestCase


@pytest.mark.slow
@pytest.mark.parametrize("machine", [TwoWaySync, TwoWaySyncCalendarWins, TwoWaySyncListedOnly],
                         ids=["newest", "calendar", "listed-only"])
def test_two_way_sync_long_runs(machine: type[TwoWaySync]) -> None:
    run_state_machine_as_test(machine, settings=settings(FAST, max_examples=400, stateful_step_count=40))
