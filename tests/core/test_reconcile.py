"""The three-way merge, tested against the pure `plan()` in `syncd.core.reconcile`.

No database and no connector: every case is a hand-built (blocks, pairs, change set) and the
exact list of actions it must produce. Names follow the contract: "block" is the helpdesk
side, "event" the calendar side, the "base" the fingerprint both had when last in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.core.calendars import ChangeSet, RemoteEvent, SyncWindow
from syncd.core.ooo import OooContent, timed_content
from syncd.core.reconcile import (
    Adopt,
    BlockView,
    Conflict,
    CreateBlock,
    CreateEvent,
    DeleteBlock,
    DeleteEvent,
    DeletionSafety,
    LinkView,
    Pair,
    Plan,
    Relink,
    Unlink,
    UpdateBlock,
    UpdateEvent,
    plan,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WINDOW = SyncWindow(NOW - timedelta(days=30), NOW + timedelta(days=365), "UTC")
HOUR = timedelta(hours=1)
DEFAULT_SAFETY = DeletionSafety()  # hold above half of the linked blocks and at least 3


def content(day: int, title: str) -> OooContent:
    start = NOW + timedelta(days=day)
    return timed_content(start, start + timedelta(hours=8), title)


BASE = content(1, "Dentist")  # what both sides said at the last sync
MINE = content(2, "Dentist, moved in the helpdesk")
THEIRS = content(3, "Dentist, moved in the calendar")
FAR = content(400, "Sabbatical")  # beyond the window's end
OLD = content(-40, "Long ago")  # ended before the window's start


def block(bid: str = "b1", c: OooContent = BASE, *, updated: datetime = NOW, deleted: bool = False) -> BlockView:
    return BlockView(bid, c, updated, deleted)


def event(eid: str = "e1", c: OooContent = BASE, *, etag: str = "t1", block_id: str | None = None,
          updated: datetime | None = NOW) -> RemoteEvent:
    return RemoteEvent(eid, etag, c, block_id=block_id, updated=updated)


def pair(bid: str = "b1", eid: str = "e1", *, etag: str = "t1", base: OooContent = BASE) -> Pair:
    return Pair(bid, eid, etag, base.fingerprint())


def run(*, blocks: Sequence[BlockView] = (), pairs: Sequence[Pair] = (), events: Sequence[RemoteEvent] = (),
        removed: Sequence[str] = (), full: bool = False, direction: Any = "two-way", policy: Any = "newest",
        safety: DeletionSafety = DEFAULT_SAFETY, release: bool = False) -> Plan:
    return plan(link=LinkView(1, direction, "calendar:mem/work"), blocks={b.id: b for b in blocks},
                pairs=list(pairs), changes=ChangeSet(list(events), list(removed), "c1", full), window=WINDOW,
                policy=policy, safety=safety, release_deletions=release)


EDITED = event(c=THEIRS, etag="t2")  # the linked event, edited in the calendar
TOUCHED = event(etag="t2")  # the linked event re-saved without a change of meaning


# -- one linked pair, two-way -------------------------------------------------------------
PAIR_CASES = [
    pytest.param(block(), [], [], [], id="unchanged-and-not-in-change-set"),
    pytest.param(block(), [event()], [], [], id="unchanged-and-listed-with-same-etag"),
    pytest.param(block(), [TOUCHED], [], [Relink("b1", TOUCHED)], id="event-new-etag-same-meaning-relinks"),
    pytest.param(block(c=MINE), [], [], [UpdateEvent("b1", "e1", "t1")], id="block-changed-only"),
    pytest.param(block(c=MINE), [event()], [], [UpdateEvent("b1", "e1", "t1")], id="block-changed-event-listed"),
    pytest.param(block(), [EDITED], [], [UpdateBlock("b1", EDITED)], id="event-changed-only"),
    pytest.param(block(c=THEIRS), [EDITED], [], [Relink("b1", EDITED)], id="both-changed-same-content-relinks"),
    pytest.param(block(deleted=True), [], [], [DeleteEvent("b1", "e1", "t1")],
                 id="block-deleted-event-unchanged-deletes-event"),
    pytest.param(block(deleted=True), [TOUCHED], [], [DeleteEvent("b1", "e1", "t2")],
                 id="block-deleted-event-resaved-deletes-with-fresh-etag"),
    pytest.param(block(deleted=True), [EDITED], [], [UpdateBlock("b1", EDITED, undelete=True)],
                 id="block-deleted-event-changed-undeletes"),
    pytest.param(block(), [], ["e1"], [DeleteBlock("b1", "e1")], id="event-removed-block-unchanged-deletes-block"),
    pytest.param(block(c=MINE), [], ["e1"], [CreateEvent("b1", replaces="e1")],
                 id="event-removed-block-changed-recreates-event"),
    pytest.param(block(deleted=True), [], ["e1"], [Unlink("b1", "e1")], id="both-deleted-unlinks"),
]


@pytest.mark.parametrize(("the_block", "events", "removed", "expected"), PAIR_CASES)
def test_linked_pair(the_block: BlockView, events: list[RemoteEvent], removed: list[str],
                     expected: list[Any]) -> None:
    result = run(blocks=[the_block], pairs=[pair()], events=events, removed=removed)
    assert result.actions == expected
    assert result.conflicts == []
    assert result.held_deletions == 0 and result.advance_cursor


# -- both changed, differently: the policy decides -----------------------------------------
def _conflict(policy: Any, event_updated: datetime | None) -> Plan:
    theirs = event(c=THEIRS, etag="t2", updated=event_updated)
    return run(blocks=[block(c=MINE, updated=NOW)], pairs=[pair()], events=[theirs], policy=policy)


CONFLICT_CASES = [
    pytest.param("newest", NOW + HOUR, "calendar", id="newest-calendar-edited-later"),
    pytest.param("newest", NOW - HOUR, "helpdesk", id="newest-helpdesk-edited-later"),
    pytest.param("newest", NOW, "helpdesk", id="newest-tie-keeps-helpdesk"),
    pytest.param("newest", None, "helpdesk", id="newest-event-without-mtime-keeps-helpdesk"),
    pytest.param("calendar", NOW - HOUR, "calendar", id="calendar-wins-even-when-older"),
    pytest.param("helpdesk", NOW + HOUR, "helpdesk", id="helpdesk-wins-even-when-older"),
]


@pytest.mark.parametrize(("policy", "event_updated", "winner"), CONFLICT_CASES)
def test_both_changed_differently(policy: str, event_updated: datetime | None, winner: str) -> None:
    result = _conflict(policy, event_updated)
    theirs = event(c=THEIRS, etag="t2", updated=event_updated)
    conflict = Conflict("b1", winner, policy, MINE, THEIRS, "e1")  # type: ignore[arg-type]
    assert result.conflicts == [conflict]
    if winner == "calendar":
        assert result.actions == [UpdateBlock("b1", theirs, conflict)]
    else:
        assert result.actions == [UpdateEvent("b1", "e1", "t2", conflict)]


def test_conflict_carries_both_versions_and_describe_names_both_by_id_not_title() -> None:
    (conflict,) = _conflict("newest", NOW + HOUR).conflicts
    assert conflict.helpdesk == MINE and conflict.calendar == THEIRS
    text = conflict.describe()
    assert "b1" in text and "e1" in text
    assert MINE.title not in text and THEIRS.title not in text  # a title is the person's words: not in logs
    assert "2026-03-04T09:00:00Z" in text and "2026-03-05T09:00:00Z" in text  # both starts
    assert "kept the calendar copy" in text and "newest" in text
    assert "\n" not in text


# -- full listings cover only the window ---------------------------------------------------
def test_full_listing_missing_pair_inside_window_is_gone() -> None:
    result = run(blocks=[block()], pairs=[pair()], full=True)
    assert result.actions == [DeleteBlock("b1", "e1")]


def test_full_listing_missing_pair_outside_window_is_not_gone() -> None:
    result = run(blocks=[block(c=FAR)], pairs=[pair(base=FAR)], full=True)
    assert result.actions == []


def test_full_listing_missing_pair_outside_window_still_gets_helpdesk_edit() -> None:
    far_edit = content(401, "Sabbatical, extended")
    result = run(blocks=[block(c=far_edit)], pairs=[pair(base=FAR)], full=True)
    assert result.actions == [UpdateEvent("b1", "e1", "t1")]


def test_full_listing_missing_pair_of_deleted_block_outside_window_deletes_event() -> None:
    result = run(blocks=[block(c=FAR, deleted=True)], pairs=[pair(base=FAR)], full=True)
    assert result.actions == [DeleteEvent("b1", "e1", "t1")]


def test_full_listing_with_pair_present_changes_nothing() -> None:
    result = run(blocks=[block()], pairs=[pair()], events=[event()], full=True)
    assert result.actions == []


# -- events we have not linked -------------------------------------------------------------
def test_echo_of_our_write_is_adopted_not_turned_into_a_block() -> None:
    ours = event("e9", block_id="b1")
    result = run(blocks=[block()], events=[ours])
    assert result.actions == [Adopt("b1", ours)]
    assert not any(isinstance(a, (CreateBlock, CreateEvent)) for a in result.actions)


@pytest.mark.parametrize(("event_updated", "winner"), [(NOW + HOUR, "calendar"), (NOW - HOUR, "helpdesk")],
                         ids=["edited-in-calendar-after-our-write", "block-edited-after-our-write"])
def test_marker_event_with_other_content_is_adopted_then_merged_by_policy(event_updated: datetime,
                                                                         winner: str) -> None:
    # After a crash between "event created" and "link saved" there is no base: either side may
    # have moved on since, so the policy decides rather than the calendar always winning.
    ours = event("e9", THEIRS, block_id="b1", updated=event_updated)
    result = run(blocks=[block(c=MINE, updated=NOW)], events=[ours])
    conflict = Conflict("b1", winner, "newest", MINE, THEIRS, "e9")  # type: ignore[arg-type]
    assert result.conflicts == [conflict]
    assert result.actions[0] == Adopt("b1", ours)
    expected = UpdateBlock("b1", ours, conflict) if winner == "calendar" else UpdateEvent("b1", "e9", "t1", conflict)
    assert result.actions[1:] == [expected]


def test_marker_for_a_deleted_block_deletes_the_event() -> None:
    ours = event("e9", block_id="b1", etag="t9")
    result = run(blocks=[block(deleted=True)], events=[ours])
    assert result.actions == [DeleteEvent("b1", "e9", "t9", linked=False)]


def test_second_event_carrying_a_linked_block_id_is_a_copy_and_is_removed() -> None:
    copy = event("e2", block_id="b1", etag="t9")
    result = run(blocks=[block()], pairs=[pair()], events=[copy])
    assert result.actions == [DeleteEvent("b1", "e2", "t9", linked=False)]


def test_identical_content_unlinked_is_adopted_not_duplicated() -> None:
    same = event("e7", BASE)  # the person typed the same period into this calendar too
    result = run(blocks=[block()], events=[same])
    assert result.actions == [Adopt("b1", same)]


def test_two_identical_events_adopt_one_and_create_a_block_for_the_other() -> None:
    first, second = event("e7", BASE), event("e8", BASE)
    result = run(blocks=[block()], events=[first, second])
    assert result.actions == [Adopt("b1", first), CreateBlock(second)]


def test_new_foreign_event_creates_a_block() -> None:
    new = event("e5", THEIRS)
    result = run(events=[new])
    assert result.actions == [CreateBlock(new)]


def test_live_unlinked_block_creates_an_event() -> None:
    assert run(blocks=[block()]).actions == [CreateEvent("b1")]


def test_deleted_unlinked_block_creates_nothing() -> None:
    assert run(blocks=[block(deleted=True)]).actions == []


def test_block_ended_before_the_window_is_not_written() -> None:
    assert run(blocks=[block(c=OLD)]).actions == []


def test_block_beyond_the_window_is_still_mirrored() -> None:
    assert run(blocks=[block(c=FAR)]).actions == [CreateEvent("b1")]


# -- directions ----------------------------------------------------------------------------
EVENT_WRITES = (CreateEvent, UpdateEvent, DeleteEvent)
BLOCK_WRITES = (CreateBlock, UpdateBlock, DeleteBlock)

# Every scenario above, as (blocks, pairs, events, removed), to check what each direction may write.
SCENARIOS = [
    pytest.param([b], [pair()], evs, rm, id=p.id) for p in PAIR_CASES for (b, evs, rm, _) in [p.values]
] + [
    pytest.param([block(c=MINE)], [pair()], [EDITED], [], id="conflict"),
    pytest.param([block()], [], [event("e5", THEIRS)], [], id="foreign-event"),
    pytest.param([block()], [], [event("e9", THEIRS, block_id="b1")], [], id="marker-other-content"),
    pytest.param([block(deleted=True)], [], [event("e9", block_id="b1")], [], id="marker-deleted-block"),
]


@pytest.mark.parametrize(("blocks", "pairs", "events", "removed"), SCENARIOS)
def test_pull_never_writes_events(blocks: list[BlockView], pairs: list[Pair], events: list[RemoteEvent],
                                  removed: list[str]) -> None:
    for policy in ("newest", "calendar", "helpdesk"):
        result = run(blocks=blocks, pairs=pairs, events=events, removed=removed, direction="pull", policy=policy)
        assert not [a for a in result.actions if isinstance(a, EVENT_WRITES)]


@pytest.mark.parametrize(("blocks", "pairs", "events", "removed"), SCENARIOS)
def test_push_never_writes_blocks(blocks: list[BlockView], pairs: list[Pair], events: list[RemoteEvent],
                                  removed: list[str]) -> None:
    for policy in ("newest", "calendar", "helpdesk"):
        result = run(blocks=blocks, pairs=pairs, events=events, removed=removed, direction="push", policy=policy)
        assert not [a for a in result.actions if isinstance(a, BLOCK_WRITES)]


def test_pull_turns_calendar_edits_into_block_updates() -> None:
    assert run(blocks=[block()], pairs=[pair()], events=[EDITED], direction="pull").actions == [
        UpdateBlock("b1", EDITED)]


def test_pull_creates_blocks_for_new_events() -> None:
    new = event("e5", THEIRS)
    assert run(events=[new], direction="pull").actions == [CreateBlock(new)]


def test_pull_leaves_helpdesk_edits_out_of_the_calendar() -> None:
    assert run(blocks=[block(c=MINE)], pairs=[pair()], direction="pull").actions == []
    assert run(blocks=[block()], direction="pull").actions == []  # no event for a helpdesk block


def test_pull_lets_the_calendar_win_a_conflict_whatever_the_policy() -> None:
    result = run(blocks=[block(c=MINE)], pairs=[pair()], events=[EDITED], direction="pull", policy="helpdesk")
    assert result.actions == [UpdateBlock("b1", EDITED, result.conflicts[0])]
    assert result.conflicts[0].winner == "calendar"


def test_pull_event_removed_deletes_block_even_if_block_changed() -> None:
    assert run(blocks=[block(c=MINE)], pairs=[pair()], removed=["e1"], direction="pull").actions == [
        DeleteBlock("b1", "e1")]


def test_push_reverts_a_calendar_edit() -> None:
    assert run(blocks=[block()], pairs=[pair()], events=[EDITED], direction="push").actions == [
        UpdateEvent("b1", "e1", "t2")]


def test_push_recreates_an_event_deleted_in_the_calendar() -> None:
    assert run(blocks=[block()], pairs=[pair()], removed=["e1"], direction="push").actions == [
        CreateEvent("b1", replaces="e1")]


def test_push_ignores_foreign_events() -> None:
    assert run(events=[event("e5", THEIRS)], direction="push").actions == []


def test_push_lets_the_helpdesk_win_a_conflict_whatever_the_policy() -> None:
    result = run(blocks=[block(c=MINE)], pairs=[pair()], events=[EDITED], direction="push", policy="calendar")
    assert result.actions == [UpdateEvent("b1", "e1", "t2", result.conflicts[0])]
    assert result.conflicts[0].winner == "helpdesk"


def test_push_reverts_the_calendar_copy_of_an_adopted_echo() -> None:
    ours = event("e9", THEIRS, block_id="b1")
    result = run(blocks=[block()], events=[ours], direction="push", policy="calendar")
    assert result.actions == [Adopt("b1", ours), UpdateEvent("b1", "e9", "t1", result.conflicts[0])]


# -- the safety valve ----------------------------------------------------------------------
def _linked(n: int) -> tuple[list[BlockView], list[Pair]]:
    contents = [content(i, f"block {i}") for i in range(n)]
    return ([block(f"b{i}", c) for i, c in enumerate(contents)],
            [pair(f"b{i}", f"e{i}", base=c) for i, c in enumerate(contents)])


def test_safety_valve_holds_mass_deletion() -> None:
    blocks, pairs = _linked(4)
    result = run(blocks=blocks + [block("new", MINE)], pairs=pairs, full=True)  # the calendar looks empty
    assert result.held_deletions == 4
    assert not result.advance_cursor
    assert not [a for a in result.actions if isinstance(a, DeleteBlock)]
    assert result.actions == [CreateEvent("new")]  # the rest of the plan still runs


def test_safety_valve_holds_removals_reported_incrementally() -> None:
    blocks, pairs = _linked(5)
    result = run(blocks=blocks, pairs=pairs, removed=["e0", "e1", "e2"])
    assert result.held_deletions == 3 and result.actions == []


def test_safety_valve_releases_with_release_deletions() -> None:
    blocks, pairs = _linked(4)
    result = run(blocks=blocks, pairs=pairs, full=True, release=True)
    assert result.held_deletions == 0 and result.advance_cursor
    assert result.actions == [DeleteBlock(f"b{i}", f"e{i}") for i in range(4)]


def test_safety_valve_does_not_hold_below_the_minimum() -> None:
    blocks, pairs = _linked(2)
    result = run(blocks=blocks, pairs=pairs, full=True)
    assert result.held_deletions == 0
    assert result.actions == [DeleteBlock("b0", "e0"), DeleteBlock("b1", "e1")]


def test_safety_valve_does_not_hold_at_or_below_the_share() -> None:
    blocks, pairs = _linked(6)
    result = run(blocks=blocks, pairs=pairs, removed=["e0", "e1", "e2"])  # exactly half
    assert result.held_deletions == 0 and len(result.actions) == 3


def test_safety_valve_uses_configured_share_and_minimum() -> None:
    blocks, pairs = _linked(10)
    strict = DeletionSafety(share=0.1, minimum=2)
    result = run(blocks=blocks, pairs=pairs, removed=["e0", "e1"], safety=strict)
    assert result.held_deletions == 2 and result.actions == []


def test_safety_valve_ignores_helpdesk_deletions() -> None:
    contents = [content(i, f"block {i}") for i in range(4)]
    blocks = [block(f"b{i}", c, deleted=True) for i, c in enumerate(contents)]
    pairs = [pair(f"b{i}", f"e{i}", base=c) for i, c in enumerate(contents)]
    result = run(blocks=blocks, pairs=pairs)
    assert result.held_deletions == 0
    assert result.actions == [DeleteEvent(f"b{i}", f"e{i}", "t1") for i in range(4)]


# -- read-only events (a mailbox's automatic replies) ----------------------------------------------


def read_only(c: OooContent = BASE, *, etag: str = "t1") -> RemoteEvent:
    return RemoteEvent("e1", etag, c, read_only=True, updated=NOW)


def test_a_read_only_event_is_never_written_its_version_stands() -> None:
    # edited in the helpdesk, unchanged in the mailbox: the block goes back
    result = run(blocks=[block(c=MINE)], pairs=[pair()], events=[read_only()])
    assert result.actions == [UpdateBlock("b1", read_only())]
    # both changed: the mailbox wins whatever the policy
    both = run(blocks=[block(c=MINE, updated=NOW + HOUR)], pairs=[pair()], events=[read_only(THEIRS, etag="t2")],
               policy="helpdesk")
    assert [type(a) for a in both.actions] == [UpdateBlock]
    assert both.conflicts and both.conflicts[0].winner == "calendar"


def test_a_read_only_event_brings_its_deleted_block_back() -> None:
    result = run(blocks=[block(deleted=True)], pairs=[pair()], events=[read_only()])
    assert result.actions == [UpdateBlock("b1", read_only(), undelete=True)]


def test_a_read_only_event_is_not_pulled_into_a_push_only_link() -> None:
    result = run(blocks=[block(c=MINE)], pairs=[pair()], events=[read_only()], direction="push")
    assert not any(isinstance(a, (UpdateEvent, UpdateBlock)) for a in result.actions)
