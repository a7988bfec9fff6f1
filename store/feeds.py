"""Teams' absence calendar feeds: each is found by its token's digest, never by the token."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import TeamFeedRow

__all__ = ["add", "by_digest", "drop", "of_team"]


def add(session: Session, team_id: str, token_digest: str, show_titles: bool, now: datetime) -> TeamFeedRow:
    row = TeamFeedRow(id=uuid.uuid4().hex, team_id=team_id, token_digest=token_digest, show_titles=show_titles,
                      created_at=now)
    session.add(row)
    session.flush()
    return row


def of_team(session: Session, team_id: str) -> list[TeamFeedRow]:
    return list(session.scalars(select(TeamFeedRow).where(TeamFeedRow.team_id == team_id)
                                .order_by(TeamFeedRow.created_at, TeamFeedRow.id)))


def by_digest(session: Session, token_digest: str) -> TeamFeedRow | None:
    return session.scalars(select(TeamFeedRow).where(TeamFeedRow.token_digest == token_digest)).first()


def drop(session: Session, team_id: str, feed_id: str) -> bool:
    row = session.get(TeamFeedRow, feed_id)
    if row is None or row.team_id != team_id:
        return False
    session.delete(row)
    session.flush()
    return True
