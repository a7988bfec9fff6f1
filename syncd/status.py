"""The I/O side of availability: load a user's state, advance it, record and enqueue changes.

Everything here runs inside the caller's transaction, so a status change and its outbox
entries are committed together with the edit that caused them (DESIGN.md §1.4).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from store.models import BlockRow, DeliveryRow, OutboxRow, StatusLogRow, UserRow, UserStatusRow
from syncd.core import availability as av
from syncd.core.events import status_event
from syncd.core.hours import hours_from_json

__all__ = ["HORIZON", "LOOKAHEAD", "SETTLE", "StatusRecorder", "policy_of",
           "state_of"]

# Core tables for the bulk statements (the ORM's bulk path costs more than the SQL).
_STATUS = cast(Table, UserStatusRow.__table__)
_LOG = cast(Table, StatusLogRow.__table__)
_OUTBOX = cast(Table, OutboxRow.__table__)
_DELIVERIES = cast(Table, DeliveryRow.__table__)

# Blocks starting later than this are read only for their first start (the next boundary).
HORIZON = timedelta(days=1)
_LATER = "\0later"  # the block id of that stand-in: covers no instant, so it never sets a status
# Transitions this close are staged: their events queued, to be sent at their instant.
LOOKAHEAD = timedelta(seconds=60)
# ... and their state written this long after it, out of the way of the sending.
SETTLE = timedelta(seconds=10)

def policy_of(user: UserRow | Row[Any], away_outside_working_hours: bool) -> av.StatusPolicy:
    return av.StatusPolicy(user.timezone, hours_from_json(user.working_hours), away_outside_working_hours)


def state_of(row: UserStatusRow | Row[Any]) -> av.StatusState:
    return av.StatusState(
        auto=cast(av.Status, row.auto),
        auto_reason=cast(Any, row.auto_reason),
        effective=cast(av.Status, row.effective),
        reason=cast(Any, row.reason),
        since=row.since,
        evaluated_at=row.evaluated_at,
        block_id=row.block_id,
        manual=cast(Any, row.manual),
        manual_at=row.manual_at,
    )


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _state_to_json(state: av.StatusState) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in _columns(state).items()}


def _state_from_json(data: dict[str, Any]) -> av.StatusState:
    return av.StatusState(
        auto=data["auto"], auto_reason=data["auto_reason"], effective=data["effective"], reason=data["reason"],
        since=datetime.fromisoformat(data["since"]), evaluated_at=datetime.fromisoformat(data["evaluated_at"]),
        block_id=data["block_id"], manual=data["manual"], manual_at=_instant(data["manual_at"]),
    )


def _log_to_json(change: av.StatusChange) -> dict[str, Any]:
    return {"status": change.status, "previous": change.previous, "reason": change.reason,
            "effective_at": change.effective_at.isoformat(), "block_id": change.block_id}


def _log_from_json(user_id: str, entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**entry, "user_id": user_id, "effective_at": datetime.fromisoformat(entry["effective_at"]),
            "recorded_at": now}


def _columns(state: av.StatusState) -> dict[str, Any]:
    return {"auto": state.auto, "auto_reason": state.auto_reason, "effective": state.effective,
            "reason": state.reason, "since": state.since, "evaluated_at": state.evaluated_at,
            "block_id": state.block_id, "manual": state.manual, "manual_at": state.manual_at}


@dataclass
class StatusRecorder:
    """Advances users' status inside a session and writes log + outbox + deliveries."""

    sinks: Sequence[str]
    away_outside_working_hours: bool = False

    def live_blocks(self, session: Session, user_id: str) -> list[BlockRow]:
        return list(session.scalars(
            select(BlockRow).where(BlockRow.user_id == user_id, BlockRow.deleted_at.is_(None))
        ))

    def live_periods(self, session: Session, user_id: str) -> list[av.Period]:
        """The periods of the user's live blocks: four columns, not ORM objects (a user with a
        long import has thousands, and every edit evaluates them)."""
        rows = session.execute(select(BlockRow.id, BlockRow.start, BlockRow.end, BlockRow.title)
                               .where(BlockRow.user_id == user_id, BlockRow.deleted_at.is_(None)))
        return [av.Period(block_id, start, end, title) for block_id, start, end, title in rows]

    def load(self, session: Session, user: UserRow, now: datetime, *,
             keep_staged: bool = False) -> tuple[UserStatusRow, av.StatusState]:
        """The user's status row, locked for this transaction (created on first use). A staged
        transition whose instant has come becomes the state; one still ahead is undone (the
        caller is about to change something), unless ``keep_staged``."""
        row = session.scalars(
            select(UserStatusRow).where(UserStatusRow.user_id == user.id).with_for_update()
        ).one_or_none()
        if row is not None and row.staged_for is not None and not (keep_staged and row.staged_for > now):
            self._settle_staged(session, row, now)
        if row is None:
            periods = self.live_periods(session, user.id)
            state = av.initial_state(periods, self.policy(user), now)
            row = UserStatusRow(user_id=user.id)
            self._store(row, state, periods, self.policy(user))
            session.add(row)
            if state.effective == av.AWAY:  # the helpdesk assumes available until told otherwise
                self._publish(session, user, av.StatusChange(av.AWAY, av.AVAILABLE, state.reason, now,
                                                             state.block_id), now)
            session.flush()
        return row, state_of(row)

    def _settle_staged(self, session: Session, row: UserStatusRow, now: datetime) -> None:
        staged, at = row.staged or {}, row.staged_for
        conn = session.connection()
        if at is not None and at <= now:
            for key, value in _columns(_state_from_json(staged["state"])).items():
                setattr(row, key, value)
            row.next_boundary_at = _instant(staged.get("next_boundary_at"))
            if staged.get("logs"):
                conn.execute(insert(_LOG), [_log_from_json(row.user_id, entry, now) for entry in staged["logs"]])
        elif staged.get("outbox"):  # not happened yet, and now it may not: its events must not go out
            conn.execute(delete(_DELIVERIES).where(_DELIVERIES.c.outbox_seq.in_(staged["outbox"])))
            conn.execute(delete(_OUTBOX).where(_OUTBOX.c.seq.in_(staged["outbox"])))
        row.staged_for, row.staged = None, None

    def peek(self, session: Session, user: UserRow, now: datetime) -> av.StatusState:
        """The user's state for reading: no lock, nothing written."""
        row = session.get(UserStatusRow, user.id)
        if row is not None:
            return state_of(row)
        return av.initial_state(self.live_periods(session, user.id), self.policy(user), now)

    def policy(self, user: UserRow) -> av.StatusPolicy:
        return policy_of(user, self.away_outside_working_hours)

    def advance_due(self, session: Session, user: UserRow, now: datetime) -> list[av.StatusChange]:
        """`advance`, but only if a boundary has come since the last evaluation (before an
        edit: nothing else can have changed the status, and the blocks need not be read)."""
        row, _state = self.load(session, user, now)
        if row.next_boundary_at is None or row.next_boundary_at > now:
            return []
        return self.advance(session, user, now)

    def advance(self, session: Session, user: UserRow, now: datetime, *, ended_early: bool = False,
                manual: av.Status | None = None, by: str | None = None) -> list[av.StatusChange]:
        """Bring the user's status up to ``now`` (after an edit, a boundary, or a restart)."""
        row, state = self.load(session, user, now)
        periods = self.live_periods(session, user.id)
        policy = self.policy(user)
        evaluation = av.advance(state, periods, policy, max(now, state.evaluated_at), ended_early=ended_early)
        changes = list(evaluation.changes)
        state = evaluation.state
        if manual is not None:
            manual_eval = av.set_manual(state, manual, now)
            changes.extend(manual_eval.changes)
            state = manual_eval.state
            row.manual_by = by
        self._store(row, state, periods, policy)
        for change in changes:
            self._publish(session, user, change, now)
        return changes

    def advance_many(self, session: Session, user_ids: Collection[str], now: datetime) -> int:
        """`advance` for many users at once, in a handful of statements rather than several per
        user: the boundary timer when thousands of blocks end in the same minute, and the sweep.
        The callers hold the status rows locked (or are the only writer, on SQLite). Returns
        the number of changes published."""
        if not user_ids:
            return 0
        ids = list(user_ids)
        conn = session.connection()
        rows = {r.user_id: r for r in conn.execute(select(_STATUS).where(_STATUS.c.user_id.in_(ids)))}
        users, periods = self._load_many(conn, ids, rows.values(), now + HORIZON)
        published: list[tuple[str, str, av.StatusChange]] = []
        logs: list[dict[str, Any]] = []  # of staged transitions, whose events are queued already
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for user_id in ids:
            user = users.get(user_id)
            if user is None:
                continue
            policy = policy_of(user, self.away_outside_working_hours)
            user_periods = periods.get(user_id, [])
            row = rows.get(user_id)
            if row is None:
                state = av.initial_state(user_periods, policy, now)
                if state.effective == av.AWAY:  # the helpdesk assumes available until told otherwise
                    published.append((user.id, user.email, av.StatusChange(av.AWAY, av.AVAILABLE, state.reason,
                                                                            now, state.block_id)))
            else:
                if row.staged_for is not None and row.staged_for > now:
                    continue  # prepared for an instant still ahead; an edit would have undone it
                if row.staged_for is not None:
                    state = _state_from_json(row.staged["state"])
                    logs += [_log_from_json(user_id, entry, now) for entry in row.staged.get("logs", ())]
                else:
                    state = state_of(row)
                evaluation = av.advance(state, user_periods, policy, max(now, state.evaluated_at))
                state = evaluation.state
                published.extend((user.id, user.email, change) for change in evaluation.changes)
            values = {**_columns(state), "staged_for": None, "staged": None,
                      "next_boundary_at": av.next_boundary(user_periods, policy, state.evaluated_at)}
            if row is None:
                inserts.append({"user_id": user_id, **values})
            else:
                updates.append({"b_user": user_id, **values})
        if inserts:
            conn.execute(insert(_STATUS), inserts)
        self._update_many(conn, updates)
        if logs:
            conn.execute(insert(_LOG), logs)
        self._publish_many(session, published, now,
                           {p.block_id: p for user_periods in periods.values() for p in user_periods})
        return len(published)

    def stage_many(self, session: Session, user_ids: Collection[str], now: datetime) -> set[datetime]:
        """Prepare the transitions of users whose next boundary is near: their events are queued
        now, to be sent at the boundary's instant, so that thousands of blocks ending in the
        same minute are announced at once rather than evaluated then. The state changes at the
        instant (`load` and `advance_many` apply it); any edit before then undoes it. The callers
        hold the rows locked. Returns the instants at which staged events fall due."""
        if not user_ids:
            return set()
        ids = list(user_ids)
        conn = session.connection()
        rows = [r for r in conn.execute(select(_STATUS).where(_STATUS.c.user_id.in_(ids)))
                if r.staged_for is None and r.next_boundary_at is not None and r.next_boundary_at > now]
        users, periods = self._load_many(conn, [r.user_id for r in rows], rows, now + HORIZON)
        staged: list[tuple[str, datetime, av.StatusState, datetime | None, list[av.StatusChange]]] = []
        for row in rows:
            user = users.get(row.user_id)
            if user is None:
                continue
            policy = policy_of(user, self.away_outside_working_hours)
            user_periods = periods.get(row.user_id, [])
            at = row.next_boundary_at
            evaluation = av.advance(state_of(row), user_periods, policy, at)
            # Staged even without a change: the user is then not evaluated again until the instant.
            after = av.next_boundary(user_periods, policy, at)
            staged.append((row.user_id, at, evaluation.state, after, list(evaluation.changes)))
        published = [(user_id, users[user_id].email, change) for user_id, _at, _s, _n, changes in staged
                     for change in changes]
        seqs = iter(self._queue(session, published, now, {p.block_id: p for ps in periods.values() for p in ps},
                                staged=True))
        # The timer writes the staged state SETTLE after the instant, out of the way of the
        # sending, or at the user's following boundary if that comes sooner.
        updates = [{"b_user": user_id, "staged_for": at,
                    "next_boundary_at": at + SETTLE if after is None else min(at + SETTLE, after), "staged": {
            "state": _state_to_json(state),
            "next_boundary_at": None if after is None else after.isoformat(),
            "logs": [_log_to_json(change) for change in changes],
            "outbox": [next(seqs) for _change in changes],
        }} for user_id, at, state, after, changes in staged]
        self._update_many(conn, updates)
        return {at for _u, at, _s, _n, changes in staged if changes}

    @staticmethod
    def _load_many(conn: Connection, ids: Sequence[str], rows: Iterable[Row[Any]],
                   horizon: datetime) -> tuple[dict[str, Row[Any]], dict[str, list[av.Period]]]:
        """The users, and the periods of their blocks that matter up to ``horizon``; for each user
        with blocks starting later, the first such start as a zero-length period (all that
        the next boundary needs of them)."""
        users = {u.id: u for u in conn.execute(select(UserRow.id, UserRow.email, UserRow.timezone,
                                                      UserRow.working_hours).where(UserRow.id.in_(ids)))}
        # Blocks that ended before the last evaluation can change nothing from there on, and
        # those starting past the horizon nothing before it (the next boundary is capped there).
        evaluated = [r.evaluated_at for r in rows]
        blocks = select(BlockRow.user_id, BlockRow.id, BlockRow.start, BlockRow.end, BlockRow.title).where(
            BlockRow.user_id.in_(ids), BlockRow.deleted_at.is_(None), BlockRow.start <= horizon)
        if evaluated and len(evaluated) == len(users):
            blocks = blocks.where(BlockRow.end > min(evaluated))
        periods: dict[str, list[av.Period]] = defaultdict(list)
        for user_id, block_id, start, end, title in conn.execute(blocks):
            periods[user_id].append(av.Period(block_id, start, end, title))
        later = select(BlockRow.user_id, func.min(BlockRow.start)).where(
            BlockRow.user_id.in_(ids), BlockRow.deleted_at.is_(None), BlockRow.start > horizon
        ).group_by(BlockRow.user_id)
        for user_id, start in conn.execute(later):
            periods[user_id].append(av.Period(_LATER, start, start, ""))
        return users, periods

    @staticmethod
    def _update_many(conn: Connection, updates: list[dict[str, Any]]) -> None:
        if updates:
            conn.execute(update(_STATUS).where(_STATUS.c.user_id == bindparam("b_user"))
                         .values({key: bindparam(key) for key in updates[0] if key != "b_user"}), updates)

    def _store(self, row: UserStatusRow, state: av.StatusState, periods: Sequence[av.Period],
               policy: av.StatusPolicy) -> None:
        for key, value in _columns(state).items():
            setattr(row, key, value)
        row.next_boundary_at = av.next_boundary(periods, policy, state.evaluated_at)

    def _publish(self, session: Session, user: UserRow, change: av.StatusChange, now: datetime) -> None:
        self._publish_many(session, [(user.id, user.email, change)], now, {})

    def _publish_many(self, session: Session, published: Sequence[tuple[str, str, av.StatusChange]],
                      now: datetime, known: dict[str, av.Period]) -> None:
        """Log the changes and queue one delivery per change and sink, in bulk statements."""
        if not published:
            return
        session.flush()  # the status rows first: the log and outbox refer to their users
        session.connection().execute(insert(_LOG), [
            {"user_id": user_id, "status": change.status, "previous": change.previous, "reason": change.reason,
             "effective_at": change.effective_at, "block_id": change.block_id, "recorded_at": now}
            for user_id, _email, change in published])
        self._queue(session, published, now, known)

    def _queue(self, session: Session, published: Sequence[tuple[str, str, av.StatusChange]], now: datetime,
               known: dict[str, av.Period], *, staged: bool = False) -> list[int]:
        """Outbox entries and their deliveries; staged ones are due at their change's instant.
        Returns the entries' sequence numbers, in order."""
        if not published:
            return []
        outbox: list[dict[str, Any]] = []
        for user_id, email, change in published:
            block = self._block_of(session, change.block_id, known)
            event_id = uuid.uuid4().hex
            outbox.append({"event_id": event_id, "user_id": user_id, "created_at": now,
                           "payload": status_event(event_id, user_id, email, change, block)})
        conn = session.connection()
        # Outbox order is delivery order per user: the sequence numbers must follow the list.
        seqs = list(conn.execute(insert(_OUTBOX).returning(_OUTBOX.c.seq, sort_by_parameter_order=True),
                                 outbox).scalars())
        deliveries = [{"outbox_seq": seq, "sink": sink, "user_id": entry["user_id"], "state": "pending",
                       "attempts": 0, "next_attempt_at": change.effective_at if staged else now, "created_at": now}
                      for seq, entry, (_u, _e, change) in zip(seqs, outbox, published, strict=True)
                      for sink in self.sinks]
        if deliveries:
            conn.execute(insert(_DELIVERIES), deliveries)
        return seqs

    @staticmethod
    def _block_of(session: Session, block_id: str | None, known: dict[str, av.Period]) -> av.Period | None:
        if block_id is None:
            return None
        if block_id in known:
            return known[block_id]
        row = session.get(BlockRow, block_id)
        return None if row is None else av.Period(row.id, row.start, row.end, row.title)
