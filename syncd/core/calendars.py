"""What a calendar says, as the sync engine sees it, whatever the provider.

Terms
-----
calendar
    A string naming one calendar inside an account: a folder name (local), a URL or display
    name (CalDAV), a calendar id (Google, Outlook).
event id
    The connector's stable id of one OOO event. A recurring series is expanded inside the
    sync window and each occurrence gets its own id (``<uid>/<recurrence instant>``), so the
    engine only ever sees single periods.
etag
    An opaque version of one event. Writes pass the etag they were based on; a mismatch
    means somebody else edited it since.
cursor
    An opaque string a connector returns with each change set and gets back on the next
    call. ``None`` asks for a full listing.
block id
    syncd's id for an OOO block. Every event syncd writes carries it, so an echo of our own
    write, or an event created just before a crash, is recognised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from syncd.core.ooo import OooContent

__all__ = ["ChangeSet", "EventDraft", "OooRules", "PollRequest", "RemoteEvent", "SyncWindow", "Watch",
           "unique_ids"]


@dataclass(frozen=True, slots=True)
class SyncWindow:
    """The span synced, and the zone (the user's) that all-day dates and floating times are read in."""

    start: datetime
    end: datetime
    timezone: str = "UTC"

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start < self.end and end > self.start


@dataclass(frozen=True, slots=True)
class OooRules:
    """Operator rules that make an iCalendar event count as OOO, besides the OOF marker."""

    categories: tuple[str, ...] = ()  # case-insensitive CATEGORIES values
    keywords: tuple[str, ...] = ()  # case-insensitive substrings of SUMMARY
    all_events: bool = False  # the whole calendar means "away"


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    event_id: str
    etag: str
    content: OooContent
    block_id: str | None = None  # ours, if syncd wrote it
    updated: datetime | None = None  # provider's last-modified, for the `newest` policy
    series_id: str | None = None  # the recurring series it is an occurrence of
    read_only: bool = False  # the calendar's version always wins (e.g. a mailbox's automatic replies)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """What syncd wants an OOO event to say."""

    block_id: str
    content: OooContent
    timezone: str  # the user's zone: all-day events are written in it


@dataclass(frozen=True, slots=True)
class PollRequest:
    """One calendar to list, as in a `changes` call."""

    calendar: str
    cursor: str | None
    window: SyncWindow


@dataclass(frozen=True, slots=True)
class Watch:
    """A push channel a provider opened for one calendar (Google watch, Graph subscription)."""

    channel_id: str
    resource_id: str
    expires_at: datetime


@dataclass(slots=True)
class ChangeSet:
    events: list[RemoteEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    cursor: str | None = None
    full: bool = False


def unique_ids(events: Sequence[RemoteEvent]) -> bool:
    return len({e.event_id for e in events}) == len(events)
