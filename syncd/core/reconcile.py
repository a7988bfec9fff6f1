"""The three-way merge of one calendar link, as a pure plan.

For one calendar link, `plan` compares three things — the user's blocks (the helpdesk side),
the calendar's change set, and for every linked (block, event) pair the fingerprint both
sides had when they were last in step (the *base*) — and returns the `Action`s that bring
the two sides together. It performs no I/O; the sync runner (`syncd.sync.execute`) carries the actions out.

Directions: ``two-way`` copies both ways; ``pull`` only turns events into blocks (it never
writes to the calendar); ``push`` only mirrors blocks into the calendar (the helpdesk wins
every disagreement there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from syncd.core.calendars import ChangeSet, RemoteEvent, SyncWindow
from syncd.core.ooo import OooContent
from syncd.core.time import format_utc

__all__ = [
    "Adopt",
    "BlockView",
    "Conflict",
    "CreateBlock",
    "CreateEvent",
    "DeleteBlock",
    "DeleteEvent",
    "DeletionSafety",
    "LinkView",
    "Pair",
    "Plan",
    "Relink",
    "Unlink",
    "UpdateBlock",
    "UpdateEvent",
    "plan",
]

Direction = Literal["two-way", "pull", "push"]
ConflictPolicy = Literal["newest", "calendar", "helpdesk"]


@dataclass(frozen=True, slots=True)
class LinkView:
    id: int
    direction: Direction
    source: str  # how blocks made from this calendar name their source


@dataclass(frozen=True, slots=True)
class BlockView:
    id: str
    content: OooContent
    updated_at: datetime
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Pair:
    """A block linked to an event in this calendar, with the base of the merge."""

    block_id: str
    event_id: str
    etag: str | None
    base: str  # fingerprint both sides had when last in step


@dataclass(frozen=True, slots=True)
class DeletionSafety:
    share: float = 0.5  # hold when a sync would delete more than this share of linked blocks …
    minimum: int = 3  # … and at least this many


@dataclass(frozen=True, slots=True)
class Conflict:
    """Both sides changed differently; `winner` says which copy was kept."""

    block_id: str
    winner: Literal["calendar", "helpdesk"]
    policy: ConflictPolicy
    helpdesk: OooContent
    calendar: OooContent
    event_id: str = ""

    def describe(self) -> str:
        """One log line. Ids and times only: a title is the person's words ("Oncology visit")."""
        def show(c: OooContent) -> str:
            return f"{format_utc(c.start)}..{format_utc(c.end)}" + (" (title differs)" if changed_title else "")

        changed_title = self.helpdesk.title != self.calendar.title
        return (f"conflict on block {self.block_id} (event {self.event_id}): helpdesk has {show(self.helpdesk)}, "
                f"calendar has {show(self.calendar)}; kept the {self.winner} copy (policy {self.policy})")


# -- actions: each is one step of the executor ---------------------------------------------
@dataclass(frozen=True, slots=True)
class CreateBlock:
    event: RemoteEvent


@dataclass(frozen=True, slots=True)
class UpdateBlock:
    block_id: str
    event: RemoteEvent
    conflict: Conflict | None = None
    undelete: bool = False  # deleted in the helpdesk but edited in the calendar: the edit wins


@dataclass(frozen=True, slots=True)
class DeleteBlock:
    block_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class CreateEvent:
    block_id: str
    replaces: str | None = None  # a linked event that vanished while the block changed


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    block_id: str
    event_id: str
    etag: str | None
    conflict: Conflict | None = None


@dataclass(frozen=True, slots=True)
class DeleteEvent:
    block_id: str
    event_id: str
    etag: str | None
    linked: bool = True


@dataclass(frozen=True, slots=True)
class Relink:
    """Both sides already agree; record the event's new etag and base."""

    block_id: str
    event: RemoteEvent


@dataclass(frozen=True, slots=True)
class Adopt:
    """An unlinked event that is this block's (our marker, or the same period): link it."""

    block_id: str
    event: RemoteEvent


@dataclass(frozen=True, slots=True)
class Unlink:
    block_id: str
    event_id: str


Action = CreateBlock | UpdateBlock | DeleteBlock | CreateEvent | UpdateEvent | DeleteEvent | Relink | Adopt | Unlink


@dataclass(slots=True)
class Plan:
    actions: list[Action] = field(default_factory=list)
    held_deletions: int = 0  # deletions not applied because of the safety valve
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def advance_cursor(self) -> bool:
        return self.held_deletions == 0


def plan(
    *,
    link: LinkView,
    blocks: Mapping[str, BlockView],
    pairs: Sequence[Pair],
    changes: ChangeSet,
    window: SyncWindow,
    policy: ConflictPolicy = "newest",
    safety: DeletionSafety = DeletionSafety(),
    release_deletions: bool = False,
) -> Plan:
    """The actions that bring one calendar and the user's blocks in step."""
    planner = _Planner(link, blocks, pairs, changes, window, policy)
    for pair in pairs:  # 1. pairs we know: compare each side with the base
        planner.known_pair(pair)
    adopted = planner.unlinked_events()  # 2. our own writes (echo, crash), or new OOO in the calendar
    planner.unlinked_blocks(adopted)  # 3. live blocks with no event here yet: mirror them
    planner.safety_valve(safety, release_deletions)  # 4. a calendar that suddenly looks empty
    return planner.result


class _Planner:
    """The state of one planning; each method is one phase of `plan`."""

    def __init__(self, link: LinkView, blocks: Mapping[str, BlockView], pairs: Sequence[Pair],
                 changes: ChangeSet, window: SyncWindow, policy: ConflictPolicy) -> None:
        self.link, self.blocks, self.pairs, self.changes = link, blocks, pairs, changes
        self.window, self.policy = window, policy
        self.events = {e.event_id: e for e in changes.events}
        self.removed = set(changes.removed)
        self.result = Plan()
        self.linked_blocks = {p.block_id for p in pairs}
        self.linked_events = {p.event_id for p in pairs}
        self.can_pull = link.direction in ("two-way", "pull")
        self.can_push = link.direction in ("two-way", "push")

    def fingerprint(self, event: RemoteEvent) -> str:
        return event.content.in_zone(self.window.timezone).fingerprint()

    def resolve(self, block: BlockView, event: RemoteEvent, *, can_pull: bool, can_push: bool) -> Action:
        """Both changed, differently (or no base says which side changed)."""
        winner: Literal["calendar", "helpdesk"]
        if not can_push or event.read_only:
            winner = "calendar"
        elif not can_pull:
            winner = "helpdesk"
        elif self.policy == "newest":
            calendar_newer = event.updated is not None and event.updated > block.updated_at
            winner = "calendar" if calendar_newer else "helpdesk"
        else:
            winner = self.policy
        conflict = Conflict(block.id, winner, self.policy, block.content, event.content, event.event_id)
        self.result.conflicts.append(conflict)
        if winner == "calendar":
            return UpdateBlock(block.id, event, conflict)
        return UpdateEvent(block.id, event.event_id, event.etag, conflict)

    def known_pair(self, pair: Pair) -> None:
        block = self.blocks.get(pair.block_id)
        event = self.events.get(pair.event_id)
        # A read-only event is never written: its calendar's version wins.
        read_only = event is not None and event.read_only
        direction = self.link.direction
        can_push = direction in ("two-way", "push") and not read_only
        can_pull = direction in ("two-way", "pull") or (read_only and direction != "push")
        block_gone = block is None or block.deleted
        if pair.event_id in self.removed:
            event_gone = True
        elif self.changes.full and event is None:
            # A full listing covers only the window: a pair outside it is unknown, not gone.
            event_gone = block is None or self.window.overlaps(block.content.start, block.content.end)
        else:
            event_gone = False
        add = self.result.actions.append
        if block_gone and event_gone:
            add(Unlink(pair.block_id, pair.event_id))
        elif block_gone:
            self._block_gone(pair, event, read_only, can_pull=can_pull, can_push=can_push)
        elif event_gone:
            assert block is not None
            if can_push and (block.content.fingerprint() != pair.base or not can_pull):
                add(CreateEvent(block.id, replaces=pair.event_id))
            elif can_pull:
                add(DeleteBlock(block.id, pair.event_id))
        elif event is None:  # not in this change set: unchanged on the calendar side
            assert block is not None
            if block.content.fingerprint() != pair.base and can_push:
                add(UpdateEvent(block.id, pair.event_id, pair.etag))
        else:
            assert block is not None
            self._both_present(pair, block, event, read_only, can_pull=can_pull, can_push=can_push)

    def _block_gone(self, pair: Pair, event: RemoteEvent | None, read_only: bool, *, can_pull: bool,
                    can_push: bool) -> None:
        add = self.result.actions.append
        event_changed = event is not None and self.fingerprint(event) != pair.base
        if read_only and can_pull:
            assert event is not None
            add(UpdateBlock(pair.block_id, event, undelete=True))  # its calendar wins
        elif event_changed and can_pull:
            assert event is not None
            add(UpdateBlock(pair.block_id, event, undelete=True))
        elif can_push:
            add(DeleteEvent(pair.block_id, pair.event_id, event.etag if event is not None else pair.etag))
        # pull-only: the calendar keeps its event; the tombstone keeps it from coming back.

    def _both_present(self, pair: Pair, block: BlockView, event: RemoteEvent, read_only: bool, *, can_pull: bool,
                      can_push: bool) -> None:
        add = self.result.actions.append
        block_changed = block.content.fingerprint() != pair.base
        event_changed = self.fingerprint(event) != pair.base
        if block_changed and event_changed:
            if self.fingerprint(event) == block.content.fingerprint():
                add(Relink(block.id, event))
            else:
                add(self.resolve(block, event, can_pull=can_pull, can_push=can_push))
        elif event_changed:
            add(UpdateBlock(block.id, event) if can_pull else UpdateEvent(block.id, event.event_id, event.etag))
        elif block_changed:
            if can_push:
                add(UpdateEvent(block.id, event.event_id, event.etag))
            elif read_only and can_pull:
                add(UpdateBlock(block.id, event))  # never written: its version stands
        elif event.etag != pair.etag:
            add(Relink(block.id, event))

    def unlinked_events(self) -> set[str]:
        """Events we have not linked; returns the blocks they were adopted by."""
        add = self.result.actions.append
        adopted: set[str] = set()
        unlinked_live = {b.content.fingerprint(): b.id for b in self.blocks.values()
                         if not b.deleted and b.id not in self.linked_blocks}
        for event in self.changes.events:
            if event.event_id in self.linked_events:
                continue
            mine = self.blocks.get(event.block_id) if event.block_id else None
            if mine is not None and mine.id not in self.linked_blocks and mine.id not in adopted:
                if mine.deleted:
                    if self.can_push:
                        add(DeleteEvent(mine.id, event.event_id, event.etag, linked=False))
                    continue
                adopted.add(mine.id)
                add(Adopt(mine.id, event))
                if self.fingerprint(event) != mine.content.fingerprint():
                    # No base: the block may have been edited since we wrote the event, or the
                    # event since it was written. Either may be newer, so the policy decides.
                    add(self.resolve(mine, event, can_pull=self.can_pull, can_push=self.can_push))
                continue
            if mine is not None:
                # A second event for a block that already has one here (a copy): remove the copy.
                if self.can_push:
                    add(DeleteEvent(mine.id, event.event_id, event.etag, linked=False))
                continue
            same = unlinked_live.get(self.fingerprint(event))
            if same is not None and same not in adopted:
                # The person entered the same OOO period here too: one block, not two.
                adopted.add(same)
                add(Adopt(same, event))
            elif self.can_pull:
                add(CreateBlock(event))
        return adopted

    def unlinked_blocks(self, adopted: set[str]) -> None:
        if not self.can_push:
            return
        for block in self.blocks.values():
            if block.deleted or block.id in self.linked_blocks or block.id in adopted:
                continue
            if block.content.end <= self.window.start:
                continue  # long over: no point writing history into the calendar
            self.result.actions.append(CreateEvent(block.id))

    def safety_valve(self, safety: DeletionSafety, released: bool) -> None:
        """A calendar that suddenly looks empty must not wipe the helpdesk."""
        result = self.result
        deletions = [a for a in result.actions if isinstance(a, DeleteBlock)]
        live_linked = sum(1 for p in self.pairs if (b := self.blocks.get(p.block_id)) is not None and not b.deleted)
        if not released and len(deletions) >= safety.minimum and len(deletions) > safety.share * live_linked:
            result.actions = [a for a in result.actions if not isinstance(a, DeleteBlock)]
            result.held_deletions = len(deletions)
