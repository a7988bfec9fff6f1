"""Teams' coverage bookkeeping: their minimums, what syncd announced of each team's coverage,
and which teams need another look."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session

from store.models import BlockRow, TeamCoverageRow, TeamMemberRow, TeamRow, UserStatusRow

__all__ = ["all_with_minimum", "available_per_team", "due", "lock", "mark_changed", "minimum", "save", "set_minimum",
           "teams_with_minimum_of"]


def minimum(session: Session, team_id: str) -> int:
    return session.scalar(select(TeamRow.min_available).where(TeamRow.id == team_id)) or 0


def set_minimum(session: Session, team_id: str, min_available: int) -> None:
    team = session.get(TeamRow, team_id)
    assert team is not None, "the team exists (put_team made it)"
    if team.min_available != min_available:
        team.min_available = min_available
        mark_changed(session, team_id)


def mark_changed(session: Session, team_id: str) -> None:
    """The team changed (members or minimum): its coverage is looked at again on the next check."""
    row = session.get(TeamCoverageRow, team_id)
    if row is not None:
        row.next_check_at = None
        row.evaluated_at = None


def teams_with_minimum_of(session: Session, user_id: str) -> list[tuple[str, int]]:
    """The teams of ``user_id`` that have a minimum, with it."""
    return [(r[0], int(r[1])) for r in session.execute(
        select(TeamRow.id, TeamRow.min_available).join(TeamMemberRow, TeamMemberRow.team_id == TeamRow.id)
        .where(TeamMemberRow.user_id == user_id, TeamRow.min_available > 0).order_by(TeamRow.id))]


def all_with_minimum(session: Session) -> list[str]:
    """Every team with a minimum, and every team with something announced (the sweep)."""
    return list(session.scalars(
        select(TeamRow.id).join(TeamCoverageRow, TeamCoverageRow.team_id == TeamRow.id, isouter=True)
        .where(or_(TeamRow.min_available > 0, TeamCoverageRow.below.is_not(None))).order_by(TeamRow.id)))


def due(session: Session, now: datetime, limit: int) -> list[str]:
    """Teams whose coverage must be looked at: with a minimum, and never evaluated, or due for
    their next check, or one of whose members' blocks changed since the last look. Teams whose
    minimum went back to 0 with events still staged are due too (those are withdrawn)."""
    # ">=": instants are whole seconds, and an edit in the second of the last look may have come after it.
    member_block_changed = exists().where(
        TeamMemberRow.team_id == TeamRow.id, BlockRow.user_id == TeamMemberRow.user_id,
        BlockRow.updated_at >= TeamCoverageRow.evaluated_at)
    query = (select(TeamRow.id).join(TeamCoverageRow, TeamCoverageRow.team_id == TeamRow.id, isouter=True)
             .where(or_(TeamRow.min_available > 0, TeamCoverageRow.below.is_not(None)),
                    or_(TeamCoverageRow.team_id.is_(None), TeamCoverageRow.evaluated_at.is_(None),
                        TeamCoverageRow.next_check_at <= now, member_block_changed))
             .order_by(TeamRow.id).limit(limit))
    return list(session.scalars(query))


def lock(session: Session, team_id: str) -> tuple[TeamCoverageRow, int] | None:
    """The team's coverage row (made on first use), locked for this transaction so that one
    replica at a time announces the team's coverage, and its minimum; None if the team is gone."""
    minimum_now = session.scalar(select(TeamRow.min_available).where(TeamRow.id == team_id).with_for_update())
    if minimum_now is None:
        return None
    row = session.get(TeamCoverageRow, team_id, with_for_update=True)
    if row is None:
        row = TeamCoverageRow(team_id=team_id, below=None, evaluated_at=None, next_check_at=None, staged=[])
        session.add(row)
        session.flush()
    return row, int(minimum_now)


def save(row: TeamCoverageRow, *, below: bool | None, evaluated_at: datetime, next_check_at: datetime | None,
         staged: Sequence[dict[str, Any]]) -> None:
    row.below = below
    row.evaluated_at = evaluated_at
    row.next_check_at = next_check_at
    row.staged = list(staged)


def available_per_team(session: Session) -> dict[str, int]:
    """Members whose status is available now, per team (teams with nobody available count 0)."""
    counts = {team_id: 0 for team_id in session.scalars(select(TeamRow.id))}
    for team_id, count in session.execute(
            select(TeamMemberRow.team_id, func.count())
            .join(UserStatusRow, UserStatusRow.user_id == TeamMemberRow.user_id)
            .where(UserStatusRow.effective == "available").group_by(TeamMemberRow.team_id)):
        counts[team_id] = int(count)
    return counts
