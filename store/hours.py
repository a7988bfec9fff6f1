"""Working hours read from linked calendars: per link what its calendar said when last read,
and per user the hours the status rules use (see `UserRow.effective_hours`).

A link's reading is due when its user takes hours from the calendar and it was never read,
or last read more than the poll interval ago (a full listing of the calendar makes it due
again by clearing ``hours_read_at``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from store.models import CalendarLinkRow, UserRow
from syncd.core.hours import CalendarHours, hours_from_json, hours_to_json

__all__ = ["ERROR", "FOUND", "INVALID", "NONE", "UNSUPPORTED", "DueReading", "LinkHours", "due",
           "read_again", "readings_from", "readings_of", "save_reading", "set_effective"]

# found: hours read; none: the calendar keeps none; unsupported: the provider has none to give;
# invalid: unreadable hours (the fallback applies); error: could not ask (the last hours stay).
FOUND, NONE, UNSUPPORTED, INVALID, ERROR = "found", "none", "unsupported", "invalid", "error"


@dataclass(frozen=True, slots=True)
class DueReading:
    link_id: int
    user_id: str
    email: str
    account: str
    calendar: str


@dataclass(frozen=True, slots=True)
class LinkHours:
    """One enabled link of a user and what its calendar last said of the working hours."""

    link_id: int
    account: str
    calendar: str
    state: str | None  # None: never read
    hours: CalendarHours | None
    problem: str | None
    read_at: datetime | None


def due(session: Session, read_before: datetime, limit: int) -> list[DueReading]:
    """Enabled links of users who take their hours from the calendar, never read or read
    before ``read_before``; oldest first."""
    query = (select(CalendarLinkRow.id, UserRow.id, UserRow.email, CalendarLinkRow.account, CalendarLinkRow.calendar)
             .join(UserRow, UserRow.id == CalendarLinkRow.user_id)
             .where(UserRow.working_hours_from == "calendar", CalendarLinkRow.enabled.is_(True),
                    CalendarLinkRow.state != "reauth_required",
                    or_(CalendarLinkRow.hours_read_at.is_(None), CalendarLinkRow.hours_read_at < read_before))
             .order_by(CalendarLinkRow.hours_read_at.is_not(None), CalendarLinkRow.hours_read_at, CalendarLinkRow.id)
             .limit(limit))
    return [DueReading(*row) for row in session.execute(query)]


def read_again(session: Session, link_ids: Sequence[int]) -> None:
    """Make these links' readings due now (their calendars were listed in full)."""
    if link_ids:
        session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id.in_(list(link_ids)))
                        .values(hours_read_at=None))


def save_reading(session: Session, link_id: int, state: str, hours: CalendarHours | None, problem: str | None,
                 now: datetime) -> tuple[str | None, str | None] | None:
    """Record what the link's calendar said; returns its previous (state, problem), or None
    when the link is gone."""
    row = session.get(CalendarLinkRow, link_id, with_for_update=True)
    if row is None:
        return None
    before = (row.hours_state, row.hours_problem)
    row.hours_state, row.hours_problem, row.hours_read_at = state, problem, now
    if state != ERROR:  # could not ask: the hours read last stay until a reading replaces them
        row.hours = None if hours is None else hours_to_json(hours.hours)
        row.hours_zone = None if hours is None else hours.timezone
    return before


def readings_of(session: Session, user_id: str) -> list[LinkHours]:
    """The user's enabled links, in link order, with the hours each calendar last provided."""
    return readings_from(session.scalars(select(CalendarLinkRow).where(
        CalendarLinkRow.user_id == user_id, CalendarLinkRow.enabled.is_(True)).order_by(CalendarLinkRow.id)))


def readings_from(links: Iterable[CalendarLinkRow]) -> list[LinkHours]:
    """`readings_of`, from the user's links already read (in link order; disabled ones are left out)."""
    return [LinkHours(r.id, r.account, r.calendar, r.hours_state,
                      CalendarHours(hours_from_json(r.hours), r.hours_zone) if r.hours and r.hours_zone else None,
                      r.hours_problem, r.hours_read_at) for r in links if r.enabled]


def set_effective(user: UserRow, hours: dict[str, Any] | None, zone: str | None, source: str) -> bool:
    """Record the hours the status rules use for ``user`` (None: the config's); whether they changed."""
    changed = (user.effective_hours, user.effective_hours_zone, user.hours_source) != (hours, zone, source)
    user.effective_hours, user.effective_hours_zone, user.hours_source = hours, zone, source
    return changed
