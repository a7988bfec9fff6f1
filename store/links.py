"""Calendar links as the sync engine keeps them: due times, leases, cursors, health.

A link is due when ``next_poll_at`` has come. Replicas share the links through leases: a
replica claims due links for ``lease_ttl`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
never take the same one), renews them while it works, and frees them when done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import CalendarLinkRow, PushChannelRow, UserRow

__all__ = [
    "LinkState", "all_links", "calendars_of", "claim_due", "dead_holders_free", "due_soon", "enabled_ids", "get",
    "holders", "lock_many", "overdue", "record_failure", "record_success", "release", "release_deletions", "renew",
    "save_many", "snapshot_rows", "users_of",
]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def get(session: Session, link_id: int) -> CalendarLinkRow | None:
    return session.get(CalendarLinkRow, link_id)


def all_links(session: Session) -> list[CalendarLinkRow]:
    return list(session.scalars(select(CalendarLinkRow).order_by(CalendarLinkRow.user_id, CalendarLinkRow.id)))


def enabled_ids(session: Session, user_ids: Sequence[str] | None = None) -> list[int]:
    """Enabled links that sync OOO, by user (all users when none given)."""
    query = select(CalendarLinkRow.id).where(CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True))
    if user_ids:
        query = query.where(CalendarLinkRow.user_id.in_(user_ids))
    return list(session.scalars(query.order_by(CalendarLinkRow.user_id, CalendarLinkRow.id)))


def calendars_of(session: Session, user_id: str, account: str) -> list[str]:
    """The user's enabled calendars on ``account``."""
    return list(session.scalars(select(CalendarLinkRow.calendar).where(
        CalendarLinkRow.user_id == user_id, CalendarLinkRow.account == account, CalendarLinkRow.enabled.is_(True))
        .order_by(CalendarLinkRow.calendar)))


def users_of(session: Session, link_ids: Sequence[int]) -> dict[int, str]:
    return {link: user for link, user in session.execute(
        select(CalendarLinkRow.id, CalendarLinkRow.user_id).where(CalendarLinkRow.id.in_(list(link_ids))))}


def release_deletions(session: Session, link_id: int, now: datetime) -> CalendarLinkRow | None:
    """The operator confirms held deletions: the next sync, due now, applies them."""
    row = session.get(CalendarLinkRow, link_id)
    if row is not None:
        row.release_deletions, row.next_poll_at = True, now
    return row


def overdue(session: Session, cutoff: datetime) -> list[CalendarLinkRow]:
    """Enabled links whose poll was due before ``cutoff``."""
    return list(session.scalars(select(CalendarLinkRow).where(
        CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True),
        CalendarLinkRow.next_poll_at.is_not(None), CalendarLinkRow.next_poll_at < cutoff)))


def due_soon(session: Session, account: str, user_ids: Any, now: datetime) -> None:
    """Poll these users' links of ``account`` now (new credentials arrived)."""
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.account == account,
                                                  CalendarLinkRow.user_id.in_(user_ids))
                    .values(next_poll_at=now))


# -- leases ----------------------------------------------------------------------------------------


def claim_due(session: Session, owner: str, process: str | None, now: datetime, ttl: timedelta,
              limit: int) -> list[int]:
    """Links whose poll is due and that nobody holds, leased to ``owner`` until ``now + ttl``."""
    free = CalendarLinkRow.lease_expires.is_(None) | (CalendarLinkRow.lease_expires <= now)
    query = (select(CalendarLinkRow).where(
        CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True),
        CalendarLinkRow.next_poll_at.is_not(None), CalendarLinkRow.next_poll_at <= now, free)
        .order_by(CalendarLinkRow.next_poll_at).limit(limit))
    if _dialect(session) == "postgresql":
        query = query.with_for_update(skip_locked=True)  # replicas claim at once, never the same link
    rows = list(session.scalars(query))
    for row in rows:
        row.lease_owner, row.lease_process, row.lease_expires = owner, process, now + ttl
    return [row.id for row in rows]


def _held(now: datetime) -> Any:
    return CalendarLinkRow.lease_expires.is_not(None) & (CalendarLinkRow.lease_expires > now)


def holders(session: Session, now: datetime) -> list[str]:
    """The process keys of everyone holding a lease now."""
    return list(session.scalars(select(CalendarLinkRow.lease_process).distinct().where(
        _held(now), CalendarLinkRow.lease_process.is_not(None))))


def dead_holders_free(session: Session, keys: Sequence[str], now: datetime) -> int:
    """End the leases held by these (dead) processes; how many links that frees."""
    freed = session.execute(update(CalendarLinkRow).where(_held(now), CalendarLinkRow.lease_process.in_(list(keys)))
                            .values(lease_expires=None))
    return int(getattr(freed, "rowcount", 0) or 0)


def renew(session: Session, link_ids: Sequence[int], owner: str, until: datetime) -> None:
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id.in_(list(link_ids)),
                                                  CalendarLinkRow.lease_owner == owner,
                                                  CalendarLinkRow.lease_expires.is_not(None))
                    .values(lease_expires=until))


def release(session: Session, link_ids: Sequence[int], now: datetime) -> None:
    """Claimed but not synced (the daemon is stopping): free, and due again at once."""
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id.in_(list(link_ids)))
                    .values(next_poll_at=now, lease_expires=None))


# -- what a sync reads and records -----------------------------------------------------------------


def snapshot_rows(session: Session, link_ids: Sequence[int], now: datetime
                  ) -> list[tuple[CalendarLinkRow, UserRow, bool]]:
    """Each link with its user, and whether a live push channel reports its changes."""
    ids = list(link_ids)
    pushed = set(session.scalars(select(PushChannelRow.link_id).where(PushChannelRow.link_id.in_(ids),
                                                                     PushChannelRow.expires_at > now)))
    rows = session.execute(select(CalendarLinkRow, UserRow).join(UserRow, UserRow.id == CalendarLinkRow.user_id)
                           .where(CalendarLinkRow.id.in_(ids)))
    return [(link, user, link.id in pushed) for link, user in rows]


@dataclass(frozen=True, slots=True)
class LinkState:
    """What one sync of a link leaves behind."""

    now: datetime
    next_poll: Callable[[datetime | None], datetime]  # from the due time as it stands now (a push may have set it)


def record_success(session: Session, link_id: int, state: LinkState, *, cursor: str | None,
                   held: int = 0, held_message: str | None = None) -> tuple[str, int] | None:
    """A successful sync: the new cursor, unless deletions are held (then the cursor stays, so
    the deletions are replayed once released). Returns the link's (state, held deletions) as
    they were, or None if the link is gone."""
    row = session.get(CalendarLinkRow, link_id)
    if row is None:
        return None
    before = (row.state, row.held_deletions)
    row.last_sync_at = row.last_success_at = state.now
    row.failures, row.last_error = 0, None
    row.next_poll_at = state.next_poll(row.next_poll_at)
    row.lease_expires = None
    if held:
        row.state, row.held_deletions, row.last_error = "held", held, held_message
        return before
    row.state, row.held_deletions, row.release_deletions = "ok", 0, False
    row.cursor = cursor
    return before


def record_failure(session: Session, link_id: int, now: datetime, state: str, message: str,
                   next_poll: datetime) -> str | None:
    """A failed sync. Returns the link's state as it was, or None if the link is gone."""
    row = session.get(CalendarLinkRow, link_id)
    if row is None:
        return None
    before = row.state
    row.state, row.last_error, row.last_sync_at = state, message, now
    row.failures += 1
    row.next_poll_at = next_poll
    row.lease_expires = None
    return before


def lock_many(session: Session, link_ids: Sequence[int]) -> dict[int, CalendarLinkRow]:
    """The links, locked on PostgreSQL: a notification arriving now must not be overwritten."""
    query = select(CalendarLinkRow).where(CalendarLinkRow.id.in_(list(link_ids)))
    if _dialect(session) == "postgresql":
        query = query.with_for_update()
    return {row.id: row for row in session.scalars(query)}


def save_many(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk update by primary key (``id`` in each dict): many uneventful polls in one statement."""
    session.expunge_all()
    session.execute(update(CalendarLinkRow), rows)
