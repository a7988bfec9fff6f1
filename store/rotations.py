"""Rotations: their members (users or whole teams), each member's seat, and assignments."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models import AssignmentRow, RotationMemberRow, RotationRow, RotationSeatRow, TeamMemberRow

__all__ = [
    "add_assignment", "add_direct", "add_seat", "assignment_by_key", "create", "direct_members", "drop_direct",
    "counts", "effective_users", "get", "handed", "ids", "revision", "seat", "seats", "times_since", "with_team",
]


_ASSIGNMENTS = cast(Table, AssignmentRow.__table__)
# An assignment's statements, built once: building them per call cost as much as running
# them, inside the rotation's lock (bench.api's profile).
_ROTATION = select(RotationRow).where(RotationRow.id == bindparam("id"))
_ROTATION_LOCKED = _ROTATION.with_for_update()
_REVISION = select(RotationRow.revision).where(RotationRow.id == bindparam("id"))
_BY_KEY = select(AssignmentRow).where(AssignmentRow.rotation_id == bindparam("rotation"),
                                      AssignmentRow.idempotency_key == bindparam("key"))
_ADD = {dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(_ASSIGNMENTS)
        .on_conflict_do_nothing(index_elements=["rotation_id", "idempotency_key"]).returning(_ASSIGNMENTS.c.id)
        for dialect in (postgresql, sqlite)}


def create(session: Session, name: str, policy: str, now: datetime) -> RotationRow:
    row = RotationRow(id=uuid.uuid4().hex, name=name, policy=policy, counts_since=now, created_at=now)
    session.add(row)
    session.flush()
    return row


def get(session: Session, rotation_id: str, *, lock: bool = False) -> RotationRow | None:
    """The rotation; ``lock`` holds it for this transaction (assignments are serialised per rotation)."""
    query = _ROTATION_LOCKED if lock and session.get_bind().dialect.name == "postgresql" else _ROTATION
    return session.scalars(query, {"id": rotation_id}).one_or_none()


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


def counts(session: Session, rotation: RotationRow) -> dict[str, tuple[int, datetime | None]]:
    """Per user: (assignments since the counts were reset, the last assignment ever)."""
    created = AssignmentRow.created_at
    return {r.user_id: (int(r.handed or 0), _aware(r.last)) for r in session.execute(
        select(AssignmentRow.user_id, func.sum(case((created >= rotation.counts_since, 1), else_=0)).label("handed"),
               func.max(created).label("last"))
        .where(AssignmentRow.rotation_id == rotation.id).group_by(AssignmentRow.user_id))}


def times_since(session: Session, rotation_id: str, since: datetime) -> dict[str, list[datetime]]:
    """Per user: when their assignments from ``since`` on were made, in order."""
    found: dict[str, list[datetime]] = {}
    for user_id, created in session.execute(select(AssignmentRow.user_id, AssignmentRow.created_at).where(
            AssignmentRow.rotation_id == rotation_id, AssignmentRow.created_at >= since)
            .order_by(AssignmentRow.created_at)):
        found.setdefault(user_id, []).append(created)
    return found


def revision(session: Session, rotation_id: str) -> int:
    """The rotation's revision as this transaction's own writes left it (the triggers move it)."""
    return int(session.execute(_REVISION, {"id": rotation_id}).scalar_one())


def assignment_by_key(session: Session, rotation_id: str, key: str) -> AssignmentRow | None:
    return session.scalars(_BY_KEY, {"rotation": rotation_id, "key": key}).first()


def add_assignment(session: Session, rotation_id: str, user_id: str, key: str, start: datetime | None,
                   end: datetime | None, now: datetime, credits: Iterable[tuple[str, float]] = ()
                   ) -> AssignmentRow | None:
    """Record an assignment, and the shares credited to members who were away (``calibrate``);
    None, writing nothing, if the rotation has one under ``key`` already. The row returned is
    not in the session: one Core INSERT costs a third of the ORM's flush, inside the
    rotation's lock (bench.api's profile)."""
    values = {"id": uuid.uuid4().hex, "rotation_id": rotation_id, "user_id": user_id, "idempotency_key": key,
              "start": start, "end": end, "created_at": now}
    if session.execute(_ADD[session.get_bind().dialect.name], values).first() is None:
        return None
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
