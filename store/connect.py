"""One-time links with which agents connect their calendars, and the consents under way."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from store.models import ConnectLinkRow

__all__ = ["add", "by_state", "get", "prune", "usable", "usable_for", "used"]


def add(session: Session, user_id: str, account: str, purpose: str, now: datetime,
        expires_at: datetime) -> ConnectLinkRow:
    row = ConnectLinkRow(user_id=user_id, account=account, purpose=purpose, created_at=now, expires_at=expires_at)
    session.add(row)
    session.flush()  # its id goes into the signed URL
    return row


def get(session: Session, link_id: int, *, lock: bool = False) -> ConnectLinkRow | None:
    return session.get(ConnectLinkRow, link_id, with_for_update=lock)


def by_state(session: Session, state_digest: str) -> ConnectLinkRow | None:
    """The link whose consent under way carries this OAuth state, locked (the state works once)."""
    return session.scalars(select(ConnectLinkRow).where(ConnectLinkRow.state_digest == state_digest)
                           .with_for_update()).first()


def usable(session: Session, user_id: str, account: str, now: datetime) -> ConnectLinkRow | None:
    """The unused link for this user and account that stays valid longest."""
    return session.scalars(select(ConnectLinkRow).where(
        ConnectLinkRow.user_id == user_id, ConnectLinkRow.account == account, ConnectLinkRow.used_at.is_(None),
        ConnectLinkRow.expires_at > now).order_by(ConnectLinkRow.expires_at.desc()).limit(1)).first()


def usable_for(session: Session, pairs: Iterable[tuple[str, str]],
               now: datetime) -> dict[tuple[str, str], ConnectLinkRow]:
    """`usable` for many (user id, account) pairs in one query."""
    wanted = list(set(pairs))
    if not wanted:
        return {}
    found: dict[tuple[str, str], ConnectLinkRow] = {}
    rows = session.scalars(select(ConnectLinkRow).where(
        tuple_(ConnectLinkRow.user_id, ConnectLinkRow.account).in_(wanted), ConnectLinkRow.used_at.is_(None),
        ConnectLinkRow.expires_at > now).order_by(ConnectLinkRow.expires_at))
    for row in rows:
        found[(row.user_id, row.account)] = row  # the last one stays valid longest
    return found


def used(session: Session, user_id: str, account: str, now: datetime) -> None:
    """The user connected this account: every link still open for it is spent."""
    session.execute(update(ConnectLinkRow).where(
        ConnectLinkRow.user_id == user_id, ConnectLinkRow.account == account, ConnectLinkRow.used_at.is_(None))
        .values(used_at=now, state_digest=None, browser_digest=None, flow=None, flow_started_at=None))


def prune(session: Session, before: datetime) -> int:
    """Forget links that expired (or were used) before ``before``."""
    result = session.execute(delete(ConnectLinkRow).where(
        (ConnectLinkRow.expires_at < before) | (ConnectLinkRow.used_at < before)))
    return int(getattr(result, "rowcount", 0) or 0)
