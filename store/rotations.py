"""Rotations: their members (users or whole teams), each member's seat, and assignments."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, case, func, insert, select
from sqlalchemy.orm import Session

from store.models import AssignmentRow, RotationMemberRow, RotationRow, RotationSeatRow, TeamMemberRow

__all__ = [
    "add_assignment", "add_direct", "add_seat", "assignment_by_key", "create", "direct_members", "drop_direct",
    "effective_users", "get", "handed", "ids", "seat", "seats", "stats", "window_times", "with_team",
]


_ASSIGNMENTS = cast(Table, AssignmentRow.__table__)


def create(session: Session, name: str, policy: str, now: datetime) -> RotationRow:
    row = RotationRow(id=uuid.uuid4().hex, name=name, policy=policy, counts_since=now, created_at=now)
    session.add(row)
    session.flush()
    return row


def get(session: Session, rotation_id: str, *, lock: bool = False) -> RotationRow | None:
    """The rotation; ``lock`` holds it for this transaction (assignments are serialised per rotation)."""
    query = select(RotationRow).where(RotationRow.id == rotation_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def ids(session: Session) -> list[str]:
    return list(session.scalars(select(RotationRow.id).order_by(RotationRow.created_at, RotationRow.id)))


def with_team(session: Session, team_id: str) -> list[RotationRow]:
    return list(session.scalars(select(RotationRow).join(
        RotationMemberRow, RotationMemberRow.rotation_id == RotationRow.id).where(
        RotationMemberRow.team_id == team_id)))


# -- members and seats -----------------------------------------------------------------------------


def direct_members(session: Session, rotation_id: str) -> list[RotationMemberRow]:
    return list(session.scalars(select(RotationMemberRow).where(RotationMemberRow.rotation_id == rotation_id)))


def add_direct(session: Session, rotation_id: str, *, user_id: str | None = None, team_id: str | None = None) -> bool:
    """Add a member (a user or a team); False if it was one already."""
    exists = session.scalar(select(RotationMemberRow.id).where(
        RotationMemberRow.rotation_id == rotation_id,
        RotationMemberRow.user_id == user_id if user_id is not None else RotationMemberRow.team_id == team_id))
    if exists is not None:
        return False
    session.add(RotationMemberRow(rotation_id=rotation_id, user_id=user_id, team_id=team_id))
    session.flush()
    return True


def drop_direct(session: Session, rotation_id: str, user_id: str) -> bool:
    direct = session.scalars(select(RotationMemberRow).where(
        RotationMemberRow.rotation_id == rotation_id, RotationMemberRow.user_id == user_id)).first()
    if direct is None:
        return False
    session.delete(direct)
    session.flush()
    return True


def effective_users(session: Session, rotation_id: str) -> set[str]:
    """Direct members plus the current members of member teams."""
    direct = session.scalars(select(RotationMemberRow.user_id).where(
        RotationMemberRow.rotation_id == rotation_id, RotationMemberRow.user_id.is_not(None)))
    via_teams = session.scalars(select(TeamMemberRow.user_id).join(
        RotationMemberRow, RotationMemberRow.team_id == TeamMemberRow.team_id).where(
        RotationMemberRow.rotation_id == rotation_id))
    return {u for u in direct if u} | set(via_teams)


def seats(session: Session, rotation_id: str) -> dict[str, RotationSeatRow]:
    return {s.user_id: s for s in session.scalars(select(RotationSeatRow).where(
        RotationSeatRow.rotation_id == rotation_id).order_by(RotationSeatRow.user_id))}


def seat(session: Session, rotation_id: str, user_id: str) -> RotationSeatRow | None:
    return session.get(RotationSeatRow, (rotation_id, user_id))


def add_seat(session: Session, rotation_id: str, user_id: str, baseline: float, now: datetime) -> None:
    session.add(RotationSeatRow(rotation_id=rotation_id, user_id=user_id, available=True, baseline=baseline,
                                credit=0.0, joined_at=now))


def drop_seat(session: Session, row: RotationSeatRow) -> None:
    session.delete(row)


# -- assignments -----------------------------------------------------------------------------------


def handed(session: Session, rotation: RotationRow) -> dict[str, int]:
    """Assignments per user since the rotation's counts were last reset."""
    return {user: int(n) for user, n in session.execute(select(AssignmentRow.user_id, func.count()).where(
        AssignmentRow.rotation_id == rotation.id, AssignmentRow.created_at >= rotation.counts_since)
        .group_by(AssignmentRow.user_id)).all()}


def stats(session: Session, rotation: RotationRow,
          recent_from: datetime) -> dict[str, tuple[int, int, datetime | None]]:
    """Per user: (assignments since the counts were reset, assignments since ``recent_from``, the last one)."""
    created = AssignmentRow.created_at
    return {r.user_id: (int(r.handed or 0), int(r.recent or 0), _aware(r.last)) for r in session.execute(
        select(AssignmentRow.user_id,
               func.sum(case((created >= rotation.counts_since, 1), else_=0)).label("handed"),
               func.sum(case((created >= recent_from, 1), else_=0)).label("recent"),
               func.max(created).label("last"))
        .where(AssignmentRow.rotation_id == rotation.id).group_by(AssignmentRow.user_id))}


def assignment_by_key(session: Session, rotation_id: str, key: str) -> AssignmentRow | None:
    return session.scalars(select(AssignmentRow).where(AssignmentRow.rotation_id == rotation_id,
                                                       AssignmentRow.idempotency_key == key)).first()


def add_assignment(session: Session, rotation_id: str, user_id: str, key: str, start: datetime | None,
                   end: datetime | None, now: datetime, credits: Iterable[tuple[str, float]] = ()) -> AssignmentRow:
    """Record an assignment, and the shares credited to members who were away (``calibrate``).
    The row returned is not in the session: one Core INSERT costs a third of the ORM's flush,
    inside the rotation's lock (bench.api's profile)."""
    values = {"id": uuid.uuid4().hex, "rotation_id": rotation_id, "user_id": user_id, "idempotency_key": key,
              "start": start, "end": end, "created_at": now}
    session.execute(insert(_ASSIGNMENTS), values)
    for member, share in credits:
        row = session.get(RotationSeatRow, (rotation_id, member))
        if row is not None:
            row.credit += share
    session.flush()
    return AssignmentRow(**values)


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    when: datetime = value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when  # aggregates bypass the column type


def window_times(session: Session, rotation_id: str, user_ids: Iterable[str],
                 since: datetime) -> dict[str, tuple[datetime, ...]]:
    """Per user: when their assignments after ``since`` were made (what their cap counts)."""
    wanted = list(user_ids)
    if not wanted:
        return {}
    found: dict[str, list[datetime]] = {}
    for user_id, created in session.execute(select(AssignmentRow.user_id, AssignmentRow.created_at).where(
            AssignmentRow.rotation_id == rotation_id, AssignmentRow.user_id.in_(wanted),
            AssignmentRow.created_at > since).order_by(AssignmentRow.created_at)):
        found.setdefault(user_id, []).append(created)
    return {user_id: tuple(times) for user_id, times in found.items()}
