"""Agents and teams registered through the API (a helpdesk with thousands of agents does
this instead of listing them in the config file). Users from the config file are read-only
here: the file stays their single source of truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import time
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.models import CalendarLinkRow, TeamMemberRow, TeamRow, UserRow, UserStatusRow
from syncd.config import CalendarLinkConfig, UserConfig
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.hours import DAYS, hours_from_json, hours_to_json, parse_day
from syncd.core.time import format_utc, zone
from syncd.rotations import rotations_with_team, sync_seats
from syncd.service import Syncd

__all__ = ["ConfigOwned", "Directory", "parse_user"]

DIRECTIONS = ("two-way", "pull", "push")


class ConfigOwned(UserInputError):
    """The user is defined in the config file; change it there."""


def _hours(data: Any) -> dict[int, tuple[tuple[time, time], ...]]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise UserInputError('working_hours must be an object like {"mon": "09:00-17:00"}')
    hours: dict[int, tuple[tuple[time, time], ...]] = {}
    for day, value in data.items():
        if day not in DAYS:
            raise UserInputError(f"working_hours: unknown day {day!r} (use {', '.join(DAYS)})")
        if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(r, str) for r in value))):
            raise UserInputError(f'working_hours.{day}: use "09:00-17:00" or a list of such ranges')
        try:
            ranges = parse_day(value)
        except ValueError as exc:
            raise UserInputError(f"working_hours.{day}: {exc}") from None
        if ranges:
            hours[DAYS.index(day)] = ranges
    return hours


def parse_user(user_id: str, body: Mapping[str, Any], accounts: Mapping[str, Any]) -> UserConfig:
    """A user from an API body, checked as carefully as the config file's users."""
    email = body.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise UserInputError("email is required and must look like name@example.com")
    tz = body.get("timezone")
    if not isinstance(tz, str):
        raise UserInputError("timezone is required: an IANA name such as 'Europe/Stockholm'")
    zone(tz)
    calendars = []
    for i, cal in enumerate(body.get("calendars") or []):
        if not isinstance(cal, Mapping):
            raise UserInputError(f"calendars[{i}] must be an object with account and calendar")
        account, calendar = cal.get("account"), cal.get("calendar", "primary")
        if not isinstance(account, str) or account not in accounts:
            known = ", ".join(sorted(accounts)) or "none"
            raise UserInputError(f"calendars[{i}].account: unknown account {account!r} (known: {known})")
        if not isinstance(calendar, str) or not calendar:
            raise UserInputError(f"calendars[{i}].calendar must be a non-empty string")
        direction = cal.get("direction", "two-way")
        if direction not in DIRECTIONS:
            raise UserInputError(f"calendars[{i}].direction must be one of {', '.join(DIRECTIONS)}")
        sync_ooo = cal.get("sync_ooo", True)
        if not isinstance(sync_ooo, bool):
            raise UserInputError(f"calendars[{i}].sync_ooo must be true or false")
        calendars.append(CalendarLinkConfig(account=account, calendar=calendar, sync_ooo=sync_ooo,
                                            direction=direction))
    if len({(c.account, c.calendar) for c in calendars}) != len(calendars):
        raise UserInputError("calendars lists the same account and calendar twice")
    return UserConfig(id=user_id, email=email, timezone=tz, working_hours=_hours(body.get("working_hours")),
                      calendars=tuple(calendars))


class Directory:
    def __init__(self, service: Syncd) -> None:
        self.service = service
        self.db = service.db

    def put_user(self, user_id: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        if not user_id or len(user_id) > 200:
            raise UserInputError("a user id is 1 to 200 characters")
        user = parse_user(user_id, body, self.service.config.accounts)

        def work(session: Session) -> bool:
            existing = session.get(UserRow, user_id)
            if existing is not None and existing.origin == "config":
                raise ConfigOwned(f"user {user_id} is defined in {self.service.config.path.name}; change it there")
            now = self.service.clock()
            row = self.service.upsert_user(session, user, now, origin="api")
            self.service.recorder.advance(session, row, now)  # new working hours may change the status now
            return existing is None
        created = self.db.run(work)
        return self.get_user(user_id), created

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self.db.read(lambda s: self._user_json(s, self._user(s, user_id)))

    def delete_user(self, user_id: str) -> None:
        def work(session: Session) -> None:
            row = self._user(session, user_id)
            if row.origin == "config":
                raise ConfigOwned(f"user {user_id} is defined in {self.service.config.path.name}; remove it there")
            rotations = [r for t in session.scalars(select(TeamMemberRow.team_id).where(
                TeamMemberRow.user_id == user_id)) for r in rotations_with_team(session, t)]
            session.delete(row)
            session.flush()
            for rotation in rotations:
                sync_seats(session, rotation, self.service.clock())
        self.db.run(work)

    def list_users(self, status: str | None = None) -> list[dict[str, Any]]:
        if status not in (None, "available", "away"):
            raise UserInputError("status must be 'available' or 'away'")

        def work(session: Session) -> list[dict[str, Any]]:
            query = select(UserRow, UserStatusRow).join(UserStatusRow, UserStatusRow.user_id == UserRow.id,
                                                        isouter=True).order_by(UserRow.id)
            if status:
                query = query.where(UserStatusRow.effective == status)
            return [{"id": u.id, "email": u.email, "timezone": u.timezone, "origin": u.origin,
                     "status": st.effective if st else None, "reason": st.reason if st else None,
                     "since": format_utc(st.since) if st else None}
                    for u, st in session.execute(query)]
        return self.db.read(work)

    def put_team(self, team_id: str, members: Sequence[str]) -> tuple[dict[str, Any], bool]:
        if not team_id or len(team_id) > 200:
            raise UserInputError("a team id is 1 to 200 characters")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise UserInputError('members must be a list of user ids, e.g. {"members": ["alice", "bob"]}')

        def work(session: Session) -> bool:
            now = self.service.clock()
            missing = [m for m in dict.fromkeys(members) if session.get(UserRow, m) is None]
            if missing:
                raise NotFoundInStore(f"unknown user(s): {', '.join(missing)}; register them first")
            team = session.get(TeamRow, team_id)
            created = team is None
            if team is None:
                session.add(TeamRow(id=team_id, created_at=now))
                session.flush()
            session.execute(delete(TeamMemberRow).where(TeamMemberRow.team_id == team_id))
            for member in dict.fromkeys(members):
                session.add(TeamMemberRow(team_id=team_id, user_id=member))
            session.flush()
            for rotation in rotations_with_team(session, team_id):  # members follow the team
                sync_seats(session, rotation, now)
            return created
        created = self.db.run(work)
        return self.get_team(team_id), created

    def get_team(self, team_id: str) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any]:
            if session.get(TeamRow, team_id) is None:
                raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
            members = session.scalars(select(TeamMemberRow.user_id).where(TeamMemberRow.team_id == team_id)
                                      .order_by(TeamMemberRow.user_id))
            return {"id": team_id, "members": list(members)}
        return self.db.read(work)

    @staticmethod
    def _user(session: Session, user_id: str) -> UserRow:
        row = session.get(UserRow, user_id)
        if row is None:
            raise NotFoundInStore(f"no user {user_id!r}")
        return row

    def _user_json(self, session: Session, row: UserRow) -> dict[str, Any]:
        links = session.scalars(select(CalendarLinkRow).where(CalendarLinkRow.user_id == row.id,
                                                              CalendarLinkRow.enabled.is_(True))
                                .order_by(CalendarLinkRow.id))
        return {
            "id": row.id, "email": row.email, "timezone": row.timezone, "origin": row.origin,
            "working_hours": hours_to_json(hours_from_json(row.working_hours)),
            "calendars": [{"id": link.id, "account": link.account, "calendar": link.calendar,
                           "sync_ooo": link.sync_ooo, "direction": link.direction, "state": link.state,
                           "last_success": format_utc(link.last_success_at), "last_error": link.last_error}
                          for link in links],
        }
