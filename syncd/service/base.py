"""What every operation of the service shares: the config, the database, the clock, and the
status recorder that turns each edit into status changes in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from store import blocks, users
from store.db import Database, Transaction
from store.models import BlockRow, UserRow
from syncd.config import Config
from syncd.core.availability import Status
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.ooo import OooContent
from syncd.core.time import format_utc
from syncd.service.recorder import StatusRecorder
from syncd.service.status_cache import StatusCache

__all__ = ["BlockInfo", "ServiceBase", "StatusInfo", "utc_now"]


def utc_now() -> datetime:
    # Whole seconds: every instant syncd records or publishes reads cleanly, and the
    # status timer (twice a second) still meets "within one second of the instant".
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class BlockInfo:
    id: str
    user: str
    start: datetime
    end: datetime
    all_day: bool
    title: str
    source: str
    revision: int
    content: OooContent
    replacement: str | None = None

    @classmethod
    def of(cls, row: BlockRow) -> BlockInfo:
        return cls(row.id, row.user_id, row.start, row.end, row.all_day, row.title, row.source, row.revision,
                   blocks.content_of(row), row.replacement)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "start": format_utc(self.start), "end": format_utc(self.end),
                "all_day": self.all_day, "title": self.title, "source": self.source, "revision": self.revision,
                "replacement": self.replacement}


@dataclass(frozen=True)
class StatusInfo:
    user: str
    status: Status
    reason: str
    since: datetime | None
    until: datetime | None
    blocks: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"user": self.user, "status": self.status, "reason": self.reason, "since": format_utc(self.since),
                "until": format_utc(self.until), "blocks": self.blocks}


class ServiceBase:
    def __init__(self, config: Config, db: Database, *, clock: Callable[[], datetime] = utc_now,
                 on_published: Callable[[int], None] = lambda _changes: None) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.recorder = StatusRecorder(
            sinks=[s.name for s in config.sinks],
            away_outside_working_hours=config.daemon.away_outside_working_hours,
            days_off=config.daemon.days_off,
        )
        # Called after each committed batch of status changes while more are waiting: the
        # daemon starts delivering the first batch while it evaluates the next.
        self.on_published = on_published
        # Status answers for now, kept until the database or the clock may change them.
        self.status_answers: StatusCache[StatusInfo] = StatusCache()

    def user_ids(self) -> list[str]:
        return self.db.read(users.ids)

    def _user(self, session: Transaction, user_id: str) -> UserRow:
        user = users.by_id(session, user_id)
        if user is None:
            raise NotFoundInStore(f"no user {user_id!r}; `syncd status` lists the known users")
        return user

    def _replacement(self, session: Transaction, user_id: str, replacement: str | None) -> str | None:
        """``replacement`` checked as one that ``user_id`` may name (None: nobody)."""
        if replacement is None:
            return None
        if replacement == user_id:
            raise UserInputError(f"replacement: {user_id} cannot replace themselves; name another user")
        if users.by_id(session, replacement) is None:
            raise UserInputError(f"replacement: no user {replacement!r}; name a known user (`syncd status` lists them)")
        return replacement

    def _block(self, session: Transaction, block_id: str) -> BlockRow:
        block = blocks.live(session, block_id)
        if block is None:
            raise NotFoundInStore(f"no OOO block {block_id!r}; `syncd ooo list USER` shows a user's blocks")
        return block
