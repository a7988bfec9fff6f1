"""Replicas sharing this database, the config they agreed on, and the database's own clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from store.models import ReplicaRow, SettingRow

__all__ = ["agreed_config", "alive", "db_now", "heartbeat", "leave", "set_agreed_config"]

_CONFIG = "config"


def db_now(session: Session) -> datetime | None:
    """The database server's clock (PostgreSQL), or None where the database is this process's
    file (SQLite: one replica, whose own clock is the only one)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
    assert isinstance(value, datetime)
    return value


def agreed_config(session: Session) -> dict[str, Any] | None:
    row = session.get(SettingRow, _CONFIG)
    return None if row is None else dict(row.value)


def set_agreed_config(session: Session, value: dict[str, Any], now: datetime) -> None:
    row = session.get(SettingRow, _CONFIG, with_for_update=True)
    if row is None:
        session.add(SettingRow(key=_CONFIG, value=value, updated_at=now))
    else:
        row.value, row.updated_at = value, now


def heartbeat(session: Session, name: str, fingerprint: str, now: datetime) -> None:
    row = session.get(ReplicaRow, name)
    if row is None:
        session.add(ReplicaRow(name=name, fingerprint=fingerprint, started_at=now, seen_at=now))
    else:
        row.fingerprint, row.seen_at = fingerprint, now


def alive(session: Session, since: datetime) -> list[tuple[str, str]]:
    """(name, config fingerprint) of every replica seen since ``since``."""
    return [(n, f) for n, f in session.execute(select(ReplicaRow.name, ReplicaRow.fingerprint)
                                               .where(ReplicaRow.seen_at >= since).order_by(ReplicaRow.name))]


def leave(session: Session, name: str) -> None:
    session.execute(delete(ReplicaRow).where(ReplicaRow.name == name))
