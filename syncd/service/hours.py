"""Working hours kept in calendars: recording what each link's calendar said, choosing the
hours each user's status follows, and re-evaluating the status when they change.

A user with ``working_hours_from = "calendar"`` follows the hours of the first linked
calendar (in link order) that provides them; otherwise, or while none does, the config's
``working_hours`` in their ``timezone``. A change of the chosen hours is an automatic
transition at the instant it is recorded, published with reason ``working_hours`` when it
changes the status. What a calendar cannot give (a provider without working hours, hours
that cannot be read) is logged once per link, not on every reading.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from store import hours as stored
from store import users
from store.db import Transaction
from store.models import CalendarLinkRow, UserRow
from syncd.core.errors import BadEventData
from syncd.core.hours import CONFIG_SOURCE, CalendarHours, choose_hours, hours_from_json, hours_to_json
from syncd.service.base import ServiceBase

__all__ = ["HoursOperations", "Reading"]

log = logging.getLogger(__name__)

# What one link's calendar answered: hours, None (it keeps none), `UNSUPPORTED` (the provider
# has no working hours), or the error asking raised.
Reading = CalendarHours | None | str | Exception
UNSUPPORTED = stored.UNSUPPORTED


class HoursOperations(ServiceBase):
    def source_name(self, account: str) -> str:
        """``<provider>:<account>``, as users and operators see where hours came from."""
        found = self.config.accounts.get(account)
        return f"{found.provider if found else 'unknown'}:{account}"

    def choose_hours(self, session: Transaction, user: UserRow,
                     links: Sequence[CalendarLinkRow] | None = None) -> bool:
        """Set the hours ``user``'s status follows from what their links last read (``links``:
        all of theirs, already read); whether they (or the zone taken from the calendar) changed."""
        found = stored.readings_of(session, user.id) if links is None else stored.readings_from(links)
        readings = [(self.source_name(r.account), r.hours) for r in found]
        chosen = choose_hours(hours_from_json(user.working_hours), user.timezone,
                              user.working_hours_from == "calendar", readings)
        zone_changed = False
        if chosen.source != CONFIG_SOURCE and user.timezone_from_calendar and user.timezone != chosen.timezone:
            user.timezone, zone_changed = chosen.timezone, True  # `timezone = "calendar"`: the mailbox's zone
        if chosen.source == CONFIG_SOURCE:
            changed = stored.set_effective(user, None, None, CONFIG_SOURCE)
        else:
            changed = stored.set_effective(user, hours_to_json(chosen.hours), chosen.timezone, chosen.source)
        return changed or zone_changed

    def record_hours(self, readings: Sequence[tuple[stored.DueReading, Reading]]) -> int:
        """Record what each link's calendar said and follow any change of a user's hours with
        their status, one transaction per user. Returns the number of status changes published."""
        by_user: dict[str, list[tuple[stored.DueReading, Reading]]] = {}
        for due, reading in readings:
            by_user.setdefault(due.user_id, []).append((due, reading))
        published = 0
        for user_id, theirs in by_user.items():
            published += self.db.run(lambda s, u=user_id, t=theirs: self._record_user(s, u, t),  # type: ignore[misc]
                                     what="recording working hours")
        return published

    def _record_user(self, session: Transaction, user_id: str,
                     readings: Sequence[tuple[stored.DueReading, Reading]]) -> int:
        user = self._user(session, user_id)
        now = self.clock()
        # Transitions under the hours in force so far come first, at their own instants.
        changes = len(self.recorder.advance(session, user, now))
        for due, reading in readings:
            state, found, problem = _classified(reading)
            before = stored.save_reading(session, due.link_id, state, found, problem, now)
            if before is not None and before != (state, problem):
                _log_once(due, self.source_name(due.account), state, problem)
        if self.choose_hours(session, user):
            log.info("user %s: working hours now from %s", user_id, user.hours_source,
                     extra={"user": user_id, "source": user.hours_source})
            changes += len(self.recorder.advance(session, user, now))
        return changes

    def users_with_hours(self, user_ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Users (all when none named) with their effective working hours, for `syncd users`."""
        def work(session: Transaction) -> list[dict[str, Any]]:
            rows = [self._user(session, u) for u in dict.fromkeys(user_ids)] or users.all_users(session)
            return [{"id": r.id, "email": r.email, "timezone": r.timezone, "origin": r.origin,
                     "working_hours_from": r.working_hours_from, "hours": self.hours_of(session, r)} for r in rows]
        return self.db.read(work)

    def working_hours(self, user_id: str) -> dict[str, Any]:
        """`hours_of` the user, in a transaction of its own."""
        return self.db.read(lambda s: self.hours_of(s, self._user(s, user_id)))

    def hours_of(self, session: Transaction, user: UserRow) -> dict[str, Any]:
        """The user's effective working hours as the API and the CLI show them."""
        if user.effective_hours is not None:
            hours, zone = hours_from_json(user.effective_hours), user.effective_hours_zone or user.timezone
        else:
            hours, zone = hours_from_json(user.working_hours), user.timezone
        return {"working_hours": hours_to_json(hours), "timezone": zone, "source": user.hours_source}


def _classified(reading: Reading) -> tuple[str, CalendarHours | None, str | None]:
    """(state, hours, problem) to store for one reading."""
    if isinstance(reading, CalendarHours):
        return stored.FOUND, reading, None
    if reading is None:
        return stored.NONE, None, None
    if isinstance(reading, str):
        return stored.UNSUPPORTED, None, "the provider keeps no working hours; the config's apply"
    first_line = (str(reading).splitlines() or [type(reading).__name__])[0][:300]
    if isinstance(reading, BadEventData):
        return stored.INVALID, None, f"unreadable working hours ({first_line}); the config's apply"
    return stored.ERROR, None, f"could not read working hours: {first_line}"


def _log_once(due: stored.DueReading, source: str, state: str, problem: str | None) -> None:
    """One line when what a link says of its hours changes kind (not on every reading)."""
    name = f"{due.user_id}/{due.account}/{due.calendar}"
    extra = {"user": due.user_id, "account": due.account, "link": due.link_id}
    if problem is None:
        log.info("link %s: working hours %s (%s)", name,
                 "read" if state == stored.FOUND else "not kept in this calendar", source, extra=extra)
    elif state in (stored.INVALID, stored.ERROR):
        log.warning("link %s: %s", name, problem, extra=extra)
    else:
        log.info("link %s: %s", name, problem, extra=extra)
