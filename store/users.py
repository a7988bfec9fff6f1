"""Users, their calendar links as the config file or the API sets them, and teams."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.models import CalendarLinkRow, TeamMemberRow, TeamRow, UserRow, UserStatusRow

__all__ = [
    "Known", "LinkSpec", "all_users", "by_email", "by_id", "by_id_or_email", "delete_user", "disable_links_not_in",
    "enabled_links", "ids", "ids_with_email", "put_team",
    "summaries", "team", "team_exists", "TeamSchedule", "team_members", "teams_of", "touch_links", "upsert",
]


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """One calendar a user links, as configured."""

    account: str
    calendar: str
    sync_ooo: bool = True
    direction: str = "two-way"


@dataclass
class Known:
    """What the store holds of a group of users, read in three queries: their rows, their
    links (in link order) and their status rows, locked for the transaction. Writing the
    config's users at start from this costs a few statements per thousand users instead of
    ten round trips per user (100,000 users took over ten minutes)."""

    users: dict[str, UserRow]
    links: dict[str, list[CalendarLinkRow]]
    statuses: dict[str, UserStatusRow]
    # links made by `upsert`, added to the session by `add_new_links` once their users are
    # written (the unit of work does not order tables it knows no relationship between)
    new_links: list[CalendarLinkRow] = field(default_factory=list)

    def add_new_links(self, session: Session) -> None:
        session.flush()
        session.add_all(self.new_links)
        self.new_links.clear()


def known(session: Session, user_ids: Sequence[str]) -> Known:
    """`Known` of ``user_ids``. Status rows are locked in user id order, as the sweep locks
    them, so that two transactions never wait for each other in a circle."""
    ids = sorted(user_ids)
    users = {row.id: row for row in session.scalars(select(UserRow).where(UserRow.id.in_(ids)))}
    links: dict[str, list[CalendarLinkRow]] = {}
    for link in session.scalars(select(CalendarLinkRow).where(CalendarLinkRow.user_id.in_(ids))
                                .order_by(CalendarLinkRow.id)):
        links.setdefault(link.user_id, []).append(link)
    statuses = {row.user_id: row for row in session.scalars(
        select(UserStatusRow).where(UserStatusRow.user_id.in_(ids)).order_by(UserStatusRow.user_id)
        .with_for_update())}
    return Known(users, links, statuses)


def by_id(session: Session, user_id: str) -> UserRow | None:
    return session.get(UserRow, user_id)


def by_id_or_email(session: Session, user: str) -> UserRow | None:
    return session.get(UserRow, user) or by_email(session, user)


def by_email(session: Session, email: str) -> UserRow | None:
    """The user with this email, whatever its case (an email belongs to one user)."""
    return session.scalars(select(UserRow).where(UserRow.email_key == email.lower())).first()


def ids_with_email(session: Session, email: str) -> list[str]:
    return list(session.scalars(select(UserRow.id).where(UserRow.email_key == email.lower())))


def all_users(session: Session) -> list[UserRow]:
    return list(session.scalars(select(UserRow).order_by(UserRow.id)))


def ids(session: Session) -> list[str]:
    return list(session.scalars(select(UserRow.id).order_by(UserRow.id)))


def upsert(session: Session, *, user_id: str, email: str, timezone: str | None, hours: dict[str, Any],
           links: Sequence[LinkSpec], origin: str, now: datetime,
           days_off: dict[str, Any] | None = None, replacement: str | None = None,
           hours_from: str = "config", known: Known | None = None) -> tuple[UserRow, bool]:
    """Create or update a user and their calendar links. Returns the row, and whether what
    decides their status besides their blocks (zone, working hours, days off) is unchanged. A
    ``timezone`` of None is the zone of the hours the user's calendar keeps: the one read
    last (UTC until then). From the API the whole list of links is sent: links left out are
    switched off (kept, with their event links, in case they come back). With ``known`` (which
    holds this user), nothing is read or flushed, and new links wait in ``known.new_links``."""
    row = known.users.get(user_id) if known is not None else session.get(UserRow, user_id)
    days_off = days_off or None
    zone_from_calendar = timezone is None
    if timezone is None:
        timezone = row.timezone if row is not None and row.timezone_from_calendar else "UTC"
    same_rules = (row is not None and row.timezone == timezone and row.working_hours == hours
                  and row.days_off == days_off and row.working_hours_from == hours_from)
    if row is None:
        row = UserRow(id=user_id, created_at=now, origin=origin)
        session.add(row)
    row.email, row.email_key, row.timezone, row.working_hours = email, email.lower(), timezone, hours
    row.replacement = replacement
    row.days_off = days_off
    if row.working_hours_from == "calendar" and hours_from != "calendar":
        # what the calendars said no longer applies, nor is it shown as a problem of theirs
        session.execute(update(CalendarLinkRow).where(CalendarLinkRow.user_id == user_id).values(
            hours_state=None, hours=None, hours_zone=None, hours_problem=None, hours_read_at=None))
    row.working_hours_from, row.timezone_from_calendar = hours_from, zone_from_calendar
    if known is None:
        session.flush()
    theirs = {(link.account, link.calendar): link for link in known.links.get(user_id, ())} if known else {}
    for spec in links:
        if known is not None:
            link = theirs.get((spec.account, spec.calendar))
        else:
            link = session.scalars(select(CalendarLinkRow).where(
                CalendarLinkRow.user_id == user_id, CalendarLinkRow.account == spec.account,
                CalendarLinkRow.calendar == spec.calendar)).one_or_none()
        if link is None:
            link = CalendarLinkRow(user_id=user_id, account=spec.account, calendar=spec.calendar, next_poll_at=now,
                                   state="ok", failures=0, held_deletions=0, release_deletions=False)
            if known is None:
                session.add(link)
            else:
                known.links.setdefault(user_id, []).append(link)
                known.new_links.append(link)
        if not link.enabled:
            link.next_poll_at = now
        link.sync_ooo, link.direction, link.enabled = spec.sync_ooo, spec.direction, True
    if origin != "config":
        wanted = {(spec.account, spec.calendar) for spec in links}
        theirs_now = known.links.get(user_id, []) if known is not None else session.scalars(
            select(CalendarLinkRow).where(CalendarLinkRow.user_id == user_id))
        for link in theirs_now:
            if (link.account, link.calendar) not in wanted:
                link.enabled = False
    return row, same_rules


def disable_links_not_in(session: Session, configured: set[tuple[str, str, str]]) -> None:
    """Links of config-file users that the file no longer lists are switched off, not deleted,
    so they return (with their event links) if the calendar is added again."""
    rows = session.execute(select(CalendarLinkRow.id, CalendarLinkRow.user_id, CalendarLinkRow.account,
                                  CalendarLinkRow.calendar).join(UserRow, UserRow.id == CalendarLinkRow.user_id)
                           .where(UserRow.origin == "config", CalendarLinkRow.enabled.is_(True)))
    gone = [link_id for link_id, *key in rows if tuple(key) not in configured]
    for start in range(0, len(gone), 1000):
        session.execute(update(CalendarLinkRow).where(CalendarLinkRow.id.in_(gone[start:start + 1000]))
                        .values(enabled=False))


def delete_user(session: Session, row: UserRow) -> None:
    session.delete(row)
    session.flush()


def summaries(session: Session, status: str | None) -> list[tuple[UserRow, UserStatusRow | None]]:
    query = select(UserRow, UserStatusRow).join(UserStatusRow, UserStatusRow.user_id == UserRow.id,
                                                isouter=True).order_by(UserRow.id)
    if status:
        query = query.where(UserStatusRow.effective == status)
    return [(user, state) for user, state in session.execute(query)]


def enabled_links(session: Session, user_id: str) -> list[CalendarLinkRow]:
    return list(session.scalars(select(CalendarLinkRow).where(CalendarLinkRow.user_id == user_id,
                                                              CalendarLinkRow.enabled.is_(True))
                                .order_by(CalendarLinkRow.id)))


# -- teams -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamSchedule:
    """A team's schedule columns: zone, working hours and days off as stored (JSON forms)."""

    timezone: str | None = None
    working_hours: dict[str, Any] | None = None
    days_off: dict[str, Any] | None = None


def team_exists(session: Session, team_id: str) -> bool:
    return session.get(TeamRow, team_id) is not None


def team(session: Session, team_id: str) -> TeamRow | None:
    return session.get(TeamRow, team_id)


def put_team(session: Session, team_id: str, members: Iterable[str], now: datetime, *,
             schedule: TeamSchedule | None = None, origin: str = "api") -> bool:
    """Create the team or replace its members and schedule; whether it was created."""
    row = session.get(TeamRow, team_id)
    created = row is None
    if row is None:
        row = TeamRow(id=team_id, created_at=now)
        session.add(row)
    schedule = schedule or TeamSchedule()
    row.origin, row.timezone, row.working_hours, row.days_off = (origin, schedule.timezone,
                                                                 schedule.working_hours or None,
                                                                 schedule.days_off or None)
    session.flush()
    session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == team_id))
    for member in dict.fromkeys(members):
        session.add(TeamMemberRow(team_id=team_id, user_id=member))
    session.flush()
    return created


def team_members(session: Session, team_id: str) -> list[str]:
    return list(session.scalars(select(TeamMemberRow.user_id).where(TeamMemberRow.team_id == team_id)
                                .order_by(TeamMemberRow.user_id)))


def teams_of(session: Session, user_id: str) -> list[str]:
    return list(session.scalars(select(TeamMemberRow.team_id).where(TeamMemberRow.user_id == user_id)))


def touch_links(session: Session, user_id: str, now: datetime, *, except_link: int | None = None) -> None:
    """Poll the user's enabled links now: their calendars must hear of a block change soon."""
    query = update(CalendarLinkRow).where(CalendarLinkRow.user_id == user_id, CalendarLinkRow.enabled.is_(True),
                                          CalendarLinkRow.state != "reauth_required")
    if except_link is not None:
        query = query.where(CalendarLinkRow.id != except_link)
    session.execute(query.values(next_poll_at=now))
