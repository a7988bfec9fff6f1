"""The I/O side of availability: load a user's state, advance it, record and enqueue changes.

Everything here runs inside the caller's transaction, so a status change and its outbox
entries are committed together with the edit that caused them (DESIGN.md §1.4).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, cast

from sqlalchemy import select
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

    def _store(self, row: UserStatusRow, state: av.StatusState, periods: Sequence[av.Period],
               policy: av.StatusPolicy) -> None:
        row.auto, row.auto_reason = state.auto, state.auto_reason
        row.effective, row.reason = state.effective, state.reason
        row.since, row.evaluated_at = state.since, state.evaluated_at
        row.block_id, row.manual, row.manual_at = state.block_id, state.manual, state.manual_at
        row.next_boundary_at = av.next_boundary(periods, policy, state.evaluated_at)

    def _publish(self, session: Session, user: UserRow, change: av.StatusChange, now: datetime) -> None:
        session.add(StatusLogRow(
            user_id=user.id, status=change.status, previous=change.previous, reason=change.reason,
            effective_at=change.effective_at, block_id=change.block_id, recorded_at=now,
        ))
        block = session.get(BlockRow, change.block_id) if change.block_id else None
        event_id = uuid.uuid4().hex
        payload = {
            "id": event_id,
            "type": "status.changed",
            "user": {"id": user.id, "email": user.email},
            "status": change.status,
            "previous": change.previous,
            "reason": change.reason,
            "effective_at": format_utc(change.effective_at),
            "block": None if block is None else {
                "id": block.id, "start": format_utc(block.start), "end": format_utc(block.end), "title": block.title,
            },
        }
        outbox = OutboxRow(event_id=event_id, user_id=user.id, payload=payload, created_at=now)
        session.add(outbox)
        session.flush()
        for sink in self.sinks:
            session.add(DeliveryRow(outbox_seq=outbox.seq, sink=sink, user_id=user.id, state="pending",
                                    attempts=0, next_attempt_at=now, created_at=now))
