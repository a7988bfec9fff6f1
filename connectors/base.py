"""The calendar connector interface: the only thing the core knows about calendars.

Terms
-----
calendar
    A string naming one calendar inside an account: a folder name (local), a URL or display
    name (CalDAV), a calendar id (Google, Outlook).
event id
    The connector's stable id of one OOO event. A recurring series is expanded inside the
    sync window and each occurrence gets its own id (``<uid>/<recurrence instant>``), so the
    core only ever sees single periods.
etag
    An opaque version of one event. Writes pass the etag they were based on; a mismatch
    raises `PreconditionFailed` instead of overwriting somebody else's edit.
cursor
    An opaque string the connector returns with each change set and gets back on the next
    call. ``None`` asks for a full listing.
block id
    syncd's id for an OOO block. Every event syncd writes carries it, so an echo of our own
    write, or an event created just before a crash, is recognised.

Contract (tested for every connector by ``tests/connector_contract.py``)
----------------------------------------------------------------------
- `changes` returns only OOO events (as recognised by the provider's rules). With
  ``full=True`` the change set lists every OOO event that overlaps the window and the
  caller treats linked events missing from it as deleted; otherwise it lists new or changed
  events and the ids of removed ones. An event that stops being OOO is reported as removed.
- `create` is idempotent per block id: creating again for the same block returns the
  existing event rather than a second one.
- `update` and `delete` raise `PreconditionFailed` when the etag is stale; `delete` of an
  event that is already gone succeeds; `update` of a missing event raises `NotFound`.
- Errors are translated at the boundary into `syncd.errors`: `AuthError`,
  `RateLimited`, `TransientError`, `CursorExpired`, `PreconditionFailed`, `NotFound`,
  `ConfigError`. No database access, no global state.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from syncd.errors import (
    AuthError,
    BadEventData,
    ConfigError,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RateLimited,
    TransientError,
)
from syncd.ooo import OooContent

__all__ = [
    "AuthError",
    "BadEventData",
    "CalendarConnector",
    "ChangeSet",
    "ConfigError",
    "CursorExpired",
    "EventDraft",
    "NotFound",
    "OooRules",
    "PollRequest",
    "PreconditionFailed",
    "RateLimited",
    "RemoteEvent",
    "SyncWindow",
    "TransientError",
    "Watch",
]


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


class CalendarConnector(abc.ABC):
    """One provider. Instances are made per account and may be shared between threads
    only if the implementation says so; the daemon gives each sync its own call sequence."""

    provider: str = ""

    @abc.abstractmethod
    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        """OOO events changed since ``cursor`` (all of them when ``cursor`` is None).

        Raises `CursorExpired` when the cursor is no longer accepted (call again with None).
        """

    def changes_many(self, requests: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        """`changes` for many calendars at once, each answer a change set or the error it raised.

        Providers with batch endpoints list many calendars per HTTP request; the default asks
        one by one. One calendar's failure never affects the others' answers."""
        return [self.changes_or_error(request) for request in requests]

    def changes_or_error(self, request: PollRequest) -> ChangeSet | Exception:
        """`changes` for one request, its error returned rather than raised."""
        try:
            return self.changes(request.calendar, request.cursor, request.window)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, link by link
            return exc

    def address(self, owner: str, calendar: str) -> str:
        """The connector's name for ``owner``'s (an email) calendar ``calendar`` (from the config).

        Providers that act as each user (Google, Microsoft Graph) put the user in it."""
        return calendar

    #: The kind of push channel `watch` opens ("" when the provider has none).
    push_kind: str = ""

    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        """Ask the provider to POST to ``address`` when ``calendar`` changes, carrying ``token``."""
        raise ConfigError(f"{self.provider or 'this'} calendars have no push notifications")

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:  # noqa: B027 - optional
        """Close a channel opened by `watch`; an unknown channel is not an error."""

    @abc.abstractmethod
    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        """The event now, or None if it is gone or no longer OOO."""

    @abc.abstractmethod
    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        """The event syncd wrote for ``block_id``, if any (recovers from a crash after create)."""

    @abc.abstractmethod
    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        """Write a new OOO event carrying the block id; idempotent per block id."""

    @abc.abstractmethod
    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        """Replace the event's OOO content. Raises `PreconditionFailed`, `NotFound`."""

    @abc.abstractmethod
    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        """Remove the event (one occurrence, for an expanded series). Missing is success."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets and files."""


def unique_ids(events: Sequence[RemoteEvent]) -> bool:
    return len({e.event_id for e in events}) == len(events)
