"""The I/O side of availability: load a user's state, advance it, record and enqueue changes.

Everything here runs inside the caller's transaction, so a status change and its outbox
entries are committed together with the edit that caused them (DESIGN.md §1.4).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from store.models import BlockRow, DeliveryRow, OutboxRow, StatusLogRow, UserRow, UserStatusRow
from syncd import availability as av
from syncd.ooo import format_utc

__all__ = ["StatusRecorder", "hours_from_json", "hours_to_json", "policy_of", "state_of"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def hours_to_json(hours: av.WorkingHours | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for weekday, ranges in (hours or {}).items():
        out[DAYS[weekday]] = [
            f"{s.strftime('%H:%M')}-{'24:00' if e == time.max else e.strftime('%H:%M')}" for s, e in ranges
        ]
    return out


def hours_from_json(data: dict[str, Any] | None) -> dict[int, tuple[tuple[time, time], ...]]:
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for day, ranges in (data or {}).items():
        parsed = []
        for text in ranges:
            start, end = text.split("-")
            parsed.append((time.fromisoformat(start), time.max if end == "24:00" else time.fromisoformat(end)))
        hours[DAYS.index(day)] = tuple(parsed)
    return hours


def policy_of(user: UserRow, away_outside_working_hours: bool) -> av.StatusPolicy:
    return av.StatusPolicy(user.timezone, hours_from_json(user.working_hours), away_outside_working_hours)


def state_of(row: UserStatusRow) -> av.StatusState:
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

    def load(self, session: Session, user: UserRow, now: datetime) -> tuple[UserStatusRow, av.StatusState]:
        """The user's status row, locked for this transaction (created on first use)."""
        row = session.scalars(
            select(UserStatusRow).where(UserStatusRow.user_id == user.id).with_for_update()
        ).one_or_none()
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
        """`advance` for many users at once, with a handful of statements instead of several
        per user: the boundary timer when thousands of blocks end in the same minute, and the
        sweep. The callers hold the status rows locked (or are the only writer, on SQLite).
        Returns the number of changes published."""
        if not user_ids:
            return 0
        ids = list(user_ids)
        users = {u.id: u for u in session.scalars(select(UserRow).where(UserRow.id.in_(ids)))}
        rows = {r.user_id: r for r in session.scalars(select(UserStatusRow).where(UserStatusRow.user_id.in_(ids)))}
        # A block that ended before the last evaluation can change nothing from there on.
        cutoff = min((r.evaluated_at for r in rows.values()), default=None)
        if len(rows) < len(users):
            cutoff = None  # a user seen for the first time is judged on all their blocks
        blocks = select(BlockRow.user_id, BlockRow.id, BlockRow.start, BlockRow.end, BlockRow.title).where(
            BlockRow.user_id.in_(ids), BlockRow.deleted_at.is_(None))
        if cutoff is not None:
            blocks = blocks.where(BlockRow.end > cutoff)
        periods: dict[str, list[av.Period]] = defaultdict(list)
        for user_id, block_id, start, end, title in session.execute(blocks):
            periods[user_id].append(av.Period(block_id, start, end, title))
        published: list[tuple[UserRow, av.StatusChange]] = []
        for user_id in ids:
            user = users.get(user_id)
            if user is None:
                continue
            policy = self.policy(user)
            user_periods = periods.get(user_id, [])
            row = rows.get(user_id)
            if row is None:
                state = av.initial_state(user_periods, policy, now)
                row = UserStatusRow(user_id=user_id)
                session.add(row)
                if state.effective == av.AWAY:
                    published.append((user, av.StatusChange(av.AWAY, av.AVAILABLE, state.reason, now,
                                                            state.block_id)))
            else:
                evaluation = av.advance(state_of(row), user_periods, policy, max(now, row.evaluated_at))
                state = evaluation.state
                published.extend((user, change) for change in evaluation.changes)
            self._store(row, state, user_periods, policy)
        self._publish_many(session, published, now,
                           {p.block_id: p for user_periods in periods.values() for p in user_periods})
        return len(published)

    def _store(self, row: UserStatusRow, state: av.StatusState, periods: Sequence[av.Period],
               policy: av.StatusPolicy) -> None:
        row.auto, row.auto_reason = state.auto, state.auto_reason
        row.effective, row.reason = state.effective, state.reason
        row.since, row.evaluated_at = state.since, state.evaluated_at
        row.block_id, row.manual, row.manual_at = state.block_id, state.manual, state.manual_at
        row.next_boundary_at = av.next_boundary(periods, policy, state.evaluated_at)

    def _publish(self, session: Session, user: UserRow, change: av.StatusChange, now: datetime) -> None:
        self._publish_many(session, [(user, change)], now, {})

    def _publish_many(self, session: Session, published: Sequence[tuple[UserRow, av.StatusChange]],
                      now: datetime, known: dict[str, av.Period]) -> None:
        """Log the changes and queue one delivery per change and sink, in bulk statements."""
        if not published:
            return
        session.flush()  # the status rows first: the log and outbox refer to their users
        logs: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        for user, change in published:
            logs.append({"user_id": user.id, "status": change.status, "previous": change.previous,
                         "reason": change.reason, "effective_at": change.effective_at,
                         "block_id": change.block_id, "recorded_at": now})
            block = self._block_of(session, change.block_id, known)
            event_id = uuid.uuid4().hex
            outbox.append({"event_id": event_id, "user_id": user.id, "created_at": now, "payload": {
                "id": event_id,
                "type": "status.changed",
                "user": {"id": user.id, "email": user.email},
                "status": change.status,
                "previous": change.previous,
                "reason": change.reason,
                "effective_at": format_utc(change.effective_at),
                "block": None if block is None else {
                    "id": block.block_id, "start": format_utc(block.start), "end": format_utc(block.end),
                    "title": block.title,
                },
            }})
        session.execute(insert(StatusLogRow), logs)
        # Outbox order is delivery order per user: the sequence numbers must follow the list.
        seqs = list(session.scalars(insert(OutboxRow).returning(OutboxRow.seq, sort_by_parameter_order=True),
                                    outbox))
        deliveries = [{"outbox_seq": seq, "sink": sink, "user_id": entry["user_id"], "state": "pending",
                       "attempts": 0, "next_attempt_at": now, "created_at": now}
                      for seq, entry in zip(seqs, outbox, strict=True) for sink in self.sinks]
        if deliveries:
            session.execute(insert(DeliveryRow), deliveries)

    @staticmethod
    def _block_of(session: Session, block_id: str | None, known: dict[str, av.Period]) -> av.Period | None:
        if block_id is None:
            return None
        if block_id in known:
            return known[block_id]
        row = session.get(BlockRow, block_id)
        return None if row is None else av.Period(row.id, row.start, row.end, row.title)
