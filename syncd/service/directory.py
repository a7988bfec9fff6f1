"""Agents and teams registered through the API (a helpdesk with thousands of agents does
this instead of listing them in the config file). Users from the config file are read-only
here: the file stays their single source of truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, time
from typing import Any

from store import coverage, replacements, users
from store.db import Transaction
from store.models import UserRow
from syncd.config import CalendarLinkConfig, UserConfig
from syncd.config.links import link_problem
from syncd.core.businesstime import Schedule, add_working_time, working_time
from syncd.core.daysoff import (
    DaysOffProblem,
    DaysOffSpec,
    days_off_of,
    parse_dates,
    parse_holidays,
    spec_from_json,
    spec_to_json,
)
from syncd.core.errors import AlreadyExists, ConfigError, NotAllowed, NotFoundInStore, UserInputError
from syncd.core.hours import DAYS, hours_from_json, hours_to_json, parse_day
from syncd.core.time import ensure_aware, format_utc, parse_duration, zone
from syncd.service import Syncd
from syncd.service.rotations import RotationEngine

__all__ = ["ConfigOwned", "Directory", "parse_team_schedule", "parse_user"]

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


def parse_days_off(body: Mapping[str, Any]) -> DaysOffSpec:
    """``holidays`` and ``days_off`` of an API body (of a user or a team)."""
    spec = DaysOffSpec()
    try:
        if body.get("holidays") is not None:
            spec = DaysOffSpec(parse_holidays(body["holidays"]), spec.dates)
    except DaysOffProblem as exc:
        raise UserInputError(f"holidays.{exc.key}: {exc.message}" if exc.key else f"holidays: {exc.message}") from None
    try:
        if body.get("days_off") is not None:
            spec = DaysOffSpec(spec.holidays, parse_dates(body["days_off"]))
    except DaysOffProblem as exc:
        raise UserInputError(f"days_off{exc.key}: {exc.message}") from None
    return spec


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
    for i, cal in enumerate(body.get("calendars") or ()):
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
        problem = link_problem(accounts[account], email, calendar)
        if problem is not None:
            raise UserInputError(f"calendars[{i}].{problem[0]}: {problem[1]}")
        calendars.append(CalendarLinkConfig(account=account, calendar=calendar, sync_ooo=sync_ooo,
                                            direction=direction))
    if len({(c.account, c.calendar) for c in calendars}) != len(calendars):
        raise UserInputError("calendars lists the same account and calendar twice")
    replacement = body.get("replacement")
    if replacement is not None and (not isinstance(replacement, str) or not replacement):
        raise UserInputError("replacement must be a user id, or null for nobody")
    return UserConfig(id=user_id, email=email, timezone=tz, working_hours=_hours(body.get("working_hours")),
                      calendars=tuple(calendars), days_off=parse_days_off(body), replacement=replacement)


def parse_team_schedule(body: Mapping[str, Any]) -> users.TeamSchedule:
    """A team's schedule from an API body: ``timezone``, ``working_hours``, ``holidays``,
    ``days_off``, all optional; working hours need the zone they are local to."""
    tz = body.get("timezone")
    if tz is not None:
        if not isinstance(tz, str):
            raise UserInputError("timezone must be an IANA name such as 'Europe/Stockholm'")
        zone(tz)
    hours = _hours(body.get("working_hours"))
    if hours and tz is None:
        raise UserInputError("timezone is required with working_hours: they are local times")
    return users.TeamSchedule(tz, hours_to_json(hours) or None, spec_to_json(parse_days_off(body)) or None)


class Directory:
    def __init__(self, service: Syncd, rotations: RotationEngine) -> None:
        self.service = service
        self.rotations = rotations
        self.db = service.db

    def put_user(self, user_id: str, body: Mapping[str, Any], *,
                 may_change_links: bool = True) -> tuple[dict[str, Any], bool]:
        """Create or replace a user. ``calendars`` left out keeps their links; creating or
        changing links (which aim syncd's calendar credentials) needs ``may_change_links``.
        ``replacement`` left out keeps it too (null: nobody)."""
        if not user_id or len(user_id) > 200:
            raise UserInputError("a user id is 1 to 200 characters")
        user = parse_user(user_id, body, self.service.config.accounts)

        def work(session: Transaction) -> bool:
            nonlocal user
            existing = users.by_id(session, user_id)
            if existing is not None and existing.origin == "config":
                raise ConfigOwned(f"user {user_id} is defined in {self.service.config.path.name}; change it there")
            have = [CalendarLinkConfig(r.account, r.calendar, r.sync_ooo, r.direction)
                    for r in (users.enabled_links(session, user_id) if existing is not None else [])]
            if "replacement" not in body:
                user = replace(user, replacement=existing.replacement if existing is not None else None)
            self.service._replacement(session, user_id, user.replacement)
            if body.get("calendars") is None:
                user = replace(user, calendars=tuple(have))
            elif not may_change_links and set(user.calendars) != set(have):
                raise NotAllowed("creating or changing a user's calendar links needs a token with the 'admin' "
                                 "scope; leave calendars out to keep them as they are")
            other = users.by_email(session, user.email)
            if other is not None and other.id != user_id:
                raise AlreadyExists(f"{user.email} is already the email of user {other.id!r}; an email belongs to "
                                    "one user")
            now = self.service.clock()
            row = self.service.upsert_user(session, user, now, origin="api")
            self.service.recorder.advance(session, row, now)  # new working hours may change the status now
            return existing is None
        created = self.db.run(work)
        return self.get_user(user_id), created

    def get_user(self, user_id: str) -> dict[str, Any]:
        return self.db.read(lambda s: self._user_json(s, self._user(s, user_id)))

    def delete_user(self, user_id: str) -> None:
        def work(session: Transaction) -> None:
            row = self._user(session, user_id)
            if row.origin == "config":
                raise ConfigOwned(f"user {user_id} is defined in {self.service.config.path.name}; remove it there")
            teams = users.teams_of(session, user_id)
            replacements.forget(session, user_id)
            users.delete_user(session, row)
            for team_id in teams:  # the team's rotations lose a member
                self.rotations.team_changed(session, team_id)
        self.db.run(work)

    def list_users(self, status: str | None = None) -> list[dict[str, Any]]:
        if status not in (None, "available", "away"):
            raise UserInputError("status must be 'available' or 'away'")

        def work(session: Transaction) -> list[dict[str, Any]]:
            return [{"id": u.id, "email": u.email, "timezone": u.timezone, "origin": u.origin,
                     "status": st.effective if st else None, "reason": st.reason if st else None,
                     "since": format_utc(st.since) if st else None}
                    for u, st in users.summaries(session, status)]
        return self.db.read(work)

    def put_team(self, team_id: str, members: Sequence[str], body: Mapping[str, Any] | None = None, *,
                 min_available: int = 0) -> tuple[dict[str, Any], bool]:
        """Create or replace a team: its members, its schedule (``body``'s ``timezone``,
        ``working_hours``, ``holidays``, ``days_off``; left out: none, the clock runs 24/7), and
        the fewest members that should be available (0: no minimum)."""
        if not team_id or len(team_id) > 200:
            raise UserInputError("a team id is 1 to 200 characters")
        if isinstance(min_available, bool) or not isinstance(min_available, int) or not 0 <= min_available <= 10_000:
            raise UserInputError("min_available must be a whole number from 0 (no minimum) to 10000")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise UserInputError('members must be a list of user ids, e.g. {"members": ["alice", "bob"]}')
        schedule = parse_team_schedule(body or {})

        def work(session: Transaction) -> bool:
            existing = users.team(session, team_id)
            if existing is not None and existing.origin == "config":
                raise ConfigOwned(f"team {team_id} is defined in {self.service.config.path.name}; change it there")
            missing = [m for m in dict.fromkeys(members) if users.by_id(session, m) is None]
            if missing:
                raise NotFoundInStore(f"unknown user(s): {', '.join(missing)}; register them first")
            created = users.put_team(session, team_id, members, self.service.clock(), schedule=schedule)
            coverage.set_minimum(session, team_id, min_available)
            coverage.mark_changed(session, team_id)  # members or minimum may differ: look again
            self.rotations.team_changed(session, team_id)  # members follow the team
            return created
        created = self.db.run(work)
        return self.get_team(team_id), created

    def get_team(self, team_id: str) -> dict[str, Any]:
        def work(session: Transaction) -> dict[str, Any]:
            row = self._team(session, team_id)
            return {"id": team_id, "members": users.team_members(session, team_id), "origin": row.origin,
                    "timezone": row.timezone, "working_hours": hours_to_json(hours_from_json(row.working_hours)),
                    **spec_to_json(spec_from_json(row.days_off)),
                    "min_available": coverage.minimum(session, team_id)}
        return self.db.read(work)

    def schedule(self, team_id: str) -> Schedule:
        """The team's schedule as the business-time clock reads it (the daemon's holidays
        and days off unless the team has its own)."""
        def work(session: Transaction) -> Schedule:
            row = self._team(session, team_id)
            return Schedule(row.timezone or "UTC", hours_from_json(row.working_hours),
                            days_off_of(spec_from_json(row.days_off), self.service.config.daemon.days_off))
        return self.db.read(work)

    def business_time(self, team_id: str, start: datetime, *, add: str | None = None,
                      end: datetime | None = None) -> dict[str, Any]:
        """``add``: the instant at which that much working time after ``start`` is used up
        (an SLA's due time); ``end``: the working time between ``start`` and ``end``."""
        if (add is None) == (end is None):
            raise UserInputError("give either add (a duration such as 8h) or end (an instant), not both or neither")
        start = ensure_aware(start, "start")
        schedule = self.schedule(team_id)
        out: dict[str, Any] = {"team": team_id, "start": format_utc(start),
                               "clock": "24/7" if schedule.round_the_clock else "working_hours"}
        if add is not None:
            try:
                duration = parse_duration(add)
            except ConfigError as exc:
                raise UserInputError(f"add: {exc}") from None
            due = add_working_time(schedule, start, duration)
            return {**out, "add": add, "add_seconds": int(duration.total_seconds()), "due": format_utc(due)}
        assert end is not None
        end = ensure_aware(end, "end")
        spent = working_time(schedule, start, end)
        return {**out, "end": format_utc(end), "working_seconds": int(spent.total_seconds())}

    @staticmethod
    def _team(session: Transaction, team_id: str) -> Any:
        row = users.team(session, team_id)
        if row is None:
            raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
        return row

    @staticmethod
    def _user(session: Transaction, user_id: str) -> UserRow:
        row = users.by_id(session, user_id)
        if row is None:
            raise NotFoundInStore(f"no user {user_id!r}")
        return row

    def _user_json(self, session: Transaction, row: UserRow) -> dict[str, Any]:
        return {
            "id": row.id, "email": row.email, "timezone": row.timezone, "origin": row.origin,
            "replacement": row.replacement,
            "working_hours": hours_to_json(hours_from_json(row.working_hours)),
            **spec_to_json(spec_from_json(row.days_off)),
            "calendars": [{"id": link.id, "account": link.account, "calendar": link.calendar,
                           "sync_ooo": link.sync_ooo, "direction": link.direction, "state": link.state,
                           "last_success": format_utc(link.last_success_at), "last_error": link.last_error}
                          for link in users.enabled_links(session, row.id)],
        }
