"""Listing many links at once, and settling those with nothing to do in one transaction.

Each account lists its calendars together (in batch requests where the provider has them).
A link whose calendar reported nothing new, and whose blocks need nothing written, only
needs its new cursor saved: thousands of such links are settled in a few statements. A link
whose plan only changes the store (a first sync, an edit made in the calendar) is carried
out with hundreds of others in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from connectors.registry import Connectors
from store import blocks, links
from store.db import Database, Transaction
from syncd.core import reconcile as rc
from syncd.core.calendars import ChangeSet, PollRequest, SyncWindow
from syncd.core.errors import Bug, SyncdError
from syncd.sync.schedule import Schedule, next_poll
from syncd.sync.snapshot import Snapshot, snapshot_of

__all__ = ["BATCH", "LOCAL_ACTIONS", "Listing"]

log = logging.getLogger(__name__)
BATCH = 2000  # links read, planned or settled per transaction
# Plan actions that only touch the store (no calendar call)
LOCAL_ACTIONS = (rc.CreateBlock, rc.UpdateBlock, rc.DeleteBlock, rc.Relink, rc.Adopt, rc.Unlink)


def chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class Listing:
    def __init__(self, db: Database, connectors: Connectors, schedule: Schedule, clock: Callable[[], datetime],
                 window: Callable[[str], SyncWindow], plan: Callable[..., rc.Plan]) -> None:
        self.db = db
        self.connectors = connectors
        self.schedule = schedule
        self.clock = clock
        self.window = window  # the sync window, read in a zone
        self.plan = plan  # the reconcile plan with the configured policy and safety valve

    def snapshots(self, link_ids: Sequence[int]) -> dict[int, Snapshot]:
        snaps: dict[int, Snapshot] = {}
        for chunk in chunks(link_ids, BATCH):
            def read(session: Transaction, chunk: Sequence[int] = chunk) -> dict[int, Snapshot]:
                now = self.clock()
                return {link.id: snapshot_of(link, user, pushed, now)
                        for link, user, pushed in links.snapshot_rows(session, chunk, now)}
            snaps.update(self.db.read(read))
        return snaps

    def list_many(self, snaps: Sequence[Snapshot]) -> dict[int, ChangeSet | Exception]:
        """Each link's change set, or the error listing it raised."""
        by_account: dict[str, list[Snapshot]] = {}
        for snap in snaps:
            by_account.setdefault(snap.account, []).append(snap)
        listed: dict[int, ChangeSet | Exception] = {}
        for account, group in by_account.items():
            try:
                connector = self.connectors.for_account(account)
                requests = []
                for snap in group:
                    snap.calendar = connector.address(snap.email, snap.calendar)
                    requests.append(PollRequest(snap.calendar, snap.cursor, self.window(snap.timezone)))
                results = connector.changes_many(requests)
            except SyncdError as exc:
                results = [exc] * len(group)
            except Exception as exc:  # a connector bug: every link of the account reports it
                log.error("account %s: listing failed: %s", account, exc, exc_info=True,
                          extra={"account": account})
                results = [Bug(f"account {account}: listing failed: {exc}")] * len(group)
            for snap, result in zip(group, results, strict=True):
                listed[snap.link.id] = result
        return listed

    def sort(self, snaps: dict[int, Snapshot], listed: dict[int, ChangeSet | Exception]
             ) -> tuple[dict[int, Snapshot], dict[int, rc.Plan]]:
        """The links that need no calendar call and no link-by-link care: ``idle`` (nothing new,
        nothing to write: only the cursor to save) and ``local`` (their plan only touches the
        store, as on a first sync or after an edit in the calendar: the plan, to be carried out
        together with others by `settle`). Neither has a write of ours left to confirm, and
        none is held by the safety valve. At most one link per user is ``local``: the plan of a
        user's second link must see the blocks the first one changes."""
        candidates = {
            link_id: snap for link_id, snap in snaps.items()
            if isinstance(listed.get(link_id), ChangeSet) and snap.state != "held" and not snap.release_deletions
        }
        idle: dict[int, Snapshot] = {}
        local: dict[int, rc.Plan] = {}
        local_users: set[str] = set()
        for chunk in chunks(list(candidates), BATCH):  # a chunk at a time: memory stays flat
            def load(session: Transaction, chunk: Sequence[int] = chunk) -> tuple[
                    dict[str, dict[str, rc.BlockView]], dict[int, list[rc.Pair]], set[int]]:
                views = blocks.views_of_users(session, {candidates[i].user_id for i in chunk})
                return views, *blocks.pairs_of_links(session, chunk)
            views, pairs, unconfirmed = self.db.read(load)
            for link_id in chunk:
                if link_id in unconfirmed:
                    continue
                snap = candidates[link_id]
                changes = listed[link_id]
                assert isinstance(changes, ChangeSet)
                linked = pairs.get(link_id, [])
                result = self.plan(snap, views.get(snap.user_id, {}), linked, changes)
                if result.conflicts or result.held_deletions:
                    continue
                if not result.actions:
                    if not changes.full and not changes.events and not changes.removed:
                        idle[link_id] = snap
                    continue
                if snap.user_id in local_users or not all(isinstance(a, LOCAL_ACTIONS) for a in result.actions):
                    continue
                # A full listing covers only the window: a linked event it does not show is asked
                # for, link by link, before anything is deleted (`PlanExecutor.confirm_missing`).
                if changes.full and not {p.event_id for p in linked} <= {e.event_id for e in changes.events}:
                    continue
                local[link_id] = result
                local_users.add(snap.user_id)
        return idle, local

    def settle(self, settled: dict[int, Snapshot], listed: dict[int, ChangeSet | Exception],
               apply: Callable[[Transaction, Snapshot], None] | None = None, size: int = BATCH * 4) -> None:
        """Record a successful poll of many links in a few transactions, ``size`` links each;
        ``apply`` first carries out what a link's plan changes in the store, in the same
        transaction (an error rolls back every link of that transaction)."""
        for snap in settled.values():
            self.schedule.recovered(snap)

        def work(session: Transaction, chunk: Sequence[int]) -> None:
            now = self.clock()
            if apply is not None:
                for link_id in chunk:
                    apply(session, settled[link_id])
            current = links.lock_many(session, chunk)
            rows = []
            for link_id in chunk:
                changes = listed[link_id]
                assert isinstance(changes, ChangeSet)
                snap = settled[link_id]
                planned = self.schedule.planned(snap, now)
                row = current.get(link_id)
                if row is not None and row.state == "reauth_required":
                    self.schedule.notices.restored(session, self.schedule.notices.ref(
                        link_id, snap.account, snap.configured), snap.user_id)
                rows.append({"id": link_id, "last_sync_at": now, "last_success_at": now, "failures": 0,
                             "last_error": None, "state": "ok", "held_deletions": 0, "release_deletions": False,
                             "cursor": changes.cursor, "lease_expires": None,
                             "next_poll_at": planned if row is None else next_poll(row.next_poll_at, snap, planned)})
            links.save_many(session, rows)
        for chunk in chunks(list(settled), size):
            self.db.run(lambda s, c=chunk: work(s, c), what="saving polled links")  # type: ignore[misc]
