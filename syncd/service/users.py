"""Users and their calendar links: made current from the config file at start, and shown."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from store import coverage, links, users
from store.db import Transaction
from store.models import UserRow
from syncd.config import TeamConfig, UserConfig
from syncd.config.model import CALENDAR_ZONE
from syncd.core.daysoff import spec_to_json
from syncd.core.errors import NotFoundInStore
from syncd.core.hours import hours_to_json
from syncd.core.time import format_utc
from syncd.service import seats
from syncd.service.hours import HoursOperations

__all__ = ["CONFIG_GROUP", "UserOperations"]

# The config's users are written at start this many at a time: each group's rows, links and
# status rows are read in three queries and its writes flushed together.
CONFIG_GROUP = 1000


class UserOperations(HoursOperations):
    def prepare(self) -> None:
        """Migrate the schema and make the users and links of the config file current."""
        self.db.migrate()
        self.db.run(self._apply_config, what="applying the config")

    def _apply_config(self, session: Transaction) -> None:
        self.db.startup_lock(session)  # replicas starting together: one after the other
        now = self.clock()
        ordered = sorted(self.config.users, key=lambda u: u.id)  # status rows are locked in id order
        for start in range(0, len(ordered), CONFIG_GROUP):
            group = ordered[start:start + CONFIG_GROUP]
            known = users.known(session, [u.id for u in group])
            rows = [self._upsert_row(session, user, now, "config", known) for user in group]
            known.add_new_links(session)
            for row, same_rules in rows:
                self._follow_rules(session, row, now, same_rules, known)
            session.flush()
        for team in self.config.teams:
            self._apply_team(session, team, now)
        users.disable_links_not_in(session, {(u.id, c.account, c.calendar) for u in self.config.users
                                             for c in u.calendars})

    def _apply_team(self, session: Transaction, team: TeamConfig, now: datetime) -> None:
        """A team of the config file: its members and schedule as written there."""
        before = users.team_members(session, team.id) if users.team_exists(session, team.id) else None
        schedule = users.TeamSchedule(team.timezone, hours_to_json(team.working_hours) or None,
                                      spec_to_json(team.days_off) or None)
        users.put_team(session, team.id, team.members, now, schedule=schedule, origin="config")
        coverage.set_minimum(session, team.id, team.min_available)
        if before != sorted(team.members):
            coverage.mark_changed(session, team.id)
        if before != sorted(team.members):
            seats.team_changed(session, team.id, now)  # its rotations' seats follow

    def upsert_user(self, session: Transaction, user: UserConfig, now: datetime, origin: str = "config") -> UserRow:
        """Create or update a user and their calendar links (from the config file or the API)."""
        row, same_rules = self._upsert_row(session, user, now, origin)
        self._follow_rules(session, row, now, same_rules)
        return row

    def _upsert_row(self, session: Transaction, user: UserConfig, now: datetime, origin: str,
                    known: users.Known | None = None) -> tuple[UserRow, bool]:
        """The user's row and links; whether what decides their status besides their blocks is
        unchanged. ``known``: what the store holds of a group with this user (see `users.known`)."""
        return users.upsert(
            session, user_id=user.id, email=user.email,
            timezone=None if user.timezone == CALENDAR_ZONE else user.timezone,
            hours=hours_to_json(user.working_hours), origin=origin, now=now, days_off=spec_to_json(user.days_off),
            replacement=user.replacement,
            hours_from=user.working_hours_from,
            links=[users.LinkSpec(c.account, c.calendar, c.sync_ooo, c.direction) for c in user.calendars],
            known=known)

    def _follow_rules(self, session: Transaction, row: UserRow, now: datetime, same_rules: bool,
                      known: users.Known | None = None) -> None:
        """The hours the user's status follows, and their status row, after ``_upsert_row``."""
        theirs = None if known is None else known.links.get(row.id, [])
        same_rules = not self.choose_hours(session, row, theirs) and same_rules
        # A staged transition stays unless what decides the status changed (zone, hours, days off).
        self.recorder.load(session, row, now, keep_staged=same_rules, known=known)

    def user_timezone(self, user_id: str) -> str:
        return self.db.run(lambda s: self._user(s, user_id).timezone)

    def links(self) -> list[dict[str, Any]]:
        """Every calendar link with its sync state, for `syncd links` and the API."""
        def work(session: Transaction) -> list[dict[str, Any]]:
            now = self.clock()
            return [{"id": r.id, "user": r.user_id, "account": r.account, "calendar": r.calendar,
                     "direction": r.direction, "enabled": r.enabled, "sync_ooo": r.sync_ooo, "state": r.state,
                     "last_sync": format_utc(r.last_sync_at), "last_success": format_utc(r.last_success_at),
                     "last_error": r.last_error, "failures": r.failures, "held_deletions": r.held_deletions,
                     "next_poll": format_utc(r.next_poll_at),
                     # what the calendar says of its owner's working hours (working_hours_from = "calendar")
                     "working_hours": {"state": r.hours_state, "problem": r.hours_problem},
                     # the replica syncing it now (or that synced it last), and how stale its data is
                     "owner": r.lease_owner,
                     "syncing": r.lease_expires is not None and r.lease_expires > now,
                     "lag_s": None if r.last_success_at is None
                     else round((now - r.last_success_at).total_seconds(), 1)}
                    for r in links.all_links(session)]
        return self.db.run(work)

    def release_deletions(self, link_id: int) -> str:
        """The operator confirms that held deletions are real: the next sync applies them."""
        def work(session: Transaction) -> str:
            row = links.release_deletions(session, link_id, self.clock())
            if row is None:
                raise NotFoundInStore(f"no calendar link {link_id}; `syncd links` lists them")
            return f"{row.user_id}/{row.account}/{row.calendar}"
        return self.db.run(work)

    def stuck_links(self, overdue: timedelta = timedelta(minutes=15)) -> list[str]:
        """Enabled links whose poll is long overdue: the scheduler is not keeping up or is stuck."""
        def work(session: Transaction) -> list[str]:
            return [f"{r.user_id}/{r.account}/{r.calendar}" for r in links.overdue(session, self.clock() - overdue)]
        return self.db.read(work)
