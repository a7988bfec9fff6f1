"""The sync runner: one pass over many links, or over one.

A pass lists the links' calendars together (`syncd.sync.listing`), settles those with
nothing to do, carries out together the plans that only change the store (hundreds of links
to a transaction), and for each of the others plans and carries out the three-way merge
(`syncd.sync.execute`), then records when to poll it next (`syncd.sync.schedule`). Links
are claimed and held through leases (`syncd.sync.leases`), so replicas share them. The
cursor is saved last, so a crash mid-way replays the change set rather than losing it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import cast

from connectors.base import CalendarConnector
from connectors.registry import Connectors
from store import blocks, hours, links
from store.db import Transaction
from syncd.core import reconcile as rc
from syncd.core.calendars import ChangeSet, SyncWindow
from syncd.core.errors import ConfigError, CursorExpired
from syncd.core.text import first_line
from syncd.service import Syncd
from syncd.service.notices import LinkNotices
from syncd.sync.execute import BLOCK_ACTIONS, PlanExecutor
from syncd.sync.hours import WorkingHoursReader
from syncd.sync.leases import LEASE_TTL, Leases
from syncd.sync.listing import Listing
from syncd.sync.replica import ProcessIdentity, this_process
from syncd.sync.schedule import Schedule
from syncd.sync.snapshot import LinkOutcome, Snapshot, snapshot_of

__all__ = ["LIST_CHUNK", "LinkSyncer"]

log = logging.getLogger(__name__)
LIST_CHUNK = 1000  # links listed together by `sync_many` (2 batch requests of 500 for Google)
LOCAL_GROUP = 250  # links whose plans only change the store, carried out per transaction


class LinkSyncer:
    def __init__(self, service: Syncd, connectors: Connectors, *, rng: random.Random | None = None,
                 observe: Callable[[str, bool, float], None] | None = None,
                 replica: ProcessIdentity | str | None = None, lease_ttl: timedelta = LEASE_TTL,
                 database_clock: bool = False, notices: LinkNotices | None = None) -> None:
        self.service = service
        self.db = service.db
        self.connectors = connectors
        self.observe = observe  # (provider, ok, seconds) after each pull: the metrics
        # Who holds a link's lease: several replicas share one PostgreSQL database. A plain
        # name (tests, embedders) has no process key, so its leases only ever expire.
        identity = replica if isinstance(replica, ProcessIdentity) else \
            this_process() if replica is None else ProcessIdentity(replica, "")
        self.leases = Leases(self.db, service.clock, identity, lease_ttl, database_clock=database_clock)
        daemon = service.config.daemon
        self.safety = rc.DeletionSafety(daemon.mass_delete_share, daemon.mass_delete_min)
        self.policy = cast(rc.ConflictPolicy, daemon.conflict_policy)
        notices = notices or LinkNotices(service.config, service.recorder.sinks, service.clock)
        self.schedule = Schedule(service.config, self.db, notices, rng)
        self.listing = Listing(self.db, connectors, self.schedule, service.clock, self.window, self.plan)
        self.executor = PlanExecutor(service, self.plan)
        self.hours = WorkingHoursReader(service, connectors)

    @property
    def replica(self) -> str:
        return self.leases.owner

    def claim_due(self, limit: int = 50) -> list[int]:
        return self.leases.claim_due(limit)

    def window(self, timezone: str) -> SyncWindow:
        now = self.service.clock()
        daemon = self.service.config.daemon
        return SyncWindow(now - daemon.sync_window_past, now + daemon.sync_window_future, timezone)

    def plan(self, snap: Snapshot, views: Mapping[str, rc.BlockView], pairs: Sequence[rc.Pair],
             changes: ChangeSet) -> rc.Plan:
        return rc.plan(link=snap.link, blocks=views, pairs=pairs, changes=changes, window=self.window(snap.timezone),
                       policy=self.policy, safety=self.safety, release_deletions=snap.release_deletions)

    # -- passes -----------------------------------------------------------------------------------
    def link_ids(self, user_ids: Sequence[str] | None = None) -> list[int]:
        return self.db.run(lambda s: links.enabled_ids(s, user_ids))

    def sync_once(self, user_ids: Sequence[str] | None = None) -> list[LinkOutcome]:
        """One pass over every enabled link, then a push pass so blocks pulled from one
        calendar reach the user's other calendars in the same run; then the working hours
        kept in calendars that are due (or were just listed in full) are read."""
        outcomes = self._sync_once(user_ids)
        self.hours.read_due()
        return outcomes

    def _sync_once(self, user_ids: Sequence[str] | None) -> list[LinkOutcome]:
        outcomes = self.sync_many(self.link_ids(user_ids))
        changed = [o for o in outcomes if o.blocks_changed]
        for _ in range(2):
            if not changed:
                break
            pushed = [self.sync_link(link_id, pull=False) for link_id in self._to_push(changed)]
            by_id = {o.link_id: o for o in pushed}
            outcomes = [o.merged(by_id.get(o.link_id)) for o in outcomes]
            changed = [o for o in pushed if o.blocks_changed]
        return outcomes

    def _to_push(self, changed: Sequence[LinkOutcome]) -> list[int]:
        """The links that must hear of blocks other links changed: every link of those users,
        except a link that was the only one to change its user's blocks (it is in step)."""
        changers: dict[str, set[int]] = {}
        for outcome in changed:
            changers.setdefault(outcome.user_id, set()).add(outcome.link_id)
        ids = self.link_ids(sorted(changers))
        owner = self.db.read(lambda s: links.users_of(s, ids))
        return [link for link in ids if not (len(changers[owner[link]]) == 1 and link in changers[owner[link]])]

    def sync_many(self, link_ids: Sequence[int], *,
                  stopping: Callable[[], bool] = lambda: False) -> list[LinkOutcome]:
        """Pull many links at once: each account lists its calendars together (in batch
        requests where the provider has them); links with nothing to do are settled in one
        transaction, links whose plans only change the store in a few; the others are synced
        one by one with what was listed for them.

        Links go `LIST_CHUNK` at a time (bounded memory: change sets are held until used), and
        the next chunk is listed while this one is carried out, so the time spent waiting on
        the provider overlaps the time spent on the store."""
        outcomes: list[LinkOutcome] = []
        chunks = [link_ids[n:n + LIST_CHUNK] for n in range(0, len(link_ids), LIST_CHUNK)]
        with self.leases.holding(link_ids), ThreadPoolExecutor(1, thread_name_prefix="listing-ahead") as ahead:
            upcoming = self._list_ahead(ahead, chunks[0]) if chunks else None
            for n, chunk in enumerate(chunks):
                assert upcoming is not None
                snaps, listing = upcoming
                upcoming = None
                if stopping():
                    listing.cancel()
                    self.leases.release(link_ids[n * LIST_CHUNK:])
                    break
                if n + 1 < len(chunks):
                    upcoming = self._list_ahead(ahead, chunks[n + 1])
                started = time.monotonic()
                outcomes += self._sync_chunk(chunk, snaps, listing.result(), stopping, started)
            if upcoming is not None:  # stopped: what was listed ahead is not used
                upcoming[1].cancel()
        return outcomes

    def _list_ahead(self, ahead: ThreadPoolExecutor, chunk: Sequence[int]
                    ) -> tuple[dict[int, Snapshot], Future[dict[int, ChangeSet | Exception]]]:
        """The chunk's snapshots (read here), and its listing, started on ``ahead``."""
        snaps = self.listing.snapshots(chunk)
        return snaps, ahead.submit(self.listing.list_many, list(snaps.values()))

    def _sync_chunk(self, link_ids: Sequence[int], snaps: dict[int, Snapshot],
                    listed: dict[int, ChangeSet | Exception], stopping: Callable[[], bool],
                    started: float) -> list[LinkOutcome]:
        idle, local = self.listing.sort(snaps, listed)
        if idle:
            self.listing.settle(idle, listed)
        settled = self._settle_local(snaps, local, listed)
        settled.update({link_id: LinkOutcome(link_id, snap.name, account=snap.account, user_id=snap.user_id)
                        for link_id, snap in idle.items()})
        share = (time.monotonic() - started) / max(1, len(link_ids))
        outcomes = []
        for n, link_id in enumerate(link_ids):
            if stopping():
                self.leases.release(link_ids[n:])  # claimed but not synced: due again for the next start
                break
            snap = snaps.get(link_id)
            if snap is not None and link_id in settled:
                outcomes.append(settled[link_id])
                self._observe(snap.account, True, share)
            else:
                outcomes.append(self.sync_link(link_id, prefetched=listed.pop(link_id, None),
                                               started_at=snap.started_at if snap is not None else None))
        return outcomes

    def _settle_local(self, snaps: Mapping[int, Snapshot], local: Mapping[int, rc.Plan],
                      listed: dict[int, ChangeSet | Exception]) -> dict[int, LinkOutcome]:
        """Carry out the plans that only change the store, `LOCAL_GROUP` links a transaction;
        the outcome of each link settled. A group that fails is left to the link-by-link path,
        where a failure stays with its own link."""
        settled: dict[int, LinkOutcome] = {}
        ids = list(local)
        for n in range(0, len(ids), LOCAL_GROUP):
            group = {link_id: snaps[link_id] for link_id in ids[n:n + LOCAL_GROUP]}
            try:
                self.listing.settle(group, listed, lambda session, snap: self.executor.apply_local(
                    session, snap, local[snap.link.id].actions), size=LOCAL_GROUP)
            except Exception as exc:  # noqa: BLE001 - each of these links is synced alone next
                log.info("%d links could not be settled together (%s); syncing them one by one", len(group),
                         first_line(exc))
                continue
            for link_id, snap in group.items():
                actions = local[link_id].actions
                settled[link_id] = LinkOutcome(link_id, snap.name, account=snap.account, user_id=snap.user_id,
                                               actions=len(actions),
                                               blocks_changed=any(isinstance(a, BLOCK_ACTIONS) for a in actions))
        return settled

    # -- one link ---------------------------------------------------------------------------------
    def sync_link(self, link_id: int, *, pull: bool = True, prefetched: ChangeSet | Exception | None = None,
                  started_at: datetime | None = None) -> LinkOutcome:
        """Sync one link; ``prefetched`` is its change set (or the error listing it raised)
        when `sync_many` already listed it with others, at ``started_at``."""
        started = time.monotonic()
        outcome = self._sync_link(link_id, pull=pull, prefetched=prefetched, started_at=started_at)
        if pull:
            self._observe(outcome.account, outcome.ok, time.monotonic() - started)
        return outcome

    def _sync_link(self, link_id: int, *, pull: bool, prefetched: ChangeSet | Exception | None,
                   started_at: datetime | None) -> LinkOutcome:
        snap = self.db.run(lambda s: self._snapshot(s, link_id))
        if started_at is not None:
            snap.started_at = started_at  # the listing began then: a poll asked for since is kept
        outcome = LinkOutcome(link_id, snap.name, account=snap.account, user_id=snap.user_id)
        try:
            connector = self.connectors.for_account(snap.account)
            snap.calendar = connector.address(snap.email, snap.calendar)
            changes = self._changes(connector, snap, pull, prefetched)
            written = self.db.read(lambda s: blocks.unconfirmed_writes(s, snap.link.id)) if pull else []
            if changes.full:
                self.executor.confirm_missing(connector, snap, self.window(snap.timezone), changes)
            else:
                self.executor.confirm_written(connector, snap, changes, written)
            result = self.executor.reconcile(connector, snap, changes, outcome)
        except Exception as exc:  # noqa: BLE001 - ours or a connector's bug: the other links go on
            self.schedule.failed(snap, outcome, exc, self.service.clock())
            return outcome
        if pull:
            self.schedule.succeeded(snap, result, changes.cursor, self.service.clock(), written)
            if changes.full:  # a full listing: working hours kept in the calendar are read again too
                self.db.run(lambda s: hours.read_again(s, [link_id]), what="saving polled links")
        return outcome

    def _changes(self, connector: CalendarConnector, snap: Snapshot, pull: bool,
                 prefetched: ChangeSet | Exception | None) -> ChangeSet:
        if not pull:
            return ChangeSet(cursor=snap.cursor)
        if prefetched is not None and not isinstance(prefetched, CursorExpired):
            if isinstance(prefetched, Exception):
                raise prefetched
            return prefetched
        window = self.window(snap.timezone)
        try:
            if prefetched is not None:
                raise CursorExpired("the cursor expired while listing with other links")
            return connector.changes(snap.calendar, snap.cursor, window)
        except CursorExpired:
            log.info("link %s: sync cursor expired; full resync", snap.name,
                     extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
            return connector.changes(snap.calendar, None, window)

    def _snapshot(self, session: Transaction, link_id: int) -> Snapshot:
        found = links.snapshot_rows(session, [link_id], self.service.clock())
        if not found:
            raise ConfigError(f"no link {link_id}")
        link, user, pushed = found[0]
        return snapshot_of(link, user, pushed, self.service.clock())

    def release_deletions(self, link_id: int) -> str:
        return self.service.release_deletions(link_id)

    def _observe(self, account_name: str, ok: bool, seconds: float) -> None:
        if self.observe is not None:
            account = self.service.config.accounts.get(account_name)
            self.observe(account.provider if account else "unknown", ok, seconds)

