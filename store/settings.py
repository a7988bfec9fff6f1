"""Values the replicas share under a name (a signing key made once, the agreed config)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from store.models import SettingRow

__all__ = ["made_once"]


def made_once(session: Session, key: str, make: Callable[[], dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The value under ``key``; made with ``make`` and kept if there is none. Replicas that
    make it at the same moment all end up with the one that was kept first."""
    row = session.get(SettingRow, key)
    if row is not None:
        return dict(row.value)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(insert(SettingRow).values(key=key, value=make(), updated_at=now)
                    .on_conflict_do_nothing(index_elements=["key"]))
    kept = session.get(SettingRow, key, populate_existing=True)
    assert kept is not None
    return dict(kept.value)
