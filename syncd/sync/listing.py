"""Listing many links at once, and settling those with nothing to do in one transaction.

Each account lists its calendars together (in batch requests where the provider has them).
A link whose calendar reported nothing new, and whose blocks need nothing written, only
needs its new cursor saved: thousands of such links are settled in a few statements.
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

__all__ = ["BATCH", "Listing"]

log = logging.getLogger(__name__)
BATCH = 2000  # links read, planned or settled per transaction


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

    def idle(self, snaps: dict[int, Snapshot], listed: dict[int, ChangeSet | Exception]) -> dict[int, Snapshot]:
        """Links whose calendar reported nothing new, whose blocks need nothing written, and
        that have no write of ours left to confirm: for them a sync is only saving the cursor."""
        candidates = {
            link_id: snap for link_id, snap in snaps.items()
            if isinstance(cs := listed.get(link_id), ChangeSet) and not cs.full and not cs.events and not cs.removed
            and snap.state != "held"
        }
        idle = {}
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
                result = self.plan(snap, views.get(snap.user_id, {}), pairs.get(link_id, []), changes)
                if not result.actions and not result.conflicts and not result.held_deletions:
                    idle[link_id] = snap
        return idle

    def settle(self, idle: dict[int, Snapshot], listed: dict[int, ChangeSet | Exception]) -> None:
        """Record a successful, uneventful poll of many links in a few transactions."""
        for snap in idle.values():
            self.schedule.recovered(snap)

        def work(session: Transaction, chunk: Sequence[int]) -> None:
            now = self.clock()
            current = links.lock_many(session, chunk)
            rows = []
            for link_id in chunk:
                changes = listed[link_id]
                assert isinstance(changes, ChangeSet)
                snap = idle[link_id]
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
        for chunk in chunks(list(idle), BATCH * 4):
            self.db.run(lambda s, c=chunk: work(s, c), what="saving polled links")  # type: ignore[misc]
