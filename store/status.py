"""Users' status: the availability engine's state per user, and the log of every change.

The state row (`UserStatusRow`) holds a `StatusState` (`state_of` / `state_columns` are the
mapping) and the next instant at which it may change. A transition prepared ahead of its
instant is kept on the row as JSON (`staged`) until that instant. Bulk statements use Core
tables: the ORM's bulk path costs more than the SQL for thousands of users at one instant.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from store.models import BlockRow, StatusLogRow, UserRow, UserStatusRow
from syncd.core import availability as av

__all__ = [
    "LATER", "due", "insert_log", "insert_states", "live_periods_until", "lock", "log_of", "next_boundary", "rows_of",
    "stage_candidates", "state_columns", "state_from_json", "state_of", "state_to_json", "update_states",
    "users_with_state",
]

_STATUS = cast(Table, UserStatusRow.__table__)
_LOG = cast(Table, StatusLogRow.__table__)
_users, _blocks = UserRow.__table__.c, BlockRow.__table__.c
LATER = "\0later"  # the block id of a stand-in for blocks beyond the horizon: it covers no instant


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


# -- the mapping -----------------------------------------------------------------------------------


def state_of(row: Any) -> av.StatusState:
    return av.StatusState(
        auto=cast(av.Status, row.auto), auto_reason=cast(Any, row.auto_reason),
        effective=cast(av.Status, row.effective), reason=cast(Any, row.reason), since=row.since,
        evaluated_at=row.evaluated_at, block_id=row.block_id, manual=cast(Any, row.manual), manual_at=row.manual_at,
    )


def state_columns(state: av.StatusState) -> dict[str, Any]:
    return {"auto": state.auto, "auto_reason": state.auto_reason, "effective": state.effective,
            "reason": state.reason, "since": state.since, "evaluated_at": state.evaluated_at,
            "block_id": state.block_id, "manual": state.manual, "manual_at": state.manual_at}


def state_to_json(state: av.StatusState) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in state_columns(state).items()}


def state_from_json(data: dict[str, Any]) -> av.StatusState:
    manual_at = data["manual_at"]
    return av.StatusState(
        auto=data["auto"], auto_reason=data["auto_reason"], effective=data["effective"], reason=data["reason"],
        since=datetime.fromisoformat(data["since"]), evaluated_at=datetime.fromisoformat(data["evaluated_at"]),
        block_id=data["block_id"], manual=data["manual"],
        manual_at=None if manual_at is None else datetime.fromisoformat(manual_at),
    )


def change_to_json(change: av.StatusChange) -> dict[str, Any]:
    return {"status": change.status, "previous": change.previous, "reason": change.reason,
            "effective_at": change.effective_at.isoformat(), "block_id": change.block_id}


def log_entry(user_id: str, change: av.StatusChange, now: datetime) -> dict[str, Any]:
    return {"user_id": user_id, "status": change.status, "previous": change.previous, "reason": change.reason,
            "effective_at": change.effective_at, "block_id": change.block_id, "recorded_at": now}


def log_entry_from_json(user_id: str, entry: dict[str, Any], now: datetime) -> dict[str, Any]:
    return {**entry, "user_id": user_id, "effective_at": datetime.fromisoformat(entry["effective_at"]),
            "recorded_at": now}


# -- one user --------------------------------------------------------------------------------------


def lock(session: Session, user_id: str) -> UserStatusRow | None:
    """The user's state row, locked for this transaction."""
    return session.scalars(select(UserStatusRow).where(UserStatusRow.user_id == user_id).with_for_update()
                           ).one_or_none()


def get(session: Session, user_id: str) -> UserStatusRow | None:
    return session.get(UserStatusRow, user_id)


def create(session: Session, user_id: str) -> UserStatusRow:
    row = UserStatusRow(user_id=user_id)
    session.add(row)
    return row


def store(row: UserStatusRow, state: av.StatusState, next_boundary_at: datetime | None) -> None:
    for key, value in state_columns(state).items():
        setattr(row, key, value)
    row.next_boundary_at = next_boundary_at


def log_of(session: Session, user_id: str) -> list[StatusLogRow]:
    return list(session.scalars(select(StatusLogRow).where(StatusLogRow.user_id == user_id)
                                .order_by(StatusLogRow.effective_at, StatusLogRow.id)))


def insert_log(session: Session, entries: list[dict[str, Any]]) -> None:
    if entries:
        session.flush()  # the status rows first: the log refers to their users
        session.connection().execute(insert(_LOG), entries)


# -- many users ------------------------------------------------------------------------------------

_USERS_WITH_STATE = (
    select(_users.id, _users.timezone, _users.working_hours, _users.days_off, _users.effective_hours,
           _users.effective_hours_zone, _STATUS.c.auto, _STATUS.c.auto_reason,
           _STATUS.c.effective, _STATUS.c.reason, _STATUS.c.since, _STATUS.c.evaluated_at, _STATUS.c.block_id,
           _STATUS.c.manual, _STATUS.c.manual_at)
    .select_from(UserRow.__table__.outerjoin(_STATUS, _STATUS.c.user_id == _users.id))
    .where(_users.id.in_(bindparam("ids", expanding=True)))
)


def users_with_state(session: Session, user_ids: Sequence[str]) -> dict[str, Row[Any]]:
    """Users with their zone, hours and state (None columns for a user never evaluated)."""
    # On the session's connection: plain rows, without the ORM's statement handling (half the
    # cost of a status read). Pending changes are flushed first, as the session would.
    session.flush()
    rows: list[Row[Any]] = list(session.connection().execute(_USERS_WITH_STATE, {"ids": list(user_ids)}))
    return {r.id: r for r in rows}


def rows_of(session: Session, user_ids: Sequence[str]) -> dict[str, Row[Any]]:
    return {r.user_id: r for r in session.connection().execute(select(_STATUS).where(
        _STATUS.c.user_id.in_(list(user_ids))))}


def live_periods_until(session: Session, user_ids: Sequence[str], rows: Iterable[Row[Any]], horizon: datetime
                       ) -> tuple[dict[str, Row[Any]], dict[str, list[av.Period]]]:
    """The users, and the periods of their blocks that matter up to ``horizon``; for each user
    with blocks starting later, the first such start as a zero-length period (all that the
    next boundary needs of them)."""
    conn = session.connection()
    users = {u.id: u for u in conn.execute(select(UserRow.id, UserRow.email, UserRow.timezone, UserRow.working_hours,
                                                  UserRow.days_off, UserRow.effective_hours,
                                                  UserRow.effective_hours_zone).where(UserRow.id.in_(list(user_ids))))}
    # Blocks that ended before the last evaluation can change nothing from there on, and
    # those starting past the horizon nothing before it (the next boundary is capped there).
    evaluated = [r.evaluated_at for r in rows]
    blocks = select(BlockRow.user_id, BlockRow.id, BlockRow.start, BlockRow.end, BlockRow.title).where(
        BlockRow.user_id.in_(list(user_ids)), BlockRow.deleted_at.is_(None), BlockRow.start <= horizon)
    if evaluated and len(evaluated) == len(users):
        blocks = blocks.where(BlockRow.end > min(evaluated))
    periods: dict[str, list[av.Period]] = defaultdict(list)
    for user_id, block_id, start, end, title in conn.execute(blocks):
        periods[user_id].append(av.Period(block_id, start, end, title))
    later = select(BlockRow.user_id, func.min(BlockRow.start)).where(
        BlockRow.user_id.in_(list(user_ids)), BlockRow.deleted_at.is_(None), BlockRow.start > horizon
    ).group_by(BlockRow.user_id)
    for user_id, start in conn.execute(later):
        periods[user_id].append(av.Period(LATER, start, start, ""))
    return users, periods


def insert_states(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.connection().execute(insert(_STATUS), rows)


def update_states(session: Session, updates: list[dict[str, Any]]) -> None:
    """Bulk update; each dict has the user as ``b_user`` and the same keys."""
    if updates:
        session.connection().execute(update(_STATUS).where(_STATUS.c.user_id == bindparam("b_user"))
                                     .values({key: bindparam(key) for key in updates[0] if key != "b_user"}), updates)


def due(session: Session, now: datetime, limit: int) -> list[str]:
    """Users whose next boundary has come. On PostgreSQL replicas share the work: each takes
    users the others are not evaluating now, and the row lock makes a transition published
    once, not once per replica."""
    query = select(UserStatusRow.user_id).where(
        UserStatusRow.next_boundary_at.is_not(None), UserStatusRow.next_boundary_at <= now
    ).order_by(UserStatusRow.next_boundary_at).limit(limit)
    if _dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def stage_candidates(session: Session, now: datetime, until: datetime, limit: int) -> list[str]:
    """Users not yet staged whose next boundary falls in ``(now, until]``."""
    query = select(UserStatusRow.user_id).where(
        UserStatusRow.staged_for.is_(None), UserStatusRow.next_boundary_at > now,
        UserStatusRow.next_boundary_at <= until,
    ).order_by(UserStatusRow.next_boundary_at).limit(limit)
    if _dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(session.scalars(query))


def lock_all(session: Session, user_ids: Sequence[str]) -> None:
    """Lock these users' rows, in order (the sweep: two orders would deadlock)."""
    if _dialect(session) == "postgresql":
        list(session.scalars(select(UserStatusRow.user_id).where(UserStatusRow.user_id.in_(list(user_ids)))
                             .order_by(UserStatusRow.user_id).with_for_update()))


def next_boundary(session: Session) -> datetime | None:
    return session.scalar(select(func.min(UserStatusRow.next_boundary_at)))
