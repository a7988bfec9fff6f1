"""The three-way merge of DESIGN.md §1.3 as a pure plan.

For one calendar link, `plan` compares three things — the user's blocks (the helpdesk side),
the calendar's change set, and for every linked (block, event) pair the fingerprint both
sides had when they were last in step (the *base*) — and returns the `Action`s that bring
the two sides together. It performs no I/O; `syncd.service` executes the actions.

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

    def describe(self) -> str:
        def show(c: OooContent) -> str:
            return f"{format_utc(c.start)}..{format_utc(c.end)} {c.title!r}"

        return (f"conflict on block {self.block_id}: helpdesk has {show(self.helpdesk)}, calendar has "
                f"{show(self.calendar)}; kept the {self.winner} copy (policy {self.policy})")


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
    can_pull = link.direction in ("two-way", "pull")
    can_push = link.direction in ("two-way", "push")
    events = {e.event_id: e for e in changes.events}
    removed = set(changes.removed)
    result = Plan()
    linked_blocks = {p.block_id for p in pairs}
    linked_events = {p.event_id for p in pairs}

    def fingerprint(event: RemoteEvent) -> str:
        return event.content.in_zone(window.timezone).fingerprint()

    def resolve(block: BlockView, event: RemoteEvent) -> Action:
        """Both changed, differently (or no base says which side changed)."""
        winner: Literal["calendar", "helpdesk"]
        if not can_push or event.read_only:
            winner = "calendar"
        elif not can_pull:
            winner = "helpdesk"
        elif policy == "newest":
            calendar_newer = event.updated is not None and event.updated > block.updated_at
            winner = "calendar" if calendar_newer else "helpdesk"
        else:
            winner = policy
        conflict = Conflict(block.id, winner, policy, block.content, event.content)
        result.conflicts.append(conflict)
        if winner == "calendar":
            return UpdateBlock(block.id, event, conflict)
        return UpdateEvent(block.id, event.event_id, event.etag, conflict)

    # 1. Pairs we know: compare each side with the base.
    for pair in pairs:
        block = blocks.get(pair.block_id)
        event = events.get(pair.event_id)
        # A read-only event is never written: its calendar's version wins.
        read_only = event is not None and event.read_only
        can_push = link.direction in ("two-way", "push") and not read_only
        can_pull = link.direction in ("two-way", "pull") or (read_only and link.direction != "push")
        block_gone = block is None or block.deleted
        if pair.event_id in removed:
            event_gone = True
        elif changes.full and event is None:
            # A full listing covers only the window: a pair outside it is unknown, not gone.
            event_gone = block is None or window.overlaps(block.content.start, block.content.end)
        else:
            event_gone = False
        block_changed = block is not None and block.content.fingerprint() != pair.base
        event_changed = event is not None and fingerprint(event) != pair.base

        if block_gone and event_gone:
            result.actions.append(Unlink(pair.block_id, pair.event_id))
        elif block_gone and read_only and can_pull:
            assert event is not None
            result.actions.append(UpdateBlock(pair.block_id, event, undelete=True))  # its calendar wins
        elif block_gone:
            if event_changed and can_pull:
                assert event is not None
                result.actions.append(UpdateBlock(pair.block_id, event, undelete=True))
            elif can_push:
                etag = event.etag if event is not None else pair.etag
                result.actions.append(DeleteEvent(pair.block_id, pair.event_id, etag))
            # pull-only: the calendar keeps its event; the tombstone keeps it from coming back.
        elif event_gone:
            assert block is not None
            if can_push and (block_changed or not can_pull):
                result.actions.append(CreateEvent(block.id, replaces=pair.event_id))
            elif can_pull:
                result.actions.append(DeleteBlock(block.id, pair.event_id))
        elif event is None:  # not in this change set: unchanged on the calendar side
            assert block is not None
            if block_changed and can_push:
                result.actions.append(UpdateEvent(block.id, pair.event_id, pair.etag))
        else:
            assert block is not None
            if block_changed and event_changed:
                if fingerprint(event) == block.content.fingerprint():
                    result.actions.append(Relink(block.id, event))
                else:
                    result.actions.append(resolve(block, event))
            elif event_changed:
                if can_pull:
                    result.actions.append(UpdateBlock(block.id, event))
                else:
                    result.actions.append(UpdateEvent(block.id, event.event_id, event.etag))
            elif block_changed:
                if can_push:
                    result.actions.append(UpdateEvent(block.id, event.event_id, event.etag))
                elif read_only and can_pull:
                    result.actions.append(UpdateBlock(block.id, event))  # never written: its version stands
            elif event.etag != pair.etag:
                result.actions.append(Relink(block.id, event))

    can_pull = link.direction in ("two-way", "pull")
    can_push = link.direction in ("two-way", "push")

    # 2. Events we have not linked: our own writes (echo / crash), or new OOO in the calendar.
    adopted: set[str] = set()
    unlinked_live = {
        b.content.fingerprint(): b.id for b in blocks.values() if not b.deleted and b.id not in linked_blocks
    }
    for event in changes.events:
        if event.event_id in linked_events:
            continue
        mine = blocks.get(event.block_id) if event.block_id else None
        if mine is not None and mine.id not in linked_blocks and mine.id not in adopted:
            if mine.deleted:
                if can_push:
                    result.actions.append(DeleteEvent(mine.id, event.event_id, event.etag, linked=False))
                continue
            adopted.add(mine.id)
            result.actions.append(Adopt(mine.id, event))
            if fingerprint(event) != mine.content.fingerprint():
                # No base: the block may have been edited since we wrote the event, or the
                # event since it was written. Either may be newer, so the policy decides.
                result.actions.append(resolve(mine, event))
            continue
        if mine is not None:
            # A second event for a block that already has one here (a copy): remove the copy.
            if can_push:
                result.actions.append(DeleteEvent(mine.id, event.event_id, event.etag, linked=False))
            continue
        same = unlinked_live.get(fingerprint(event))
        if same is not None and same not in adopted:
            # The person entered the same OOO period here too: one block, not two.
            adopted.add(same)
            result.actions.append(Adopt(same, event))
        elif can_pull:
            result.actions.append(CreateBlock(event))

    # 3. Live blocks with no event here yet: mirror them.
    if can_push:
        for block in blocks.values():
            if block.deleted or block.id in linked_blocks or block.id in adopted:
                continue
            if block.content.end <= window.start:
                continue  # long over: no point writing history into the calendar
            result.actions.append(CreateEvent(block.id))

    # 4. Safety valve: a calendar that suddenly looks empty must not wipe the helpdesk.
    deletions = [a for a in result.actions if isinstance(a, DeleteBlock)]
    live_linked = sum(1 for p in pairs if (b := blocks.get(p.block_id)) is not None and not b.deleted)
    if (not release_deletions and len(deletions) >= safety.minimum
            and len(deletions) > safety.share * live_linked):
        result.actions = [a for a in result.actions if not isinstance(a, DeleteBlock)]
        result.held_deletions = len(deletions)
    return result
