"""What one sync of one link works from (`Snapshot`), and what it reports (`LinkOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from store.models import CalendarLinkRow, UserRow
from syncd.core import reconcile as rc
from syncd.core.calendars import RemoteEvent

__all__ = ["LinkOutcome", "Retry", "Snapshot", "snapshot_of"]


@dataclass
class LinkOutcome:
    link_id: int
    name: str
    account: str = ""
    user_id: str = ""
    ok: bool = True
    error: str | None = None
    actions: int = 0
    held_deletions: int = 0
    conflicts: int = 0
    blocks_changed: bool = False

    def merged(self, later: LinkOutcome | None) -> LinkOutcome:
        """This outcome with a later pass over the same link (a push pass) added in."""
        if later is None:
            return self
        self.actions += later.actions
        self.conflicts += later.conflicts
        if not later.ok:
            self.ok, self.error = False, later.error
        return self


@dataclass
class Snapshot:
    """A link and its user as they stood when the sync began."""

    link: rc.LinkView
    user_id: str
    timezone: str
    account: str
    calendar: str
    cursor: str | None
    release_deletions: bool
    state: str
    failures: int
    name: str
    email: str = ""
    pushed: bool = False  # a live push channel tells us about changes: poll less often
    started_at: datetime | None = None  # a poll asked for after this (a notification) is kept
    configured: str = ""  # the calendar as the config names it (``calendar`` becomes the connector's address)


@dataclass
class Retry:
    """Events to merge again after lost write races (never overwrite blindly)."""

    events: list[RemoteEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def snapshot_of(row: CalendarLinkRow, user: UserRow, pushed: bool, now: datetime) -> Snapshot:
    view = rc.LinkView(row.id, cast(rc.Direction, row.direction), f"calendar:{row.account}/{row.calendar}")
    return Snapshot(view, user.id, user.timezone, row.account, row.calendar, row.cursor, row.release_deletions,
                    row.state, row.failures, f"{user.id}/{row.account}/{row.calendar}", user.email.lower(),
                    pushed, now, row.calendar)
