"""Carrying out the reconcile plan for one calendar link: the thin I/O shell around `plan`.

Each action is a remote call (if any) followed by one small transaction that records its
result together with the status change it causes. Remote writes cannot share a database
transaction, so every step is idempotent instead: an event created just before a crash
carries our block id and is adopted on the next pass; an update whose link was not saved
shows up as "both sides equal" and is simply re-linked. Actions that only touch the
database are grouped, up to `BATCH` per transaction, with one status evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from connectors.base import CalendarConnector
from store import blocks, users
from store.db import Database, Transaction
from syncd.core import reconcile as rc
from syncd.core.calendars import ChangeSet, EventDraft, RemoteEvent, SyncWindow
from syncd.core.errors import Bug, NotFound, PreconditionFailed, TransientError
from syncd.service import Syncd
from syncd.sync.listing import BATCH, LOCAL_ACTIONS
from syncd.sync.snapshot import LinkOutcome, Retry, Snapshot

__all__ = ["MAX_ROUNDS", "PlanExecutor"]

log = logging.getLogger(__name__)
MAX_ROUNDS = 4  # re-read + re-merge rounds after lost write races
BLOCK_ACTIONS = (rc.CreateBlock, rc.UpdateBlock, rc.DeleteBlock)


class PlanExecutor:
    def __init__(self, service: Syncd, plan: Callable[..., rc.Plan]) -> None:
        self.service = service
        self.db: Database = service.db
        self.plan = plan  # the reconcile plan with the configured policy and safety valve

    # -- before planning -------------------------------------------------------------------------
    def confirm_missing(self, connector: CalendarConnector, snap: Snapshot, window: SyncWindow,
                        changes: ChangeSet) -> None:
        """A full listing only covers the window: a linked event missing from it may have been
        moved outside rather than deleted. Ask for it before anything is deleted."""
        listed = {e.event_id for e in changes.events}
        linked = self.db.run(lambda s: blocks.linked_in_window(s, snap.link.id))
        for event_id in [e for e, start, end in linked if e not in listed and window.overlaps(start, end)]:
            event = connector.get(snap.calendar, event_id)
            if event is not None:
                changes.events.append(event)

    def confirm_written(self, connector: CalendarConnector, snap: Snapshot, changes: ChangeSet,
                        written: Sequence[tuple[str, str | None]]) -> None:
        """Events syncd wrote after the stored cursor was issued and that this listing does not
        mention. A calendar normally lists our own write again (the echo); when it does not, the
        person may have deleted it before we listed: a folder's listing, a CalDAV token or a
        Graph delta may never report a removal of something they did not list. Ask for each."""
        mentioned = {e.event_id for e in changes.events} | set(changes.removed)
        for event_id, _etag in written:
            if event_id in mentioned:
                continue
            event = connector.get(snap.calendar, event_id)
            if event is None:
                log.info("link %s: event %s that syncd wrote was deleted before the next listing", snap.name,
                         event_id, extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
                changes.removed.append(event_id)
            else:
                changes.events.append(event)

    # -- planning and carrying out ------------------------------------------------------------
    def reconcile(self, connector: CalendarConnector, snap: Snapshot, changes: ChangeSet,
                  outcome: LinkOutcome) -> rc.Plan:
        first: rc.Plan | None = None
        for _ in range(MAX_ROUNDS):
            views, pairs = self.db.run(lambda s: (blocks.views_of(s, snap.user_id), blocks.pairs(s, snap.link.id)))
            result = self.plan(snap, views, pairs, changes)
            first = first or result
            retry = Retry()
            for conflict in result.conflicts:
                log.warning("link %s: %s", snap.name, conflict.describe(),
                            extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
            outcome.conflicts += len(result.conflicts)
            self.execute_all(connector, snap, result.actions, retry, outcome)
            outcome.actions += len(result.actions)
            if not retry.events and not retry.removed:
                # A re-merge round sees only the re-read events, so deletions held by the
                # first round must stay held (and the cursor unsaved) whatever later rounds say.
                result.held_deletions = max(first.held_deletions, result.held_deletions)
                if result.held_deletions:
                    outcome.held_deletions = result.held_deletions
                return result
            # Lost a write race: re-read those events and merge again, never overwrite blindly.
            changes = ChangeSet(events=retry.events, removed=retry.removed, cursor=changes.cursor)
        raise TransientError(f"events kept changing while syncing ({MAX_ROUNDS} rounds); will retry")

    def execute_all(self, connector: CalendarConnector, snap: Snapshot, actions: Sequence[rc.Action],
                    retry: Retry, outcome: LinkOutcome) -> None:
        """Run a plan. Actions that only touch the database are grouped into one transaction
        (with one status evaluation); each calendar write commits its own result right after."""
        batch: list[rc.Action] = []

        def flush() -> None:
            if batch:
                todo = list(batch)
                batch.clear()
                self.db.run(lambda s: self.apply_local(s, snap, todo), what=f"link {snap.name}")
                outcome.blocks_changed |= any(isinstance(a, BLOCK_ACTIONS) for a in todo)

        for action in actions:
            if isinstance(action, LOCAL_ACTIONS):
                batch.append(action)
                if len(batch) >= BATCH:
                    flush()
                continue
            flush()
            self.write_calendar(connector, snap, action, retry)
        flush()

    def apply_local(self, session: Transaction, snap: Snapshot, actions: Sequence[rc.Action]) -> None:
        now = self.service.clock()
        changes_blocks = any(isinstance(a, BLOCK_ACTIONS) for a in actions)
        user = users.by_id(session, snap.user_id)
        assert user is not None
        if changes_blocks:
            # Transitions due before this edit are published with their own time, not the edit's.
            self.service.recorder.advance_due(session, user, now)
        new_blocks: list[dict[str, Any]] = []
        new_pairs: list[dict[str, Any]] = []
        link_id = snap.link.id
        for action in actions:
            match action:
                case rc.CreateBlock(event):
                    # The event is unlinked (the plan creates blocks only for those): no old link to clear.
                    block, pair = blocks.from_calendar(snap.user_id, link_id, snap.link.source,
                                                       event.content.in_zone(snap.timezone), event.event_id,
                                                       event.etag, now)
                    new_blocks.append(block)
                    new_pairs.append(pair)
                case rc.UpdateBlock(block_id, event, _, undelete):
                    content = event.content.in_zone(snap.timezone)
                    blocks.revise(_block(session, block_id), content, now, undelete=undelete)
                    self._link(session, snap, block_id, event, content.fingerprint())
                case rc.DeleteBlock(block_id, _):
                    blocks.mark_deleted(_block(session, block_id), now)
                    blocks.unlink_block(session, link_id, block_id)
                case rc.Relink(block_id, event):
                    self._link(session, snap, block_id, event, event.content.in_zone(snap.timezone).fingerprint())
                case rc.Adopt(block_id, event):
                    self._link(session, snap, block_id, event,
                               blocks.content_of(_block(session, block_id)).fingerprint())
                case rc.Unlink(_, event_id):
                    blocks.unlink_event(session, link_id, event_id)
        # One statement each, not an ORM object per row: a first sync creates thousands.
        blocks.insert_from_calendar(session, new_blocks, new_pairs)
        if changes_blocks:
            self.service.recorder.advance(session, user, now)
            users.touch_links(session, snap.user_id, now, except_link=link_id)  # the user's other calendars

    def write_calendar(self, connector: CalendarConnector, snap: Snapshot, action: rc.Action, retry: Retry) -> None:
        cal = snap.calendar
        try:
            match action:
                case rc.CreateEvent(block_id, replaces):
                    content = self._content(block_id)
                    created = connector.create(cal, EventDraft(block_id, content, snap.timezone))
                    held = created.content.in_zone(snap.timezone).fingerprint()
                    # `create` is idempotent per block id: it may hand back an older write of ours
                    # (a crash before its link was saved). Link what the calendar really holds and
                    # merge once more, rather than recording content the event does not have.
                    self.db.run(lambda s: self._link(s, snap, block_id, created, held, replaces, ours=True))
                    if held != content.fingerprint():
                        retry.events.append(created)
                case rc.UpdateEvent(block_id, event_id, etag, _):
                    content = self._content(block_id)
                    updated = connector.update(cal, event_id, EventDraft(block_id, content, snap.timezone),
                                               etag or "")
                    self.db.run(lambda s: self._link(s, snap, block_id, updated, content.fingerprint(), ours=True))
                case rc.DeleteEvent(block_id, event_id, etag, linked):
                    connector.delete(cal, event_id, etag)
                    if linked:
                        self.db.run(lambda s: blocks.unlink_event(s, snap.link.id, event_id))
        except PreconditionFailed:
            lost = _event_id_of(action)
            fresh = connector.get(cal, lost)
            if fresh is None:
                retry.removed.append(lost)
            else:
                retry.events.append(fresh)
        except NotFound:
            retry.removed.append(_event_id_of(action))

    def _content(self, block_id: str) -> Any:
        return self.db.run(lambda s: blocks.content_of(_block(s, block_id)))

    def _link(self, session: Transaction, snap: Snapshot, block_id: str, event: RemoteEvent, base: str,
              replaces: str | None = None, *, ours: bool = False) -> None:
        """Record the pair; ``ours`` when the event is what syncd just wrote (no listing has shown it)."""
        blocks.link_event(session, snap.link.id, block_id, event.event_id, event.etag, base, self.service.clock(),
                          replaces=replaces, ours=ours)


def _block(session: Transaction, block_id: str) -> Any:
    row = blocks.by_id(session, block_id)
    assert row is not None
    return row


def _event_id_of(action: rc.Action) -> str:
    """The event a failed calendar write was about (a new event has none: nothing to re-read)."""
    event_id = getattr(action, "event_id", None)
    if not isinstance(event_id, str):
        raise Bug(f"{type(action).__name__} failed with a precondition but names no event")
    return event_id
