"""The assignment and rotation engine's I/O shell: members, counts and assignments in the store.

The choice itself is `syncd.core.rotation` (pure). Each operation here is one transaction. An
assignment locks its rotation's row, so concurrent assigns are serialised per rotation and
never choose on stale counts, nor take a member past their cap. SQLite serialises every
writer anyway. The idempotency key is unique per rotation, so a retried request gets the same
member back. What the choice is read from is kept between assignments, while the rotation's
revision says it is unchanged (`syncd.service.rotation_counts`), and members' status comes
from the kept status answers: the transaction, serial by design, is little more than the lock,
the key's lookup and the insert.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from store import rotations as stored
from store import users
from store.db import Transaction
from store.models import AssignmentRow, RotationRow
from syncd.core import rotation as rot
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.time import ensure_aware, format_duration, format_utc
from syncd.service import Syncd
from syncd.service.rotation_counts import RotationCounts, SeatFacts, Terms, advance, copied, members_at
from syncd.service.seats import sync_seats, team_changed

__all__ = ["MAX_CAP", "MAX_CAP_WINDOW", "MAX_WEIGHT", "Assignment", "AssignmentRequest", "NobodyEligible",
           "RotationEngine", "assignment_request"]

RECENT_WINDOW = timedelta(days=7)
LOOKUP_CHUNK = 4  # members whose status is looked up at a time while picking
MAX_WEIGHT = 1000.0  # a weight is relative; beyond this it is a typo
MAX_CAP = 10_000  # per cap window
MIN_CAP_WINDOW, MAX_CAP_WINDOW = timedelta(minutes=1), timedelta(days=90)
SEAT_TERMS = ("available", "weight", "cap")  # what a member's PATCH may change


class NobodyEligible(UserInputError):
    """No member can take the assignment; carries the reasons and when that may change."""

    def __init__(self, message: str, choice: rot.Choice) -> None:
        super().__init__(message)
        self.choice = choice


@dataclass(frozen=True)
class Assignment:
    id: str
    rotation: str
    member: str
    start: datetime | None
    end: datetime | None
    created_at: datetime
    replayed: bool  # an earlier request with the same idempotency key

    def as_json(self) -> dict[str, Any]:
        return {"assignment_id": self.id, "rotation": self.rotation, "member": self.member,
                "start": format_utc(self.start), "end": format_utc(self.end),
                "created_at": format_utc(self.created_at), "replayed": self.replayed}


@dataclass(frozen=True)
class AssignmentRequest:
    idempotency_key: str
    start: datetime | None = None
    end: datetime | None = None


def assignment_request(idempotency_key: str, start: datetime | None = None, end: datetime | None = None
                       ) -> AssignmentRequest:
    """A request for an assignment, checked."""
    if not idempotency_key or len(idempotency_key) > 300:
        raise UserInputError("idempotency_key is required (at most 300 characters): the same key "
                             "returns the same member")
    start = ensure_aware(start, "start") if start else None
    end = ensure_aware(end, "end") if end else None
    if start and end and end <= start:
        raise UserInputError("end must be after start")
    return AssignmentRequest(idempotency_key, start, end)


class RotationEngine:
    def __init__(self, service: Syncd, *, recent_window: timedelta = RECENT_WINDOW,
                 rng: random.Random | None = None) -> None:
        self.service = service
        self.db = service.db
        self.recent_window = recent_window
        self.rng = rng or random.Random()
        self.counts = RotationCounts(recent_window)

    # -- rotations and members -----------------------------------------------------------
    def create(self, name: str, *, members: Sequence[str] = (), teams: Sequence[str] = (),
               policy: str = "reset", cap_window: timedelta | None = None,
               terms: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """A rotation; ``terms`` gives members their ``weight`` and ``cap`` (by user id)."""
        if policy not in ("reset", "calibrate"):
            raise UserInputError(f"policy must be 'reset' or 'calibrate', not {policy!r}")
        if not name.strip():
            raise UserInputError("a rotation needs a name")
        _check_cap_window(cap_window)
        terms = terms or {}
        for user_id, given in terms.items():
            if user_id not in members:
                raise UserInputError(f"weight or cap given for {user_id}, who is not among the members")
            _check_terms(given, cap_window, user_id)

        def work(session: Transaction) -> str:
            now = self.service.clock()
            row = stored.create(session, name.strip(), policy, now)
            row.cap_window_s = int(cap_window.total_seconds()) if cap_window else None
            for user_id in dict.fromkeys(members):
                self._need_user(session, user_id)
                stored.add_direct(session, row.id, user_id=user_id)
            for team_id in dict.fromkeys(teams):
                if not users.team_exists(session, team_id):
                    raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
                stored.add_direct(session, row.id, team_id=team_id)
            self._sync_seats(session, row, now)
            seats = stored.seats(session, row.id)
            for user_id, given in terms.items():  # nobody is counted yet: no load to keep
                seats[user_id].weight = float(given.get("weight", 1.0))
                seats[user_id].cap = given.get("cap")
            return row.id
        return self.get(self.db.run(work))

    def set_cap_window(self, rotation_id: str, cap_window: timedelta | None) -> dict[str, Any]:
        """Change the window members' caps count in; None (no window) needs every cap removed first."""
        _check_cap_window(cap_window)

        def work(session: Transaction) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            capped = sorted(u for u, seat in stored.seats(session, row.id).items() if seat.cap is not None)
            if cap_window is None and capped:
                raise UserInputError(f"members {', '.join(capped)} have a cap, which counts within the cap "
                                     "window; remove their caps first (PATCH …/members/{user} {\"cap\": null})")
            row.cap_window_s = int(cap_window.total_seconds()) if cap_window else None
        self.db.run(work)
        return self.get(rotation_id)

    def get(self, rotation_id: str, at: datetime | None = None) -> dict[str, Any]:
        def work(session: Transaction) -> dict[str, Any]:
            row = self._rotation(session, rotation_id)
            members, choice = self._members(session, row, at)
            why = {i.user_id: i for i in choice.ineligible}
            direct = stored.direct_members(session, row.id)
            return {
                "id": row.id, "name": row.name, "policy": row.policy,
                "cap_window": format_duration(window) if (window := _window(row)) else None,
                "counts_since": format_utc(row.counts_since),
                "users": sorted(m.user_id for m in direct if m.user_id),
                "teams": sorted(m.team_id for m in direct if m.team_id),
                "members": [_member_json(m, why.get(m.user_id)) for m in sorted(members, key=lambda m: m.user_id)],
                "next": choice.member,
            }
        return self.db.read(work)

    def add_member(self, rotation_id: str, user_id: str) -> dict[str, Any]:
        def work(session: Transaction) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            self._need_user(session, user_id)
            if stored.add_direct(session, row.id, user_id=user_id):
                self._sync_seats(session, row, self.service.clock())
        self.db.run(work)
        return self.get(rotation_id)

    def remove_member(self, rotation_id: str, user_id: str) -> dict[str, Any]:
        def work(session: Transaction) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            if not stored.drop_direct(session, row.id, user_id):
                if user_id in stored.effective_users(session, row.id):
                    raise UserInputError(f"{user_id} is in rotation {row.id} through a team; remove them from "
                                         "the team, or toggle them unavailable in the rotation")
                raise NotFoundInStore(f"{user_id} is not a member of rotation {row.id}")
            self._sync_seats(session, row, self.service.clock())
        self.db.run(work)
        return self.get(rotation_id)

    def set_available(self, rotation_id: str, user_id: str, available: bool) -> dict[str, Any]:
        return self.update_member(rotation_id, user_id, {"available": available})

    def update_member(self, rotation_id: str, user_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a member's ``available`` toggle, ``weight`` or ``cap`` (None removes it).

        A new weight applies from now on: the member's count is rescaled so their load stays
        where it is, and they are neither flooded nor starved while the others catch up.
        """
        unknown = sorted(set(changes) - set(SEAT_TERMS))
        if unknown:
            raise UserInputError(f"a member's {', '.join(unknown)} cannot be changed; only "
                                 f"{', '.join(SEAT_TERMS)}")

        def work(session: Transaction) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            seat = stored.seat(session, rotation_id, user_id)
            if seat is None:
                raise NotFoundInStore(f"{user_id} is not a member of rotation {rotation_id}")
            _check_terms(changes, _window(row), user_id)
            if "available" in changes:
                seat.available = bool(changes["available"])
            if "cap" in changes:
                seat.cap = changes["cap"]
            if "weight" in changes and float(changes["weight"]) != seat.weight:
                handed = stored.handed(session, row).get(user_id, 0)
                count = handed + seat.baseline + seat.credit
                seat.baseline = rot.reweighed_count(count, seat.weight, float(changes["weight"])) - handed - seat.credit
                seat.weight = float(changes["weight"])
        self.db.run(work)
        return self.get(rotation_id)

    def ids(self) -> list[str]:
        return self.db.read(stored.ids)

    def team_changed(self, session: Transaction, team_id: str) -> None:
        """A team's members changed (or one was deleted): its rotations' seats follow."""
        team_changed(session, team_id, self.service.clock())

    def _sync_seats(self, session: Transaction, rotation: RotationRow, now: datetime) -> None:
        sync_seats(session, rotation, now)

    # -- choosing ------------------------------------------------------------------------
    def preview(self, rotation_id: str, start: datetime | None = None) -> rot.Choice:
        def work(session: Transaction) -> rot.Choice:
            return self._members(session, self._rotation(session, rotation_id), start)[1]
        return self.db.read(work)

    def assign(self, rotation_id: str, idempotency_key: str, *, start: datetime | None = None,
               end: datetime | None = None) -> Assignment:
        made = self.assign_many(rotation_id, [assignment_request(idempotency_key, start, end)])[0]
        if isinstance(made, NobodyEligible):
            raise made
        return made

    def assign_many(self, rotation_id: str, requests: Sequence[AssignmentRequest]
                    ) -> list[Assignment | NobodyEligible]:
        """The requests in their order, in one transaction: each is answered as if made alone
        after the ones before it, which it sees. Requests arriving together share the lock,
        the reading and the commit that each would otherwise pay for (`syncd.api.assign_desk`)."""
        stamp = self.db.change_stamp()  # before the transaction: members' status may come from kept answers
        made: list[tuple[Terms, Terms, datetime, dict[str, SeatFacts], datetime]] = []

        def work(session: Transaction) -> list[Assignment | NobodyEligible]:
            made.clear()
            row = self._rotation(session, rotation_id, lock=True)
            window, policy = _window(row), cast(rot.Policy, row.policy)
            started = self.service.clock()
            since, facts = self._facts(session, row, started)
            out: list[Assignment | NobodyEligible] = []
            inserted, credited = 0, False
            for request in requests:
                now = self.service.clock()
                members, choice = self._pick(session, row, members_at(facts, now, self.recent_window, window),
                                             now, request.start, stamp)
                # The key is looked up only when the insert finds it taken (or nobody can take
                # it): a fresh key, the usual case, costs the serial transaction no query.
                if choice.member is None:
                    earlier = stored.assignment_by_key(session, row.id, request.idempotency_key)
                    out.append(_assignment(earlier, replayed=True) if earlier is not None
                               else NobodyEligible(_nobody_text(row, choice), choice))
                    continue
                credits = list(rot.away_credits(members, policy, now, window).items())
                added = stored.add_assignment(session, row.id, choice.member, request.idempotency_key,
                                              request.start, request.end, now, credits)
                if added is None:  # a retried request: the member it got then
                    earlier = stored.assignment_by_key(session, row.id, request.idempotency_key)
                    assert earlier is not None
                    out.append(_assignment(earlier, replayed=True))
                    continue
                advance(facts, choice.member, now, row.counts_since, credits)
                inserted, credited = inserted + 1, credited or bool(credits)
                out.append(_assignment(added, replayed=False))
            # Each insert's trigger moved the revision by one; credits move it once per seat.
            revision = stored.revision(session, row.id) if credited else row.revision + inserted
            made.append((_terms(row), (revision, row.counts_since, row.cap_window_s, row.policy), since, facts,
                         started))
            return out
        answers = self.db.run(work, what="assignment")
        if made:  # committed: what is kept follows
            self.counts.replace(rotation_id, *made[0])
        return answers

    def eligible(self, user_ids: Sequence[str], at: datetime | None = None) -> dict[str, Any]:
        """Which of these users may be given work now (or at ``at``): the auto-assignment question."""
        at = ensure_aware(at, "at") if at else None

        def work(session: Transaction) -> dict[str, Any]:
            eligible, ineligible = [], []
            for user_id in dict.fromkeys(user_ids):
                if users.by_id(session, user_id) is None:
                    ineligible.append({"user": user_id, "reason": "unknown_user", "available_at": None,
                                       "route_to": None})
                    continue
                info = self.service.status_in(session, user_id, at)
                if info.status == "available":
                    eligible.append(user_id)
                else:
                    ineligible.append({"user": user_id, "reason": info.reason, "available_at": format_utc(info.until)})
            # Who takes the work of those who cannot: their routes, at the same instant.
            away = [str(i["user"]) for i in ineligible if "route_to" not in i]
            routes = self.service.routes_in(session, away, at)
            for item in ineligible:
                if "route_to" not in item:
                    item["route_to"] = routes[str(item["user"])].route_to
            return {"eligible": eligible, "ineligible": ineligible}
        return self.db.read(work)

    # -- internals -----------------------------------------------------------------------
    def _rotation(self, session: Transaction, rotation_id: str, *, lock: bool = False) -> RotationRow:
        row = stored.get(session, rotation_id, lock=lock)
        if row is None:
            raise NotFoundInStore(f"no rotation {rotation_id!r}; GET /v1/rotations lists them")
        return row

    @staticmethod
    def _need_user(session: Transaction, user_id: str) -> None:
        if users.by_id(session, user_id) is None:
            raise NotFoundInStore(f"no user {user_id!r}; register them with PUT /v1/users/{user_id}")

    def _facts(self, session: Transaction, row: RotationRow, now: datetime) -> tuple[datetime, dict[str, SeatFacts]]:
        """A copy of the seats' facts, from ``since`` on, as kept or read (and then kept)."""
        window = _window(row)
        kept = self.counts.copy(row.id, _terms(row), now, window)
        if kept is not None:
            return kept
        since = self.counts.horizon(now, window)
        counts, times = stored.counts(session, row), stored.times_since(session, row.id, since)
        facts = {}
        for user_id, seat in stored.seats(session, row.id).items():
            handed, last = counts.get(user_id, (0, None))
            facts[user_id] = SeatFacts(toggled_on=seat.available, weight=seat.weight, cap=seat.cap,
                                       extra=seat.baseline + seat.credit, handed=handed, last=last,
                                       times=times.get(user_id, []))
        self.counts.keep(row.id, _terms(row), since, facts)
        return since, copied(facts)

    def _stats(self, session: Transaction, row: RotationRow, now: datetime) -> list[rot.Member]:
        """Every seat with its counts, weight and cap, status not yet known (taken as available)."""
        window = _window(row)
        kept = self.counts.members(row.id, _terms(row), now, window)
        return kept if kept is not None else members_at(self._facts(session, row, now)[1], now,
                                                        self.recent_window, window)

    def _with_status(self, session: Transaction, members: Sequence[rot.Member], at: datetime | None,
                     stamp: int | None = None) -> list[rot.Member]:
        ids = [m.user_id for m in members]
        statuses = self.service.current_statuses_in(session, ids, stamp) if at is None \
            else self.service.statuses_in(session, ids, at)
        out = []
        for m in members:
            info = statuses[m.user_id]
            away = info.status != "available"
            out.append(replace(m, status=info.status, away_reason=info.reason if away else None,
                               available_at=info.until if away else None))
        return out

    def _members(self, session: Transaction, row: RotationRow, at: datetime | None,
                 stamp: int | None = None) -> tuple[list[rot.Member], rot.Choice]:
        now = self.service.clock()
        members = self._with_status(session, self._stats(session, row, now), at, stamp)
        return members, rot.choose(members, self.rng, now, _window(row))

    def _pick(self, session: Transaction, row: RotationRow, members: list[rot.Member], now: datetime,
              at: datetime | None, stamp: int | None) -> tuple[list[rot.Member], rot.Choice]:
        """The choice for an assignment among ``members`` (their counts at ``now``), looking up
        members' status only as far down the preference order as needed (the whole rotation
        under `calibrate`, which credits the away members, or when nobody turns out to be
        eligible)."""
        window = _window(row)
        if row.policy != "calibrate":
            ranked = [m for m in rot.preference_order(members, self.rng)
                      if m.toggled_on and rot.slot_frees_at(m, now, window) is None]
            for first in range(0, len(ranked), LOOKUP_CHUNK):
                for member in self._with_status(session, ranked[first:first + LOOKUP_CHUNK], at, stamp):
                    if rot.ineligibility(member, now, window) is None:
                        return [], rot.Choice(member.user_id, (member.user_id,), (), None)
        members = self._with_status(session, members, at, stamp)
        return members, rot.choose(members, self.rng, now, window)


def _terms(row: RotationRow) -> Terms:
    """What the kept counts of ``row`` depend on besides its seats and assignments."""
    return row.revision, row.counts_since, row.cap_window_s, row.policy


def _window(row: RotationRow) -> timedelta | None:
    return timedelta(seconds=row.cap_window_s) if row.cap_window_s else None


def _check_cap_window(window: timedelta | None) -> None:
    if window is not None and not MIN_CAP_WINDOW <= window <= MAX_CAP_WINDOW:
        raise UserInputError(f"cap_window must be from {format_duration(MIN_CAP_WINDOW)} to "
                             f"{format_duration(MAX_CAP_WINDOW)}, not {format_duration(window)}")


def _check_terms(terms: Mapping[str, Any], window: timedelta | None, user_id: str) -> None:
    """A member's weight and cap: clear refusals, since they steer who gets work."""
    weight = terms.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
            or not 0 < weight <= MAX_WEIGHT:
        raise UserInputError(f"{user_id}: weight must be a number above 0 and at most {MAX_WEIGHT:g}, "
                             f"not {weight!r}")
    cap = terms.get("cap")
    if cap is None:
        return
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_CAP:
        raise UserInputError(f"{user_id}: cap must be a whole number from 1 to {MAX_CAP}, not {cap!r}")
    if window is None:
        raise UserInputError(f"{user_id}: a cap counts assignments within the rotation's cap_window, and this "
                             "rotation has none; give one (e.g. \"cap_window\": \"1d\")")


def _member_json(m: rot.Member, why: rot.Ineligible | None) -> dict[str, Any]:
    return {"user": m.user_id, "available": m.toggled_on, "status": m.status, "assignments": round(m.count, 3),
            "weight": m.weight, "cap": m.cap,
            "recent": m.recent, "last_assigned_at": format_utc(m.last_assigned_at), "eligible": why is None,
            "reason": why.reason if why else None, "available_at": format_utc(why.available_at) if why else None}


def _assignment(row: AssignmentRow, *, replayed: bool) -> Assignment:
    return Assignment(row.id, row.rotation_id, row.user_id, row.start, row.end, row.created_at, replayed)


def _nobody_text(row: RotationRow, choice: rot.Choice) -> str:
    reasons = ", ".join(f"{i.user_id} ({i.reason})" for i in choice.ineligible) or "it has no members"
    when = f"; the first is expected back at {format_utc(choice.next_available_at)}" \
        if choice.next_available_at else ""
    return f"nobody in rotation {row.name!r} can take this: {reasons}{when}"
