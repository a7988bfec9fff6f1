"""The service: the operations the CLI, the API and the daemon share.

Each public method is one transaction. Decisions are delegated to the pure modules
(`availability`, `reconcile`); this module loads, calls, and stores.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from store.db import Database
from store.models import (
    BlockRow,
    CalendarLinkRow,
    DeliveryRow,
    EventLinkRow,
    StatusLogRow,
    UserRow,
    UserStatusRow,
)
from syncd.config import Config, UserConfig
from syncd.core import availability as av
from syncd.core.errors import ConfirmationRequired, NotFoundInStore, StaleRevision, UserInputError
from syncd.core.hours import hours_from_json, hours_to_json
from syncd.core.ooo import OooContent
from syncd.core.time import ensure_aware, format_utc
from syncd.status import LOOKAHEAD, StatusRecorder, state_of

__all__ = ["BlockInfo", "StatusInfo", "Syncd", "block_content", "set_content", "utc_now"]

log = logging.getLogger("syncd.service")


def utc_now() -> datetime:
    # Whole seconds: every instant syncd records or publishes reads cleanly, and the
    # status timer (twice a second) still meets "within one second of the instant".
    return datetime.now(UTC).replace(microsecond=0)


def block_content(row: BlockRow) -> OooContent:
    return OooContent(start=row.start, end=row.end, all_day=row.all_day, start_date=row.start_date,
                      end_date=row.end_date, timezone=row.timezone, title=row.title)


@dataclass(frozen=True)
class BlockInfo:
    id: str
    user: str
    start: datetime
    end: datetime
    all_day: bool
    title: str
    source: str
    revision: int
    content: OooContent

    @classmethod
    def of(cls, row: BlockRow) -> BlockInfo:
        return cls(row.id, row.user_id, row.start, row.end, row.all_day, row.title, row.source, row.revision,
                   block_content(row))

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "start": format_utc(self.start), "end": format_utc(self.end),
                "all_day": self.all_day, "title": self.title, "source": self.source, "revision": self.revision}


@dataclass(frozen=True)
class StatusInfo:
    user: str
    status: av.Status
    reason: str
    since: datetime | None
    until: datetime | None
    blocks: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "status": self.status, "reason": self.reason, "since": format_utc(self.since),
                "until": format_utc(self.until), "blocks": self.blocks}


class Syncd:
    def __init__(self, config: Config, db: Database, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.recorder = StatusRecorder(
            sinks=[s.name for s in config.sinks],
            away_outside_working_hours=config.daemon.away_outside_working_hours,
        )
        # Called after each committed batch of status changes while more are waiting: the
        # daemon starts delivering the first batch while it evaluates the next.
        self.on_published: Callable[[int], None] = lambda _changes: None

    # -- start-up ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrate the schema and make the users and links of the config file current."""
        self.db.migrate()
        self.db.run(self._apply_config, what="applying the config")

    def _apply_config(self, session: Session) -> None:
        self.db.startup_lock(session)  # replicas starting together: one after the other
        now = self.clock()
        for user in self.config.users:
            self.upsert_user(session, user, now)
        configured = {(u.id, c.account, c.calendar) for u in self.config.users for c in u.calendars}
        for link in session.scalars(select(CalendarLinkRow)):
            owner = session.get(UserRow, link.user_id)
            if owner is not None and owner.origin == "config" and (link.user_id, link.account, link.calendar) \
                    not in configured:
                link.enabled = False  # kept, with its event links, in case it comes back

    def upsert_user(self, session: Session, user: UserConfig, now: datetime, origin: str = "config") -> UserRow:
        """Create or update a user and their calendar links (from the config file or the API)."""
        row = session.get(UserRow, user.id)
        hours = hours_to_json(user.working_hours)
        # A staged transition stays unless what decides the status changed (zone, hours).
        same_rules = row is not None and row.timezone == user.timezone and row.working_hours == hours
        if row is None:
            row = UserRow(id=user.id, created_at=now, origin=origin)
            session.add(row)
        row.email, row.timezone = user.email, user.timezone
        row.working_hours = hours
        session.flush()
        for cal in user.calendars:
            link = session.scalars(select(CalendarLinkRow).where(
                CalendarLinkRow.user_id == user.id, CalendarLinkRow.account == cal.account,
                CalendarLinkRow.calendar == cal.calendar)).one_or_none()
            if link is None:
                link = CalendarLinkRow(user_id=user.id, account=cal.account, calendar=cal.calendar,
                                       next_poll_at=now, state="ok", failures=0, held_deletions=0,
                                       release_deletions=False)
                session.add(link)
            if not link.enabled:
                link.next_poll_at = now
            link.sync_ooo, link.direction, link.enabled = cal.sync_ooo, cal.direction, True
        if origin != "config":  # the API sends the whole list: links left out are switched off
            wanted = {(c.account, c.calendar) for c in user.calendars}
            for link in session.scalars(select(CalendarLinkRow).where(CalendarLinkRow.user_id == user.id)):
                if (link.account, link.calendar) not in wanted:
                    link.enabled = False
        self.recorder.load(session, row, now, keep_staged=same_rules)
        return row

    # -- lookups ----------------------------------------------------------------------------
    def _user(self, session: Session, user_id: str) -> UserRow:
        user = session.get(UserRow, user_id)
        if user is None:
            raise NotFoundInStore(f"no user {user_id!r}; `syncd status` lists the known users")
        return user

    def _block(self, session: Session, block_id: str) -> BlockRow:
        block = session.get(BlockRow, block_id)
        if block is None or block.deleted_at is not None:
            raise NotFoundInStore(f"no OOO block {block_id!r}; `syncd ooo list USER` shows a user's blocks")
        return block

    def user_timezone(self, user_id: str) -> str:
        return self.db.run(lambda s: self._user(s, user_id).timezone)

    def links(self) -> list[dict[str, Any]]:
        """Every calendar link with its sync state, for `syncd links` and the API."""
        def work(session: Session) -> list[dict[str, Any]]:
            rows = session.scalars(select(CalendarLinkRow).order_by(CalendarLinkRow.user_id, CalendarLinkRow.id))
            now = self.clock()
            return [{"id": r.id, "user": r.user_id, "account": r.account, "calendar": r.calendar,
                     "direction": r.direction, "enabled": r.enabled, "sync_ooo": r.sync_ooo, "state": r.state,
                     "last_sync": format_utc(r.last_sync_at), "last_success": format_utc(r.last_success_at),
                     "last_error": r.last_error, "failures": r.failures, "held_deletions": r.held_deletions,
                     "next_poll": format_utc(r.next_poll_at),
                     # the replica syncing it now (or that synced it last), and how stale its data is
                     "owner": r.lease_owner,
                     "syncing": r.lease_expires is not None and r.lease_expires > now,
                     "lag_s": None if r.last_success_at is None
                     else round((now - r.last_success_at).total_seconds(), 1)}
                    for r in rows]
        return self.db.run(work)

    def release_deletions(self, link_id: int) -> str:
        """The operator confirms that held deletions are real: the next sync applies them."""
        def work(session: Session) -> str:
            row = session.get(CalendarLinkRow, link_id)
            if row is None:
                raise NotFoundInStore(f"no calendar link {link_id}; `syncd links` lists them")
            row.release_deletions, row.next_poll_at = True, self.clock()
            return f"{row.user_id}/{row.account}/{row.calendar}"
        return self.db.run(work)

    def stuck_links(self, overdue: timedelta = timedelta(minutes=15)) -> list[str]:
        """Enabled links whose poll is long overdue: the scheduler is not keeping up or is stuck."""
        def work(session: Session) -> list[str]:
            cutoff = self.clock() - overdue
            rows = session.scalars(select(CalendarLinkRow).where(
                CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True),
                CalendarLinkRow.next_poll_at.is_not(None), CalendarLinkRow.next_poll_at < cutoff))
            return [f"{r.user_id}/{r.account}/{r.calendar}" for r in rows]
        return self.db.read(work)

    def user_ids(self) -> list[str]:
        return self.db.read(lambda s: list(s.scalars(select(UserRow.id).order_by(UserRow.id))))

    def _touch_links(self, session: Session, user_id: str, now: datetime) -> None:
        """Ask the daemon to push this user's block changes to their calendars right away."""
        session.execute(update(CalendarLinkRow).where(
            CalendarLinkRow.user_id == user_id, CalendarLinkRow.enabled.is_(True),
            CalendarLinkRow.state != "reauth_required").values(next_poll_at=now))

    # -- OOO blocks -------------------------------------------------------------------------
    def list_blocks(self, user_id: str) -> list[BlockInfo]:
        def work(session: Session) -> list[BlockInfo]:
            self._user(session, user_id)
            rows = session.scalars(select(BlockRow).where(BlockRow.user_id == user_id, BlockRow.deleted_at.is_(None))
                                   .order_by(BlockRow.start, BlockRow.id))
            return [BlockInfo.of(r) for r in rows]
        return self.db.run(work)

    def get_block(self, block_id: str) -> BlockInfo:
        return self.db.read(lambda s: BlockInfo.of(self._block(s, block_id)))

    def add_block(self, user_id: str, content: OooContent, *, source: str = "helpdesk") -> BlockInfo:
        def work(session: Session) -> BlockInfo:
            now = self.clock()
            user = self._user(session, user_id)
            self.recorder.advance(session, user, now)  # transitions before the edit keep their own time
            row = BlockRow(id=uuid.uuid4().hex, user_id=user.id, source=source, revision=1, created_at=now,
                           updated_at=now)
            set_content(row, content.in_zone(user.timezone))
            session.add(row)
            session.flush()
            self.recorder.advance(session, user, now)
            self._touch_links(session, user.id, now)
            return BlockInfo.of(row)
        return self.db.run(work)

    def _change_block(self, block_id: str, expected_revision: int | None,
                      change: Callable[[BlockRow, UserRow, datetime], None], *, ended_early: bool = False) -> BlockInfo:
        """One edit of an existing block, with the status before and after it, in one transaction."""
        def work(session: Session) -> BlockInfo:
            now = self.clock()
            row = self._block(session, block_id)
            _check_revision(row, expected_revision)
            user = self._user(session, row.user_id)
            self.recorder.advance(session, user, now)  # transitions before the edit keep their own time
            change(row, user, now)
            self.recorder.advance(session, user, now, ended_early=ended_early)
            self._touch_links(session, user.id, now)
            return BlockInfo.of(row)
        return self.db.run(work)

    def edit_block(self, block_id: str, content: OooContent, *, expected_revision: int | None = None) -> BlockInfo:
        def edit(row: BlockRow, user: UserRow, now: datetime) -> None:
            set_content(row, content.in_zone(user.timezone))
            row.revision += 1
            row.updated_at = now
        return self._change_block(block_id, expected_revision, edit)

    def delete_block(self, block_id: str, *, expected_revision: int | None = None) -> BlockInfo:
        def delete(row: BlockRow, _user: UserRow, now: datetime) -> None:
            row.deleted_at, row.updated_at, row.revision = now, now, row.revision + 1
        return self._change_block(block_id, expected_revision, delete)

    def end_block_early(self, block_id: str) -> BlockInfo:
        def end(row: BlockRow, _user: UserRow, now: datetime) -> None:
            if row.start > now:
                raise UserInputError(f"OOO block {block_id} starts at {format_utc(row.start)} and has not begun; "
                                     f"delete it instead (`syncd ooo delete {block_id}`)")
            if row.end <= now:
                raise UserInputError(f"OOO block {block_id} already ended at {format_utc(row.end)}")
            self._end_now([row], now)
        return self._change_block(block_id, None, end, ended_early=True)

    @staticmethod
    def _end_now(rows: Sequence[BlockRow], now: datetime) -> None:
        for row in rows:
            if row.start >= now:  # began this very instant: nothing is left of it
                row.deleted_at = now
            else:
                set_content(row, block_content(row).with_end(now))
            row.revision += 1
            row.updated_at = now

    # -- status -----------------------------------------------------------------------------
    def set_status(self, user_id: str, status: av.Status, *, end_ooo_early: bool = False,
                   by: str | None = None) -> StatusInfo:
        """A manual change. `available` while OOO needs ``end_ooo_early`` (DESIGN.md §1.2 rule 4)."""
        if status not in (av.AVAILABLE, av.AWAY):
            raise UserInputError(f"status must be 'available' or 'away', not {status!r}")

        def work(session: Session) -> None:
            now = self.clock()
            user = self._user(session, user_id)
            self.recorder.advance(session, user, now)
            covering = [b for b in self.recorder.live_blocks(session, user.id) if b.start <= now < b.end]
            if status == av.AVAILABLE and covering:
                if not end_ooo_early:
                    raise ConfirmationRequired(_confirmation_text(user.id, covering), [b.id for b in covering],
                                               max(b.end for b in covering))
                self._end_now(covering, now)
                self.recorder.advance(session, user, now, ended_early=True)
                self._touch_links(session, user.id, now)
            else:
                self.recorder.advance(session, user, now, manual=status, by=by)
        self.db.run(work)
        return self.status(user_id)

    def status(self, user_id: str, at: datetime | None = None) -> StatusInfo:
        """Status now or at ``at``: past instants come from the log, future ones from the rules."""
        if at is not None:
            at = ensure_aware(at, "at")

        return self.db.read(lambda session: self.status_in(session, user_id, at))

    def status_in(self, session: Session, user_id: str, at: datetime | None = None) -> StatusInfo:
        """`status` inside the caller's transaction."""
        return self.statuses_in(session, [user_id], at)[user_id]

    def statuses_in(self, session: Session, user_ids: Sequence[str], at: datetime | None = None
                    ) -> dict[str, StatusInfo]:
        """Status of many users in two queries (a hot path: the helpdesk polls it, and the
        rotation engine asks for whole rotations), on plain rows rather than ORM objects."""
        now = self.clock()
        wanted = list(dict.fromkeys(user_ids))
        found = {r.id: r for r in session.execute(_USERS_WITH_STATE, {"ids": wanted})}
        for user_id in wanted:
            if user_id not in found:
                raise NotFoundInStore(f"no user {user_id!r}; `syncd status` lists the known users")
        periods: dict[str, list[av.Period]] = {u: [] for u in wanted}
        for b in session.execute(_LIVE_PERIODS, {"ids": wanted}):
            periods[b.user_id].append(av.Period(b.id, b.start, b.end, b.title))
        out = {}
        when = now if at is None else at
        for user_id in wanted:
            row, user_periods = found[user_id], periods[user_id]
            policy = av.StatusPolicy(row.timezone, hours_from_json(row.working_hours),
                                     self.recorder.away_outside_working_hours)
            if row.effective is None:
                state = av.initial_state(user_periods, policy, now)
            else:
                state = av.StatusState(row.auto, row.auto_reason, row.effective, row.reason, row.since,
                                       row.evaluated_at, row.block_id, row.manual, row.manual_at)
            if when < state.evaluated_at:
                upcoming = av.next_change(state, user_periods, policy)  # for a past status still in force
                out[user_id] = self._past_status(session, user_id, when, user_periods,
                                                 upcoming.effective_at if upcoming else None, state)
                continue
            state = av.advance(state, user_periods, policy, when).state
            upcoming = av.next_change(state, user_periods, policy)
            out[user_id] = StatusInfo(user_id, state.effective, state.reason, state.since,
                                      upcoming.effective_at if upcoming else None,
                                      [p.block_id for p in av.covering(user_periods, when)])
        return out

    def _past_status(self, session: Session, user_id: str, when: datetime, periods: list[av.Period],
                     still_until: datetime | None, current: av.StatusState) -> StatusInfo:
        log_rows = list(session.scalars(select(StatusLogRow).where(StatusLogRow.user_id == user_id)
                                        .order_by(StatusLogRow.effective_at, StatusLogRow.id)))
        before = [r for r in log_rows if r.effective_at <= when]
        after = [r for r in log_rows if r.effective_at > when]
        if before:
            last = before[-1]
            status, reason, since = last.status, last.reason, last.effective_at
        elif after:
            status, reason, since = (after[0].previous or av.AVAILABLE), "initial", None
        else:  # nothing logged yet: the status has not changed since syncd first saw the user
            status, reason, since = current.effective, current.reason, None
        return StatusInfo(user_id, status if status == av.AWAY else av.AVAILABLE, reason, since,
                          after[0].effective_at if after else still_until,
                          [p.block_id for p in av.covering(periods, when)])

    def advance_due(self, *, limit: int = 2000) -> int:
        """Publish automatic transitions whose instant has come (the boundary timer). Evaluates
        at most ``limit`` users in one transaction; the timer calls again while it is busy."""
        def work(session: Session) -> tuple[int, int]:
            now = self.clock()
            query = select(UserStatusRow.user_id).where(
                UserStatusRow.next_boundary_at.is_not(None), UserStatusRow.next_boundary_at <= now
            ).order_by(UserStatusRow.next_boundary_at).limit(limit)
            if self.db.dialect == "postgresql":
                # Replicas share the work: each takes users the others are not evaluating now. The
                # row lock also makes a transition published once, not once per replica.
                query = query.with_for_update(skip_locked=True)
            due = list(session.scalars(query))
            return len(due), self.recorder.advance_many(session, due, now)
        total = 0
        while True:
            evaluated, changes = self.db.run(work, what="status timer")
            total += changes
            if evaluated < limit:
                return total
            self.on_published(changes)

    def stage_ahead(self, *, limit: int = 2000) -> set[datetime]:
        """Stage the transitions of the next `LOOKAHEAD` (see `StatusRecorder.stage_many`);
        returns the instants at which their events fall due."""
        def work(session: Session) -> tuple[int, set[datetime]]:
            now = self.clock()
            query = select(UserStatusRow.user_id).where(
                UserStatusRow.staged_for.is_(None), UserStatusRow.next_boundary_at > now,
                UserStatusRow.next_boundary_at <= now + LOOKAHEAD,
            ).order_by(UserStatusRow.next_boundary_at).limit(limit)
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True)
            due = list(session.scalars(query))
            return len(due), self.recorder.stage_many(session, due, now)
        instants: set[datetime] = set()
        while True:
            staged, due = self.db.run(work, what="status timer")
            instants |= due
            if staged < limit:
                return instants

    def advance_all(self, *, chunk: int = 1000) -> int:
        """Bring every user up to now: on start-up (transitions while down) and in the sweep.
        One replica at a time: two would only lock each other's rows."""
        with self.db.claim("status sweep") as ours:
            return self._advance_all(chunk) if ours else 0

    def _advance_all(self, chunk: int) -> int:
        total = 0
        user_ids = self.user_ids()
        for start in range(0, len(user_ids), chunk):
            part = user_ids[start:start + chunk]

            def work(session: Session, part: list[str] = part) -> int:
                # Not while another replica starting up writes the config's users: the two
                # would lock the same rows in different orders.
                self.db.startup_lock(session)
                locked = (select(UserStatusRow.user_id).where(UserStatusRow.user_id.in_(part))
                          .order_by(UserStatusRow.user_id))
                if self.db.dialect == "postgresql":
                    list(session.scalars(locked.with_for_update()))
                return self.recorder.advance_many(session, part, self.clock())
            total += self.db.run(work, what="status sweep")
        return total

    def next_boundary(self) -> datetime | None:
        return self.db.run(lambda s: s.scalar(select(func.min(UserStatusRow.next_boundary_at))))

    def dead_letters(self) -> int:
        return self.db.run(lambda s: s.scalar(select(func.count()).select_from(DeliveryRow)
                                               .where(DeliveryRow.state == "dead")) or 0)

    def user_state(self, user_id: str) -> av.StatusState:
        def work(session: Session) -> av.StatusState:
            row = session.get(UserStatusRow, user_id)
            if row is None:
                raise NotFoundInStore(f"no user {user_id!r}")
            return state_of(row)
        return self.db.run(work)

    def purge_tombstones(self, older_than: timedelta = timedelta(days=30)) -> int:
        """Drop deleted blocks whose deletion has reached every calendar."""
        def work(session: Session) -> int:
            cutoff = self.clock() - older_than
            linked = select(EventLinkRow.block_id)
            rows = list(session.scalars(select(BlockRow).where(BlockRow.deleted_at.is_not(None),
                                                               BlockRow.deleted_at < cutoff,
                                                               BlockRow.id.not_in(linked))))
            for row in rows:
                session.delete(row)
            return len(rows)
        return self.db.run(work)


_users, _state, _blocks = UserRow.__table__.c, UserStatusRow.__table__.c, BlockRow.__table__.c
_USERS_WITH_STATE = (
    select(_users.id, _users.timezone, _users.working_hours, _state.auto, _state.auto_reason, _state.effective,
           _state.reason, _state.since, _state.evaluated_at, _state.block_id, _state.manual, _state.manual_at)
    .select_from(UserRow.__table__.outerjoin(UserStatusRow.__table__, _state.user_id == _users.id))
    .where(_users.id.in_(bindparam("ids", expanding=True)))
)
_LIVE_PERIODS = select(_blocks.id, _blocks.user_id, _blocks.start, _blocks.end, _blocks.title).where(
    _blocks.user_id.in_(bindparam("ids", expanding=True)), _blocks.deleted_at.is_(None))


def set_content(row: BlockRow, content: OooContent) -> None:
    for column, value in content_columns(content).items():
        setattr(row, column, value)


def content_columns(content: OooContent) -> dict[str, Any]:
    """A block's columns that hold its content."""
    return {"start": content.start, "end": content.end, "all_day": content.all_day,
            "start_date": content.start_date, "end_date": content.end_date, "timezone": content.timezone,
            "title": content.title}


def _check_revision(row: BlockRow, expected: int | None) -> None:
    if expected is not None and expected != row.revision:
        raise StaleRevision(f"OOO block {row.id} is at revision {row.revision}, not {expected}; "
                            "re-read it and apply your change again", row.revision)


def _confirmation_text(user_id: str, covering: Sequence[BlockRow]) -> str:
    names = ", ".join(f"{b.id} ({b.title!r}, {format_utc(b.start)} to {format_utc(b.end)})" for b in covering)
    return (f"{user_id} is out of office now: {names}. Setting available ends "
            f"{'that block' if len(covering) == 1 else 'those blocks'} early; confirm with --end-ooo-early "
            "(API: \"end_ooo_early\": true), or keep the status away")
