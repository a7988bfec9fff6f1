"""Counts an operator graphs (outbox depth and age, users per status, links per state, live
replicas, open push channels, members available per team), read when metrics are scraped, so
they are right on every replica without bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.coverage import available_per_team
from store.models import CalendarLinkRow, DeliveryRow, PushChannelRow, ReplicaRow, UserStatusRow
from store.replicas import db_now

__all__ = ["Gauges", "read"]


@dataclass(frozen=True, slots=True)
class Gauges:
    undelivered: list[tuple[str, str, int]]  # (sink, state, count) of deliveries not delivered
    oldest_pending: datetime | None
    users: dict[str, int]  # effective status -> users
    links: dict[str, int]  # state -> enabled links
    replicas: int = 0  # daemons whose heartbeat is recent (see `store.replicas.heartbeat`)
    push_channels: int = 0  # push channels open (not expired)
    teams: dict[str, int] = field(default_factory=dict)  # team -> members available now


def read(session: Session, *, now: datetime, alive_for: timedelta) -> Gauges:
    """``now`` is this process's clock; a replica counts as live when its heartbeat is at most
    ``alive_for`` old, judged on PostgreSQL by the database's clock, as the replicas judge each other."""
    undelivered = [(r[0], r[1], int(r[2])) for r in session.execute(
        select(DeliveryRow.sink, DeliveryRow.state, func.count()).where(DeliveryRow.state != "delivered")
        .group_by(DeliveryRow.sink, DeliveryRow.state))]
    oldest = session.scalar(select(func.min(DeliveryRow.created_at)).where(DeliveryRow.state == "pending"))
    if oldest is not None and oldest.tzinfo is None:  # an aggregate bypasses the column type
        oldest = oldest.replace(tzinfo=UTC)
    users = {r[0]: int(r[1]) for r in session.execute(
        select(UserStatusRow.effective, func.count()).group_by(UserStatusRow.effective))}
    links = {r[0]: int(r[1]) for r in session.execute(
        select(CalendarLinkRow.state, func.count()).where(CalendarLinkRow.enabled.is_(True))
        .group_by(CalendarLinkRow.state))}
    since = (db_now(session) or now) - alive_for
    replicas = session.scalar(select(func.count()).select_from(ReplicaRow).where(ReplicaRow.seen_at >= since)) or 0
    channels = session.scalar(select(func.count()).select_from(PushChannelRow)
                              .where(PushChannelRow.expires_at > now)) or 0
    return Gauges(undelivered, oldest, users, links, int(replicas), int(channels), available_per_team(session))
