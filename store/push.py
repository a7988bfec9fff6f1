"""Push channels: a provider's promise to tell us when a linked calendar changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from store.models import CalendarLinkRow, PushChannelRow, UserRow

__all__ = ["ChannelState", "OpenChannel", "WantedChannel", "add", "expire", "forget", "get", "get_many",
           "mark_notified", "open_channels", "resync", "wanted"]


@dataclass(frozen=True, slots=True)
class WantedChannel:
    """A link that should have a channel."""

    link_id: int
    account: str
    calendar: str
    email: str


@dataclass(frozen=True, slots=True)
class OpenChannel:
    channel_id: str
    link_id: int
    account: str
    calendar: str
    email: str
    resource_id: str
    expires_at: datetime
    enabled: bool  # its link is still enabled


def wanted(session: Session, accounts: list[str]) -> list[WantedChannel]:
    links = session.execute(
        select(CalendarLinkRow.id, CalendarLinkRow.account, CalendarLinkRow.calendar, UserRow.email)
        .join(UserRow, UserRow.id == CalendarLinkRow.user_id)
        .where(CalendarLinkRow.enabled.is_(True), CalendarLinkRow.sync_ooo.is_(True),
               CalendarLinkRow.account.in_(accounts), CalendarLinkRow.state != "reauth_required")
        .order_by(CalendarLinkRow.id))
    return [WantedChannel(i, a, c, e.lower()) for i, a, c, e in links]


def open_channels(session: Session) -> list[OpenChannel]:
    channels = session.execute(
        select(PushChannelRow, CalendarLinkRow.account, CalendarLinkRow.calendar, CalendarLinkRow.enabled,
               UserRow.email)
        .join(CalendarLinkRow, CalendarLinkRow.id == PushChannelRow.link_id)
        .join(UserRow, UserRow.id == CalendarLinkRow.user_id))
    return [OpenChannel(row.id, row.link_id, account, calendar, email.lower(), row.resource_id, row.expires_at,
                        enabled) for row, account, calendar, enabled, email in channels]


def add(session: Session, channel_id: str, link_id: int, token_digest: str, resource_id: str, expires_at: datetime,
        now: datetime) -> None:
    session.add(PushChannelRow(id=channel_id, link_id=link_id, token_digest=token_digest, resource_id=resource_id,
                               expires_at=expires_at, created_at=now))


@dataclass(frozen=True, slots=True)
class ChannelState:
    """What a notification is checked against."""

    id: str
    link_id: int
    token_digest: str
    resource_id: str
    notified_at: datetime | None


def get_many(session: Session, channel_ids: set[str]) -> dict[str, ChannelState]:
    if not channel_ids:
        return {}
    rows = session.execute(select(PushChannelRow.id, PushChannelRow.link_id, PushChannelRow.token_digest,
                                  PushChannelRow.resource_id, PushChannelRow.notified_at)
                           .where(PushChannelRow.id.in_(sorted(channel_ids)[:1000])))
    return {r.id: ChannelState(r.id, r.link_id, r.token_digest, r.resource_id, r.notified_at) for r in rows}


def get(session: Session, channel_id: str) -> PushChannelRow | None:
    return session.get(PushChannelRow, channel_id)


def expire(session: Session, channel_id: str, now: datetime) -> None:
    session.execute(update(PushChannelRow).where(PushChannelRow.id == channel_id).values(expires_at=now))


def forget(session: Session, channel_id: str) -> None:
    session.execute(delete(PushChannelRow).where(PushChannelRow.id == channel_id))


def mark_notified(session: Session, channel_id: str, at: datetime) -> None:
    """A notification arrived: the channel's link is due at ``at`` (now, or the end of the
    debounce window), or earlier if it already was. While the link is being synced (leased),
    it is due at ``at`` even if it was due earlier: that sync may have listed the calendar
    before this change, and it keeps a due time set after it began (`schedule.next_poll`),
    not one from before."""
    row = session.get(PushChannelRow, channel_id)
    if row is None:
        return
    row.notified_at = at
    due = CalendarLinkRow.next_poll_at
    leased = CalendarLinkRow.lease_expires.is_not(None) & (CalendarLinkRow.lease_expires > at)
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id == row.link_id, CalendarLinkRow.enabled.is_(True))
                    .values(next_poll_at=case((or_(due.is_(None), due > at, leased), at), else_=due)))


def resync(session: Session, link_id: int, now: datetime) -> None:
    """Notifications were lost: list the calendar from scratch, now, rather than trust the cursor."""
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id == link_id).values(cursor=None, next_poll_at=now))
