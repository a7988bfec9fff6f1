"""The assignment and rotation engine's I/O shell: members, counts and assignments in the store.

The choice itself is `syncd.core.rotation` (pure). Each operation here is one transaction. An
assignment locks its rotation's row, so concurrent assigns are serialised per rotation and
never choose on stale counts. SQLite serialises every writer anyway. The idempotency key is
unique per rotation, so a retried request gets the same member back.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from store import rotations as stored
from store import users
from store.db import Transaction
from store.models import AssignmentRow, RotationRow
from syncd.core import rotation as rot
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.time import ensure_aware, format_utc
from syncd.service import Syncd
from syncd.service.seats import sync_seats, team_changed

__all__ = ["Assignment", "NobodyEligible", "RotationEngine"]

RECENT_WINDOW = timedelta(days=7)
LOOKUP_CHUNK = 4  # members whose status is looked up at a time while picking


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


class RotationEngine:
    def __init__(self, service: Syncd, *, recent_window: timedelta = RECENT_WINDOW,
                 rng: random.Random | None = None) -> None:
        self.service = service
        self.db = service.db
        self.recent_window = recent_window
        self.rng = rng or random.Random()

    # -- rotations and members -----------------------------------------------------------
    def create(self, name: str, *, members: Sequence[str] = (), teams: Sequence[str] = (),
               policy: str = "reset") -> dict[str, Any]:
        if policy not in ("reset", "calibrate"):
            raise UserInputError(f"policy must be 'reset' or 'calibrate', not {policy!r}")
        if not name.strip():
            raise UserInputError("a rotation needs a name")

        def work(session: Transaction) -> str:
            now = self.service.clock()
            row = stored.create(session, name.strip(), policy, now)
            for user_id in dict.fromkeys(members):
                self._need_user(session, user_id)
                stored.add_direct(session, row.id, user_id=user_id)
            for team_id in dict.fromkeys(teams):
                if not users.team_exists(session, team_id):
                    raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
                stored.add_direct(session, row.id, team_id=team_id)
            self._sync_seats(session, row, now)
            return row.id
        return self.get(self.db.run(work))

    def get(self, rotation_id: str, at: datetime | None = None) -> dict[str, Any]:
        def work(session: Transaction) -> dict[str, Any]:
            row = self._rotation(session, rotation_id)
            members, choice = self._members(session, row, at)
            why = {i.user_id: i for i in choice.ineligible}
            direct = stored.direct_members(session, row.id)
            return {
                "id": row.id, "name": row.name, "policy": row.policy,
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
        def work(session: Transaction) -> None:
            seat = stored.seat(session, rotation_id, user_id)
            if seat is None:
                self._rotation(session, rotation_id)
                raise NotFoundInStore(f"{user_id} is not a member of rotation {rotation_id}")
            seat.available = available
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
        if not idempotency_key or len(idempotency_key) > 300:
            raise UserInputError("idempotency_key is required (at most 300 characters): the same key "
                                 "returns the same member")
        start = ensure_aware(start, "start") if start else None
        end = ensure_aware(end, "end") if end else None
        if start and end and end <= start:
            raise UserInputError("end must be after start")

        def work(session: Transaction) -> Assignment:
            row = self._rotation(session, rotation_id, lock=True)
            earlier = stored.assignment_by_key(session, row.id, idempotency_key)
            if earlier is not None:
                return _assignment(earlier, replayed=True)
            members, choice = self._pick(session, row, start)
            if choice.member is None:
                raise NobodyEligible(_nobody_text(row, choice), choice)
            credits = rot.away_credits(members, cast(rot.Policy, row.policy)).items()
            made = stored.add_assignment(session, row.id, choice.member, idempotency_key, start, end,
                                         self.service.clock(), credits)
            return _assignment(made, replayed=False)
        return self.db.run(work, what="assignment")

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

    def _stats(self, session: Transaction, row: RotationRow) -> list[rot.Member]:
        """Every seat with its counts, status not yet known (taken as available)."""
        per_user = stored.stats(session, row, self.service.clock() - self.recent_window)
        members = []
        for seat in stored.seats(session, row.id).values():
            handed, recent, last = per_user.get(seat.user_id, (0, 0, None))
            members.append(rot.Member(user_id=seat.user_id, toggled_on=seat.available, status="available",
                                      count=handed + seat.baseline + seat.credit, recent=recent,
                                      last_assigned_at=last))
        return members

    def _with_status(self, session: Transaction, members: Sequence[rot.Member], at: datetime | None
                     ) -> list[rot.Member]:
        statuses = self.service.statuses_in(session, [m.user_id for m in members], at)
        out = []
        for m in members:
            info = statuses[m.user_id]
            away = info.status != "available"
            out.append(replace(m, status=info.status, away_reason=info.reason if away else None,
                               available_at=info.until if away else None))
        return out

    def _members(self, session: Transaction, row: RotationRow,
                 at: datetime | None) -> tuple[list[rot.Member], rot.Choice]:
        members = self._with_status(session, self._stats(session, row), at)
        return members, rot.choose(members, self.rng)

    def _pick(self, session: Transaction, row: RotationRow,
              at: datetime | None) -> tuple[list[rot.Member], rot.Choice]:
        """The choice for an assignment, looking up members' status only as far down the
        preference order as needed (the whole rotation under `calibrate`, which credits the
        away members, or when nobody turns out to be eligible)."""
        if row.policy == "calibrate":
            return self._members(session, row, at)
        ranked = [m for m in rot.preference_order(self._stats(session, row), self.rng) if m.toggled_on]
        for first in range(0, len(ranked), LOOKUP_CHUNK):
            for member in self._with_status(session, ranked[first:first + LOOKUP_CHUNK], at):
                if rot.ineligibility(member) is None:
                    return [], rot.Choice(member.user_id, (member.user_id,), (), None)
        return self._members(session, row, at)


def _member_json(m: rot.Member, why: rot.Ineligible | None) -> dict[str, Any]:
    return {"user": m.user_id, "available": m.toggled_on, "status": m.status, "assignments": round(m.count, 3),
            "recent": m.recent, "last_assigned_at": format_utc(m.last_assigned_at), "eligible": why is None,
            "reason": why.reason if why else None, "available_at": format_utc(why.available_at) if why else None}


def _assignment(row: AssignmentRow, *, replayed: bool) -> Assignment:
    return Assignment(row.id, row.rotation_id, row.user_id, row.start, row.end, row.created_at, replayed)


def _nobody_text(row: RotationRow, choice: rot.Choice) -> str:
    reasons = ", ".join(f"{i.user_id} ({i.reason})" for i in choice.ineligible) or "it has no members"
    when = f"; the first is expected back at {format_utc(choice.next_available_at)}" \
        if choice.next_available_at else ""
    return f"nobody in rotation {row.name!r} can take this: {reasons}{when}"
