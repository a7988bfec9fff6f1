"""Executing the reconcile plan for one calendar link: the thin I/O shell around `plan`.

Each action is a remote call (if any) followed by one small transaction that records its
result together with the status change it causes. Remote writes cannot share a database
transaction, so every step is idempotent instead: an event created just before a crash
carries our block id and is adopted on the next pass; an update whose link was not saved
shows up as "both sides equal" and is simply re-linked. The cursor is saved last, so a
crash mid-way replays the change set rather than losing it.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from connectors.base import CalendarConnector
from connectors.registry import Connectors
from store.models import BlockRow, CalendarLinkRow, EventLinkRow, PushChannelRow, UserRow
from syncd.core import reconcile as rc
from syncd.core.calendars import ChangeSet, EventDraft, PollRequest, RemoteEvent, SyncWindow
from syncd.core.errors import (
    Bug,
    ConfigError,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RateLimited,
    ReauthRequired,
    SyncdError,
    TransientError,
)
from syncd.core.ooo import OooContent
from syncd.replica import ProcessIdentity, holder_is_dead, this_process
from syncd.service import Syncd, block_content, content_columns, set_content

__all__ = ["LinkOutcome", "LinkSyncer"]

log = logging.getLogger("syncd.sync")
MAX_ROUNDS = 4  # re-read + re-merge rounds after lost write races
MAX_BACKOFF = timedelta(hours=1)
LEASE_TTL = timedelta(seconds=60)  # a replica that dies loses its links to the others after this
PUSH_POLL_INTERVAL = timedelta(hours=1)  # the fallback poll of a link whose push channel is live
DEAD_HOLDER_CHECK = 5.0  # seconds between looks for leases held by dead processes of this machine
BATCH = 2000  # database-only actions per transaction (each one re-evaluates the user's status)
LIST_CHUNK = 1000  # links listed together by `sync_many` (10 batch requests of 100 for Google)
LOCAL_ACTIONS = (rc.CreateBlock, rc.UpdateBlock, rc.DeleteBlock, rc.Relink, rc.Adopt, rc.Unlink)
BLOCK_ACTIONS = (rc.CreateBlock, rc.UpdateBlock, rc.DeleteBlock)


@dataclass
class LinkOutcome:
    link_id: int
    name: str
    account: str = ""
    user_id: str = ""
    ok: bool = True
    error: str | None = None
    actions: int = 0
    held_deletions: int = 0
    conflicts: int = 0
    blocks_changed: bool = False


@dataclass
class _Snapshot:
    link: rc.LinkView
    user_id: str
    timezone: str
    account: str
    calendar: str
    cursor: str | None
    release_deletions: bool
    state: str
    failures: int
    name: str
    email: str = ""
    pushed: bool = False  # a live push channel tells us about changes: poll less often
    started_at: datetime | None = None  # a poll asked for after this (a notification) is kept


@dataclass
class _Round:
    retry_events: list[RemoteEvent] = field(default_factory=list)
    retry_removed: list[str] = field(default_factory=list)


class LinkSyncer:
    def __init__(self, service: Syncd, connectors: Connectors, *, rng: random.Random | None = None,
                 observe: Callable[[str, bool, float], None] | None = None,
                 replica: ProcessIdentity | str | None = None, lease_ttl: timedelta = LEASE_TTL) -> None:
        self.observe = observe  # (provider, ok, seconds) after each pull: the metrics
        # Who holds a link's lease: several replicas share one PostgreSQL database. A plain
        # name (tests, embedders) has no process key, so its leases only ever expire.
        identity = replica if isinstance(replica, ProcessIdentity) else \
            this_process() if replica is None else ProcessIdentity(replica, "")
        self.replica, self.process = identity.name, identity.key
        self.lease_ttl = lease_ttl
        self._dead_checked = float("-inf")  # monotonic time of the last look for dead holders
        self.service = service
        self.db = service.db
        self.connectors = connectors
        self.rng = rng or random.Random()
        daemon = service.config.daemon
        self.safety = rc.DeletionSafety(daemon.mass_delete_share, daemon.mass_delete_min)
        self.policy = cast(rc.ConflictPolicy, daemon.conflict_policy)

    # -- entry points --------------------------------------------------------------------
    def link_ids(self, user_ids: Sequence[str] | None = None) -> list[int]:
        def work(session: Session) -> list[int]:
            query = select(CalendarLinkRow.id).where(CalendarLinkRow.enabled.is_(True),
                                                     CalendarLinkRow.sync_ooo.is_(True))
            if user_ids:
                query = query.where(CalendarLinkRow.user_id.in_(user_ids))
            return list(session.scalars(query.order_by(CalendarLinkRow.user_id, CalendarLinkRow.id)))
        return self.db.run(work)

    def sync_once(self, user_ids: Sequence[str] | None = None) -> list[LinkOutcome]:
        """One pass over every enabled link, then a push pass so blocks pulled from one
        calendar reach the user's other calendars in the same run."""
        outcomes = self.sync_many(self.link_ids(user_ids))
        changed = [o for o in outcomes if o.blocks_changed]
        for _ in range(2):
            if not changed:
                break
            pushed = [self.sync_link(link_id, pull=False) for link_id in self._to_push(changed)]
            by_id = {o.link_id: o for o in pushed}
            outcomes = [_merge(o, by_id.get(o.link_id)) for o in outcomes]
            changed = [o for o in pushed if o.blocks_changed]
        return outcomes

    def _to_push(self, changed: Sequence[LinkOutcome]) -> list[int]:
        """The links that must hear of blocks other links changed: every link of those users,
        except a link that was the only one to change its user's blocks (it is in step)."""
        changers: dict[str, set[int]] = {}
        for outcome in changed:
            changers.setdefault(outcome.user_id, set()).add(outcome.link_id)
        links = self.link_ids(sorted(changers))
        users = self.db.read(lambda s: {link: user for link, user in s.execute(
            select(CalendarLinkRow.id, CalendarLinkRow.user_id).where(CalendarLinkRow.id.in_(links)))})
        return [link for link in links
                if not (len(changers[users[link]]) == 1 and link in changers[users[link]])]

    def sync_many(self, link_ids: Sequence[int], *,
                  stopping: Callable[[], bool] = lambda: False) -> list[LinkOutcome]:
        """Pull many links at once: each account lists its calendars together (in batch
        requests where the provider has them); links with nothing to do are settled in one
        transaction; the others are synced one by one with what was listed for them."""
        outcomes: list[LinkOutcome] = []
        with self._holding(link_ids):  # claimed links stay ours while we work on them
            for n in range(0, len(link_ids), LIST_CHUNK):  # bounded memory: change sets are held until used
                chunk = link_ids[n:n + LIST_CHUNK]
                if stopping():
                    self._release(link_ids[n:])
                    break
                outcomes += self._sync_chunk(chunk, stopping)
        return outcomes

    def _sync_chunk(self, link_ids: Sequence[int], stopping: Callable[[], bool]) -> list[LinkOutcome]:
        started = time.monotonic()
        snaps: dict[int, _Snapshot] = {}
        for chunk in _chunks(link_ids, BATCH):
            snaps.update(self.db.read(lambda s, c=chunk: self._snapshots(s, c)))  # type: ignore[misc]
        listed = self._list_many(list(snaps.values()))
        idle = self._idle(snaps, listed)
        if idle:
            self._settle(idle, listed)
        share = (time.monotonic() - started) / max(1, len(link_ids))
        outcomes = []
        for n, link_id in enumerate(link_ids):
            if stopping():
                self._release(link_ids[n:])  # claimed but not synced: due again for the next start
                break
            snap = snaps.get(link_id)
            if snap is not None and link_id in idle:
                outcomes.append(LinkOutcome(link_id, snap.name, account=snap.account, user_id=snap.user_id))
                self._observe(snap.account, True, share)
            else:
                outcomes.append(self.sync_link(link_id, prefetched=listed.pop(link_id, None),
                                               started_at=snap.started_at if snap is not None else None))
        return outcomes

    def _release(self, link_ids: Sequence[int]) -> None:
        now = self.service.clock()
        self.db.run(lambda s: s.execute(update(CalendarLinkRow).where(CalendarLinkRow.id.in_(link_ids))
                                        .values(next_poll_at=now, lease_expires=None)), what="releasing links")

    def _snapshots(self, session: Session, link_ids: Sequence[int]) -> dict[int, _Snapshot]:
        rows = session.execute(select(CalendarLinkRow, UserRow).join(UserRow, UserRow.id == CalendarLinkRow.user_id)
                               .where(CalendarLinkRow.id.in_(link_ids)))
        pushed = self._pushed(session, link_ids)
        now = self.service.clock()
        return {link.id: _snapshot_of(link, user, pushed, now) for link, user in rows}

    def _list_many(self, snaps: Sequence[_Snapshot]) -> dict[int, ChangeSet | Exception]:
        by_account: dict[str, list[_Snapshot]] = {}
        for snap in snaps:
            by_account.setdefault(snap.account, []).append(snap)
        listed: dict[int, ChangeSet | Exception] = {}
        for account, group in by_account.items():
            try:
                connector = self.connectors.for_account(account)
                requests = []
                for snap in group:
                    snap.calendar = connector.address(snap.email, snap.calendar)
                    requests.append(PollRequest(snap.calendar, snap.cursor, self._window(snap.timezone)))
                results = connector.changes_many(requests)
            except SyncdError as exc:
                results = [exc] * len(group)
            except Exception as exc:  # a connector bug: every link of the account reports it
                log.error("account %s: listing failed: %s", account, exc, exc_info=True)
                results = [Bug(f"account {account}: listing failed: {exc}")] * len(group)
            for snap, result in zip(group, results, strict=True):
                listed[snap.link.id] = result
        return listed

    def _idle(self, snaps: dict[int, _Snapshot], listed: dict[int, ChangeSet | Exception]) -> dict[int, _Snapshot]:
        """Links whose calendar reported nothing new and whose blocks need nothing written:
        for them a sync is only saving the new cursor."""
        candidates = {
            link_id: snap for link_id, snap in snaps.items()
            if isinstance(cs := listed.get(link_id), ChangeSet) and not cs.full and not cs.events and not cs.removed
            and snap.state != "held"
        }
        if not candidates:
            return {}

        def load(session: Session, chunk: Sequence[int]) -> tuple[list[Any], list[Any]]:
            users = {candidates[i].user_id for i in chunk}
            blocks = list(session.execute(select(*BLOCK_COLUMNS).where(BlockRow.user_id.in_(users))))
            pairs = list(session.execute(select(EventLinkRow.link_id, EventLinkRow.block_id, EventLinkRow.event_id,
                                                EventLinkRow.etag, EventLinkRow.base_hash, EventLinkRow.unconfirmed)
                                         .where(EventLinkRow.link_id.in_(chunk))))
            return blocks, pairs
        idle = {}
        for chunk in _chunks(list(candidates), BATCH):  # a chunk at a time: memory stays flat
            block_rows, pair_rows = self.db.read(lambda s, c=chunk: load(s, c))  # type: ignore[misc]
            blocks_of: dict[str, dict[str, rc.BlockView]] = {}
            pairs_of: dict[int, list[rc.Pair]] = {}
            unconfirmed: set[int] = set()  # links with writes of ours to check: not idle
            for r in block_rows:
                blocks_of.setdefault(r.user_id, {})[r.id] = _block_view(r)
            for p in pair_rows:
                pairs_of.setdefault(p.link_id, []).append(rc.Pair(p.block_id, p.event_id, p.etag, p.base_hash))
                if p.unconfirmed:
                    unconfirmed.add(p.link_id)
            for link_id in chunk:
                if link_id in unconfirmed:
                    continue
                snap = candidates[link_id]
                changes = listed[link_id]
                assert isinstance(changes, ChangeSet)
                result = rc.plan(link=snap.link, blocks=blocks_of.get(snap.user_id, {}),
                                 pairs=pairs_of.get(link_id, []), changes=changes, window=self._window(snap.timezone),
                                 policy=self.policy, safety=self.safety, release_deletions=snap.release_deletions)
                if not result.actions and not result.conflicts and not result.held_deletions:
                    idle[link_id] = snap
        return idle

    def _settle(self, idle: dict[int, _Snapshot], listed: dict[int, ChangeSet | Exception]) -> None:
        """Record a successful, uneventful poll of many links in one transaction."""
        for snap in idle.values():
            if snap.state not in ("ok", "held"):
                log.info("link %s: recovered after %d failed attempt(s)", snap.name, snap.failures)

        def work(session: Session, chunk: Sequence[int]) -> None:
            now = self.service.clock()
            query = select(CalendarLinkRow).where(CalendarLinkRow.id.in_(chunk))
            if self.db.dialect == "postgresql":
                query = query.with_for_update()  # a notification arriving now must not be overwritten
            current = {row.id: row for row in session.scalars(query)}
            rows = []
            for link_id in chunk:
                changes = listed[link_id]
                assert isinstance(changes, ChangeSet)
                planned = now + self._jittered(self._interval(idle[link_id]))
                row = current.get(link_id)
                rows.append({"id": link_id, "last_sync_at": now, "last_success_at": now, "failures": 0,
                             "last_error": None, "state": "ok", "held_deletions": 0, "release_deletions": False,
                             "cursor": changes.cursor, "lease_expires": None,
                             "next_poll_at": planned if row is None else _next_poll(row, idle[link_id], planned)})
            session.expunge_all()
            session.execute(update(CalendarLinkRow), rows)
        for chunk in _chunks(list(idle), BATCH * 4):
            self.db.run(lambda s, c=chunk: work(s, c), what="saving polled links")  # type: ignore[misc]

    def claim_due(self, limit: int = 50) -> list[int]:
        """Links whose poll is due and that no replica holds, leased to this one.

        The lease expires after ``lease_ttl`` unless renewed (`sync_many` renews it while it
        works), so the links of a replica that died are taken over by the others. On
        PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets replicas claim at once without waiting
        on each other or taking the same link."""
        if time.monotonic() - self._dead_checked >= DEAD_HOLDER_CHECK:
            self._dead_checked = time.monotonic()
            self._free_dead_holders()

        def work(session: Session) -> list[int]:
            now = self.service.clock()
            free = CalendarLinkRow.lease_expires.is_(None) | (CalendarLinkRow.lease_expires <= now)
            query = (select(CalendarLinkRow).where(
                CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True),
                CalendarLinkRow.next_poll_at.is_not(None), CalendarLinkRow.next_poll_at <= now, free)
                .order_by(CalendarLinkRow.next_poll_at).limit(limit))
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(session.scalars(query))
            for row in rows:
                row.lease_owner, row.lease_process = self.replica, self.process or None
                row.lease_expires = now + self.lease_ttl
            return [row.id for row in rows]
        return self.db.run(work, what="claiming links")

    def _free_dead_holders(self) -> None:
        """End the leases of processes of this machine that are gone: a daemon restarted after
        a crash (SIGKILL, OOM) resumes its predecessor's links at once, not a lease TTL later."""
        def work(session: Session) -> int:
            now = self.service.clock()
            held = CalendarLinkRow.lease_expires.is_not(None) & (CalendarLinkRow.lease_expires > now)
            holders = session.scalars(select(CalendarLinkRow.lease_process).distinct().where(
                held, CalendarLinkRow.lease_process.is_not(None)))
            dead = [key for key in holders if key != self.process and holder_is_dead(key)]
            if not dead:
                return 0
            freed = session.execute(update(CalendarLinkRow).where(held, CalendarLinkRow.lease_process.in_(dead))
                                    .values(lease_expires=None))
            return int(getattr(freed, "rowcount", 0) or 0)
        freed = self.db.run(work, what="freeing dead replicas' leases")
        if freed:
            log.info("took over %d link(s) leased by a process of this machine that is no longer running", freed)

    def _renew(self, link_ids: Sequence[int]) -> None:
        now = self.service.clock()
        self.db.run(lambda s: s.execute(
            update(CalendarLinkRow).where(CalendarLinkRow.id.in_(link_ids),
                                          CalendarLinkRow.lease_owner == self.replica,
                                          CalendarLinkRow.lease_expires.is_not(None))
            .values(lease_expires=now + self.lease_ttl)), what="renewing leases")

    def _holding(self, link_ids: Sequence[int]) -> _LeaseKeeper:
        return _LeaseKeeper(self, list(link_ids))

    def sync_link(self, link_id: int, *, pull: bool = True, prefetched: ChangeSet | Exception | None = None,
                  started_at: datetime | None = None) -> LinkOutcome:
        """Sync one link; ``prefetched`` is its change set (or the error listing it raised)
        when `sync_many` already listed it with others, at ``started_at``."""
        started = time.monotonic()
        outcome = self._sync_link(link_id, pull=pull, prefetched=prefetched, started_at=started_at)
        if pull:
            self._observe(outcome.account, outcome.ok, time.monotonic() - started)
        return outcome

    def _observe(self, account_name: str, ok: bool, seconds: float) -> None:
        if self.observe is not None:
            account = self.service.config.accounts.get(account_name)
            self.observe(account.provider if account else "unknown", ok, seconds)

    def _window(self, timezone: str) -> SyncWindow:
        now = self.service.clock()
        daemon = self.service.config.daemon
        return SyncWindow(now - daemon.sync_window_past, now + daemon.sync_window_future, timezone)

    def _sync_link(self, link_id: int, *, pull: bool, prefetched: ChangeSet | Exception | None,
                   started_at: datetime | None = None) -> LinkOutcome:
        snap = self.db.run(lambda s: self._snapshot(s, link_id))
        if started_at is not None:
            snap.started_at = started_at  # the listing began then: a poll asked for since is kept
        outcome = LinkOutcome(link_id, snap.name, account=snap.account, user_id=snap.user_id)
        try:
            connector = self.connectors.for_account(snap.account)
            snap.calendar = connector.address(snap.email, snap.calendar)
            window = self._window(snap.timezone)
            if not pull:
                changes = ChangeSet(cursor=snap.cursor)
            elif prefetched is not None and not isinstance(prefetched, CursorExpired):
                if isinstance(prefetched, Exception):
                    raise prefetched
                changes = prefetched
            else:
                changes = self._pull(connector, snap, window, expired=prefetched is not None)
            written = self.db.read(lambda s: self._unconfirmed(s, snap)) if pull else []
            if changes.full:
                self._confirm_missing(connector, snap, window, changes)
            else:
                self._confirm_written(connector, snap, changes, written)
            result = self._reconcile(connector, snap, window, changes, outcome)
        except SyncdError as exc:
            self._failed(snap, outcome, exc)
            return outcome
        except Exception as exc:  # a bug in a connector must not stop the other links
            self._failed(snap, outcome, exc)
            return outcome
        if pull:
            self._succeeded(snap, result, changes, outcome, written)
        return outcome

    def release_deletions(self, link_id: int) -> str:
        return self.service.release_deletions(link_id)

    # -- steps ---------------------------------------------------------------------------
    def _snapshot(self, session: Session, link_id: int) -> _Snapshot:
        row = session.get(CalendarLinkRow, link_id)
        if row is None:
            raise ConfigError(f"no link {link_id}")
        user = session.get(UserRow, row.user_id)
        assert user is not None
        return _snapshot_of(row, user, self._pushed(session, [row.id]), self.service.clock())

    def _pushed(self, session: Session, link_ids: Sequence[int]) -> set[int]:
        now = self.service.clock()
        return set(session.scalars(select(PushChannelRow.link_id).where(PushChannelRow.link_id.in_(link_ids),
                                                                        PushChannelRow.expires_at > now)))

    def _pull(self, connector: CalendarConnector, snap: _Snapshot, window: SyncWindow, *,
              expired: bool = False) -> ChangeSet:
        try:
            if expired:
                raise CursorExpired("the cursor expired while listing with other links")
            return connector.changes(snap.calendar, snap.cursor, window)
        except CursorExpired:
            log.info("link %s: sync cursor expired; full resync", snap.name)
            return connector.changes(snap.calendar, None, window)

    def _confirm_missing(self, connector: CalendarConnector, snap: _Snapshot, window: SyncWindow,
                         changes: ChangeSet) -> None:
        """A full listing only covers the window: a linked event missing from it may have been
        moved outside rather than deleted. Ask for it before anything is deleted."""
        listed = {e.event_id for e in changes.events}

        def missing(session: Session) -> list[str]:
            rows = session.execute(select(EventLinkRow.event_id, BlockRow.start, BlockRow.end)
                                   .join(BlockRow, BlockRow.id == EventLinkRow.block_id)
                                   .where(EventLinkRow.link_id == snap.link.id, BlockRow.deleted_at.is_(None)))
            return [eid for eid, start, end in rows if eid not in listed and window.overlaps(start, end)]
        for event_id in self.db.run(missing):
            event = connector.get(snap.calendar, event_id)
            if event is not None:
                changes.events.append(event)

    def _unconfirmed(self, session: Session, snap: _Snapshot) -> list[tuple[str, str | None]]:
        return [(event_id, etag) for event_id, etag in session.execute(
            select(EventLinkRow.event_id, EventLinkRow.etag).where(EventLinkRow.link_id == snap.link.id,
                                                                   EventLinkRow.unconfirmed.is_(True)))]

    def _confirm_written(self, connector: CalendarConnector, snap: _Snapshot, changes: ChangeSet,
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
                         event_id)
                changes.removed.append(event_id)
            else:
                changes.events.append(event)

    def _reconcile(self, connector: CalendarConnector, snap: _Snapshot, window: SyncWindow,
                   changes: ChangeSet, outcome: LinkOutcome) -> rc.Plan:
        first: rc.Plan | None = None
        for _ in range(MAX_ROUNDS):
            blocks, pairs = self.db.run(lambda s: self._load(s, snap))
            result = rc.plan(link=snap.link, blocks=blocks, pairs=pairs, changes=changes, window=window,
                             policy=self.policy, safety=self.safety, release_deletions=snap.release_deletions)
            first = first or result
            retry = _Round()
            for conflict in result.conflicts:
                log.warning("link %s: %s", snap.name, conflict.describe())
            outcome.conflicts += len(result.conflicts)
            self._execute_all(connector, snap, result.actions, retry, outcome)
            outcome.actions += len(result.actions)
            if not retry.retry_events and not retry.retry_removed:
                # A re-merge round sees only the re-read events, so deletions held by the
                # first round must stay held (and the cursor unsaved) whatever later rounds say.
                result.held_deletions = max(first.held_deletions, result.held_deletions)
                if result.held_deletions:
                    outcome.held_deletions = result.held_deletions
                return result
            # Lost a write race: re-read those events and merge again, never overwrite blindly.
            changes = ChangeSet(events=retry.retry_events, removed=retry.retry_removed, cursor=changes.cursor)
        raise TransientError(f"events kept changing while syncing ({MAX_ROUNDS} rounds); will retry")

    def _load(self, session: Session, snap: _Snapshot) -> tuple[dict[str, rc.BlockView], list[rc.Pair]]:
        # Columns, not ORM objects: a calendar with thousands of events loads them every pass.
        rows = session.execute(select(*BLOCK_COLUMNS).where(BlockRow.user_id == snap.user_id))
        blocks = {r.id: _block_view(r) for r in rows}
        pairs = [rc.Pair(*p) for p in session.execute(
            select(EventLinkRow.block_id, EventLinkRow.event_id, EventLinkRow.etag, EventLinkRow.base_hash)
            .where(EventLinkRow.link_id == snap.link.id))]
        return blocks, pairs

    def _execute_all(self, connector: CalendarConnector, snap: _Snapshot, actions: Sequence[rc.Action],
                     retry: _Round, outcome: LinkOutcome) -> None:
        """Run a plan. Actions that only touch the database are grouped into one transaction
        (with one status evaluation); each calendar write commits its own result right after."""
        batch: list[rc.Action] = []

        def flush() -> None:
            if batch:
                todo = list(batch)
                batch.clear()
                self.db.run(lambda s: self._apply_local(s, snap, todo), what=f"link {snap.name}")
                outcome.blocks_changed |= any(isinstance(a, BLOCK_ACTIONS) for a in todo)

        for action in actions:
            if isinstance(action, LOCAL_ACTIONS):
                batch.append(action)
                if len(batch) >= BATCH:
                    flush()
                continue
            flush()
            self._write_calendar(connector, snap, action, retry)
        flush()

    def _apply_local(self, session: Session, snap: _Snapshot, actions: Sequence[rc.Action]) -> None:
        now = self.service.clock()
        changes_blocks = any(isinstance(a, BLOCK_ACTIONS) for a in actions)
        if changes_blocks:
            self._before_change(session, snap, now)
        new_blocks: list[dict[str, Any]] = []
        new_links: list[dict[str, Any]] = []
        for action in actions:
            match action:
                case rc.CreateBlock(event):
                    self._create_block(snap, event, now, new_blocks, new_links)
                case rc.UpdateBlock(block_id, event, _, undelete):
                    self._update_block(session, snap, block_id, event, undelete, now)
                case rc.DeleteBlock(block_id, _):
                    self._delete_block(session, snap, block_id, now)
                case rc.Relink(block_id, event):
                    self._link(session, snap, block_id, event, event.content.in_zone(snap.timezone).fingerprint())
                case rc.Adopt(block_id, event):
                    self._link(session, snap, block_id, event, block_content(_block(session, block_id)).fingerprint())
                case rc.Unlink(_, event_id):
                    self._unlink(session, snap, event_id)
        if new_blocks:
            # One statement each, not an ORM object per row: a first sync creates thousands.
            session.execute(insert(BlockRow), new_blocks)
            session.execute(insert(EventLinkRow), new_links)
        if changes_blocks:
            self._block_changed(session, snap, now)

    def _write_calendar(self, connector: CalendarConnector, snap: _Snapshot, action: rc.Action,
                        retry: _Round) -> None:
        cal = snap.calendar
        try:
            match action:
                case rc.CreateEvent(block_id, replaces):
                    content = self.db.run(lambda s: block_content(_block(s, block_id)))
                    created = connector.create(cal, EventDraft(block_id, content, snap.timezone))
                    held = created.content.in_zone(snap.timezone).fingerprint()
                    # `create` is idempotent per block id: it may hand back an older write of ours
                    # (a crash before its link was saved). Link what the calendar really holds and
                    # merge once more, rather than recording content the event does not have.
                    self.db.run(lambda s: self._link(s, snap, block_id, created, held, replaces, ours=True))
                    if held != content.fingerprint():
                        retry.retry_events.append(created)
                case rc.UpdateEvent(block_id, event_id, etag, _):
                    content = self.db.run(lambda s: block_content(_block(s, block_id)))
                    updated = connector.update(cal, event_id, EventDraft(block_id, content, snap.timezone),
                                               etag or "")
                    self.db.run(lambda s: self._link(s, snap, block_id, updated, content.fingerprint(), ours=True))
                case rc.DeleteEvent(block_id, event_id, etag, linked):
                    connector.delete(cal, event_id, etag)
                    if linked:
                        self.db.run(lambda s: self._unlink(s, snap, event_id))
        except PreconditionFailed:
            lost = _event_id_of(action)
            fresh = connector.get(cal, lost)
            if fresh is None:
                retry.retry_removed.append(lost)
            else:
                retry.retry_events.append(fresh)
        except NotFound:
            retry.retry_removed.append(_event_id_of(action))

    # -- the database side of each action ------------------------------------------------
    def _create_block(self, snap: _Snapshot, event: RemoteEvent, now: datetime, blocks: list[dict[str, Any]],
                      links: list[dict[str, Any]]) -> None:
        """The rows of a new block and its link, inserted together by `_apply_local`. The event
        is unlinked (the plan creates blocks only for those), so there is no old link to clear."""
        content = event.content.in_zone(snap.timezone)
        block_id = uuid.uuid4().hex
        blocks.append({"id": block_id, "user_id": snap.user_id, "source": snap.link.source, "revision": 1,
                       "created_at": now, "updated_at": now, "deleted_at": None, **content_columns(content)})
        links.append({"link_id": snap.link.id, "block_id": block_id, "event_id": event.event_id, "etag": event.etag,
                      "base_hash": content.fingerprint(), "synced_at": now})

    def _update_block(self, session: Session, snap: _Snapshot, block_id: str, event: RemoteEvent,
                      undelete: bool, now: datetime) -> None:
        row = _block(session, block_id)
        content = event.content.in_zone(snap.timezone)
        set_content(row, content)
        row.revision += 1
        row.updated_at = now
        if undelete:
            row.deleted_at = None
        self._link(session, snap, block_id, event, content.fingerprint())

    def _delete_block(self, session: Session, snap: _Snapshot, block_id: str, now: datetime) -> None:
        row = _block(session, block_id)
        row.deleted_at, row.updated_at, row.revision = now, now, row.revision + 1
        session.execute(delete(EventLinkRow).where(EventLinkRow.link_id == snap.link.id,
                                                   EventLinkRow.block_id == block_id))

    def _before_change(self, session: Session, snap: _Snapshot, now: datetime) -> None:
        """Transitions due before this edit are published with their own time, not the edit's."""
        user = session.get(UserRow, snap.user_id)
        assert user is not None
        self.service.recorder.advance_due(session, user, now)

    def _block_changed(self, session: Session, snap: _Snapshot, now: datetime) -> None:
        user = session.get(UserRow, snap.user_id)
        assert user is not None
        self.service.recorder.advance(session, user, now)
        # The user's other calendars must hear of it soon.
        session.execute(update(CalendarLinkRow).where(
            CalendarLinkRow.user_id == snap.user_id, CalendarLinkRow.id != snap.link.id,
            CalendarLinkRow.enabled.is_(True), CalendarLinkRow.state != "reauth_required").values(next_poll_at=now))

    def _link(self, session: Session, snap: _Snapshot, block_id: str, event: RemoteEvent, base: str,
              replaces: str | None = None, *, ours: bool = False) -> None:
        """Record the pair; ``ours`` when the event is what syncd just wrote (no listing has shown it)."""
        link_id = snap.link.id
        session.execute(delete(EventLinkRow).where(
            EventLinkRow.link_id == link_id,
            (EventLinkRow.block_id == block_id) | (EventLinkRow.event_id == event.event_id)
            | (EventLinkRow.event_id == (replaces or event.event_id))))
        session.add(EventLinkRow(link_id=link_id, block_id=block_id, event_id=event.event_id, etag=event.etag,
                                 base_hash=base, synced_at=self.service.clock(), unconfirmed=ours))

    def _unlink(self, session: Session, snap: _Snapshot, event_id: str) -> None:
        session.execute(delete(EventLinkRow).where(EventLinkRow.link_id == snap.link.id,
                                                   EventLinkRow.event_id == event_id))

    # -- bookkeeping ---------------------------------------------------------------------
    def _succeeded(self, snap: _Snapshot, result: rc.Plan, changes: ChangeSet, outcome: LinkOutcome,
                   written: Sequence[tuple[str, str | None]] = ()) -> None:
        def work(session: Session) -> None:
            now = self.service.clock()
            row = session.get(CalendarLinkRow, snap.link.id)
            if row is None:
                return
            if snap.state not in ("ok", "held"):
                log.info("link %s: recovered after %d failed attempt(s)", snap.name, snap.failures)
            row.last_sync_at = row.last_success_at = now
            row.failures, row.last_error = 0, None
            row.next_poll_at = _next_poll(row, snap, now + self._jittered(self._interval(snap)))
            row.lease_expires = None
            if result.held_deletions:
                if row.state != "held" or row.held_deletions != result.held_deletions:
                    log.warning("link %s: held %d deletions (the calendar suddenly lacks most of this user's "
                                "blocks); confirm with `syncd links release-deletions %d`",
                                snap.name, result.held_deletions, row.id)
                row.state, row.held_deletions = "held", result.held_deletions
                row.last_error = (f"{result.held_deletions} deletions held by the safety valve; "
                                  f"confirm with `syncd links release-deletions {row.id}`")
                return  # keep the cursor: the deletions are replayed once released
            row.state, row.held_deletions, row.release_deletions = "ok", 0, False
            row.cursor = changes.cursor
            seen = [{"e": event_id, "t": etag} for event_id, etag in written if etag is not None]
            if seen:
                # This listing (or a read) has seen those writes; one written again since stays unconfirmed.
                session.connection().execute(update(_PAIRS).where(
                    _PAIRS.c.link_id == snap.link.id, _PAIRS.c.event_id == bindparam("e"),
                    _PAIRS.c.etag == bindparam("t")).values(unconfirmed=False), seen)
        self.db.run(work, what=f"saving link {snap.name}")

    def _failed(self, snap: _Snapshot, outcome: LinkOutcome, exc: Exception) -> None:
        message = _one_line(exc)
        outcome.ok, outcome.error = False, message
        at_least = timedelta(0)  # the provider's Retry-After: a floor the jitter must not go under
        if isinstance(exc, ReauthRequired):
            state, delay = "reauth_required", MAX_BACKOFF
        else:
            state = "error"
            base = self.service.config.daemon.poll_interval
            delay = min(MAX_BACKOFF, timedelta(seconds=min(base.total_seconds(), 60) * 2 ** min(snap.failures, 10)))
            if isinstance(exc, RateLimited) and exc.retry_after:
                at_least = timedelta(seconds=exc.retry_after)
                delay = max(delay, at_least)
        if snap.state in ("ok", "held") or (snap.state != state):
            # Once per failure episode, not every poll; a traceback for a Bug and what is not ours.
            log.warning("link %s: sync failed: %s", snap.name, message,
                        exc_info=isinstance(exc, Bug) or not isinstance(exc, SyncdError))
        else:
            log.debug("link %s: still failing: %s", snap.name, message)

        def work(session: Session) -> None:
            row = session.get(CalendarLinkRow, snap.link.id)
            if row is None:
                return
            now = self.service.clock()
            row.state, row.last_error, row.last_sync_at = state, message, now
            row.failures += 1
            row.next_poll_at = now + max(self._jittered(delay), at_least)
            row.lease_expires = None
        self.db.run(work, what=f"saving link {snap.name}")

    def _interval(self, snap: _Snapshot) -> timedelta:
        """The poll interval; longer while a push channel reports changes as they happen."""
        interval = self.service.config.daemon.poll_interval
        if snap.pushed:
            account = self.service.config.accounts.get(snap.account)
            pushed = account.options.get("push_poll_interval") if account is not None else None
            interval = max(interval, pushed or PUSH_POLL_INTERVAL)
        return interval

    def _jittered(self, interval: timedelta) -> timedelta:
        # ±10 % so a thousand links configured at once do not poll in lockstep.
        return interval * self.rng.uniform(0.9, 1.1)



_PAIRS = cast(Table, EventLinkRow.__table__)
BLOCK_COLUMNS = (BlockRow.id, BlockRow.user_id, BlockRow.start, BlockRow.end, BlockRow.all_day, BlockRow.start_date,
                 BlockRow.end_date, BlockRow.timezone, BlockRow.title, BlockRow.updated_at, BlockRow.deleted_at)


def _block_view(r: Any) -> rc.BlockView:
    content = OooContent(start=r.start, end=r.end, all_day=r.all_day, start_date=r.start_date, end_date=r.end_date,
                         timezone=r.timezone, title=r.title)
    return rc.BlockView(r.id, content, r.updated_at, r.deleted_at is not None)


def _chunks(items: Sequence[int], size: int) -> list[Sequence[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _snapshot_of(row: CalendarLinkRow, user: UserRow, pushed: set[int], now: datetime) -> _Snapshot:
    view = rc.LinkView(row.id, cast(rc.Direction, row.direction), f"calendar:{row.account}/{row.calendar}")
    return _Snapshot(view, user.id, user.timezone, row.account, row.calendar, row.cursor, row.release_deletions,
                     row.state, row.failures, f"{user.id}/{row.account}/{row.calendar}", user.email.lower(),
                     row.id in pushed, now)


def _next_poll(row: CalendarLinkRow, snap: _Snapshot, planned: datetime) -> datetime:
    """When to poll next: as planned, unless a poll was asked for (a push notification)
    while this sync ran, which it may have missed."""
    asked = row.next_poll_at
    if asked is not None and snap.started_at is not None and asked > snap.started_at:
        return min(asked, planned)
    return planned


class _LeaseKeeper:
    """Renews this replica's leases on ``link_ids`` every third of the lease's life while a
    `sync_many` runs, so a long pass does not lose its links to another replica."""

    def __init__(self, syncer: LinkSyncer, link_ids: list[int]) -> None:
        self.syncer, self.link_ids = syncer, link_ids
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="syncd-leases", daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        if self.link_ids:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        every = max(0.5, self.syncer.lease_ttl.total_seconds() / 3)
        while not self.done.wait(every):
            try:
                self.syncer._renew(self.link_ids)
            except SyncdError as exc:  # the database is away: the lease may lapse; syncing goes on
                log.warning("renewing leases failed: %s", exc)


def _event_id_of(action: rc.Action) -> str:
    """The event a failed calendar write was about (a new event has none: nothing to re-read)."""
    event_id = getattr(action, "event_id", None)
    if not isinstance(event_id, str):
        raise Bug(f"{type(action).__name__} failed with a precondition but names no event")
    return event_id


def _block(session: Session, block_id: str) -> BlockRow:
    row = session.get(BlockRow, block_id)
    assert row is not None
    return row


def _merge(first: LinkOutcome, second: LinkOutcome | None) -> LinkOutcome:
    if second is None:
        return first
    first.actions += second.actions
    first.conflicts += second.conflicts
    if not second.ok:
        first.ok, first.error = False, second.error
    return first


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
