"""The assignment and rotation engine's I/O shell: members, counts and assignments in the store.

The choice itself is `syncd.rotation` (pure). Each operation here is one transaction. An
assignment locks its rotation's row, so concurrent assigns are serialised per rotation and
never choose on stale counts. SQLite serialises every writer anyway. The idempotency key is
unique per rotation, so a retried request gets the same member back.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from store.models import AssignmentRow, RotationMemberRow, RotationRow, RotationSeatRow, TeamMemberRow, TeamRow, UserRow
from syncd.core import rotation as rot
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.time import ensure_aware, format_utc
from syncd.service import Syncd

__all__ = ["Assignment", "NobodyEligible", "RotationEngine", "rotations_with_team", "sync_seats"]

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


def effective_users(session: Session, rotation_id: str) -> set[str]:
    """Direct members plus the current members of member teams."""
    direct = session.scalars(select(RotationMemberRow.user_id).where(
        RotationMemberRow.rotation_id == rotation_id, RotationMemberRow.user_id.is_not(None)))
    via_teams = session.scalars(select(TeamMemberRow.user_id).join(
        RotationMemberRow, RotationMemberRow.team_id == TeamMemberRow.team_id).where(
        RotationMemberRow.rotation_id == rotation_id))
    return {u for u in direct if u} | set(via_teams)


def sync_seats(session: Session, rotation: RotationRow, now: datetime,
               counts: dict[str, float] | None = None) -> None:
    """Make the rotation's seats match its members. Someone new joining resets every count
    (policy ``reset``), or starts the newcomer at the average (``calibrate``)."""
    wanted = effective_users(session, rotation.id)
    seats = {s.user_id: s for s in session.scalars(select(RotationSeatRow).where(
        RotationSeatRow.rotation_id == rotation.id))}
    for gone in set(seats) - wanted:
        session.delete(seats.pop(gone))
    joining = wanted - set(seats)
    if not joining:
        return
    policy = cast(rot.Policy, rotation.policy)
    if policy == "reset":
        rotation.counts_since = now
        # Assignments made at this very instant (clocks have whole seconds) are still at or after
        # counts_since: the baseline cancels them, so every count really starts from zero.
        handed = _handed(session, rotation)
        for user_id, seat in seats.items():
            seat.baseline, seat.credit = -float(handed.get(user_id, 0)), 0.0
        start = 0.0
    else:
        current = counts if counts is not None else _counts(session, rotation, now)
        members = [rot.Member(u, True, "available", current.get(u, 0.0)) for u in seats]
        start = rot.starting_count(members, policy)
        handed = _handed(session, rotation)
    for user_id in sorted(joining):  # a returning member's earlier assignments are in `start` already
        session.add(RotationSeatRow(rotation_id=rotation.id, user_id=user_id, available=True,
                                    baseline=start - handed.get(user_id, 0), credit=0.0, joined_at=now))
    session.flush()


def _handed(session: Session, rotation: RotationRow) -> dict[str, int]:
    """Assignments per user since the rotation's counts were last reset."""
    return dict(session.execute(select(AssignmentRow.user_id, func.count()).where(
        AssignmentRow.rotation_id == rotation.id, AssignmentRow.created_at >= rotation.counts_since)
        .group_by(AssignmentRow.user_id)).all())


def _counts(session: Session, rotation: RotationRow, now: datetime) -> dict[str, float]:
    seats = session.scalars(select(RotationSeatRow).where(RotationSeatRow.rotation_id == rotation.id))
    handed = _handed(session, rotation)
    return {s.user_id: handed.get(s.user_id, 0) + s.baseline + s.credit for s in seats}


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

        def work(session: Session) -> str:
            now = self.service.clock()
            row = RotationRow(id=uuid.uuid4().hex, name=name.strip(), policy=policy, counts_since=now,
                              created_at=now)
            session.add(row)
            session.flush()
            for user_id in dict.fromkeys(members):
                self._need_user(session, user_id)
                session.add(RotationMemberRow(rotation_id=row.id, user_id=user_id))
            for team_id in dict.fromkeys(teams):
                if session.get(TeamRow, team_id) is None:
                    raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
                session.add(RotationMemberRow(rotation_id=row.id, team_id=team_id))
            session.flush()
            sync_seats(session, row, now)
            return row.id
        return self.get(self.db.run(work))

    def get(self, rotation_id: str, at: datetime | None = None) -> dict[str, Any]:
        def work(session: Session) -> dict[str, Any]:
            row = self._rotation(session, rotation_id)
            members, choice = self._members(session, row, at)
            why = {i.user_id: i for i in choice.ineligible}
            direct = session.scalars(select(RotationMemberRow).where(RotationMemberRow.rotation_id == row.id))
            direct_rows = list(direct)
            return {
                "id": row.id, "name": row.name, "policy": row.policy,
                "counts_since": format_utc(row.counts_since),
                "users": sorted(m.user_id for m in direct_rows if m.user_id),
                "teams": sorted(m.team_id for m in direct_rows if m.team_id),
                "members": [{
                    "user": m.user_id, "available": m.toggled_on, "status": m.status,
                    "assignments": round(m.count, 3), "recent": m.recent,
                    "last_assigned_at": format_utc(m.last_assigned_at),
                    "eligible": m.user_id not in why,
                    "reason": why[m.user_id].reason if m.user_id in why else None,
                    "available_at": format_utc(why[m.user_id].available_at) if m.user_id in why else None,
                } for m in sorted(members, key=lambda m: m.user_id)],
                "next": choice.member,
            }
        return self.db.read(work)

    def add_member(self, rotation_id: str, user_id: str) -> dict[str, Any]:
        def work(session: Session) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            self._need_user(session, user_id)
            exists = session.scalar(select(RotationMemberRow.id).where(
                RotationMemberRow.rotation_id == row.id, RotationMemberRow.user_id == user_id))
            if exists is None:
                session.add(RotationMemberRow(rotation_id=row.id, user_id=user_id))
                session.flush()
                sync_seats(session, row, self.service.clock())
        self.db.run(work)
        return self.get(rotation_id)

    def remove_member(self, rotation_id: str, user_id: str) -> dict[str, Any]:
        def work(session: Session) -> None:
            row = self._rotation(session, rotation_id, lock=True)
            direct = session.scalars(select(RotationMemberRow).where(
                RotationMemberRow.rotation_id == row.id, RotationMemberRow.user_id == user_id)).first()
            if direct is None:
                if user_id in effective_users(session, row.id):
                    raise UserInputError(f"{user_id} is in rotation {row.id} through a team; remove them from "
                                         "the team, or toggle them unavailable in the rotation")
                raise NotFoundInStore(f"{user_id} is not a member of rotation {row.id}")
            session.delete(direct)
            session.flush()
            sync_seats(session, row, self.service.clock())
        self.db.run(work)
        return self.get(rotation_id)

    def set_available(self, rotation_id: str, user_id: str, available: bool) -> dict[str, Any]:
        def work(session: Session) -> None:
            seat = session.get(RotationSeatRow, (rotation_id, user_id))
            if seat is None:
                self._rotation(session, rotation_id)
                raise NotFoundInStore(f"{user_id} is not a member of rotation {rotation_id}")
            seat.available = available
        self.db.run(work)
        return self.get(rotation_id)

    def ids(self) -> list[str]:
        return self.db.read(lambda s: list(s.scalars(select(RotationRow.id).order_by(RotationRow.created_at,
                                                                                      RotationRow.id))))

    # -- choosing ------------------------------------------------------------------------
    def preview(self, rotation_id: str, start: datetime | None = None) -> rot.Choice:
        def work(session: Session) -> rot.Choice:
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

        def work(session: Session) -> Assignment:
            row = self._rotation(session, rotation_id, lock=True)
            earlier = session.scalars(select(AssignmentRow).where(
                AssignmentRow.rotation_id == row.id, AssignmentRow.idempotency_key == idempotency_key)).first()
            if earlier is not None:
                return _assignment(earlier, replayed=True)
            members, choice = self._pick(session, row, start)
            if choice.member is None:
                raise NobodyEligible(_nobody_text(row, choice), choice)
            now = self.service.clock()
            made = AssignmentRow(id=uuid.uuid4().hex, rotation_id=row.id, user_id=choice.member,
                                 idempotency_key=idempotency_key, start=start, end=end, created_at=now)
            session.add(made)
            for user_id, share in rot.away_credits(members, cast(rot.Policy, row.policy)).items():
                seat = session.get(RotationSeatRow, (row.id, user_id))
                if seat is not None:
                    seat.credit += share
            session.flush()
            return _assignment(made, replayed=False)
        return self.db.run(work, what="assignment")

    def eligible(self, user_ids: Sequence[str], at: datetime | None = None) -> dict[str, Any]:
        """Which of these users may be given work now (or at ``at``): the auto-assignment question."""
        at = ensure_aware(at, "at") if at else None

        def work(session: Session) -> dict[str, Any]:
            eligible, ineligible = [], []
            for user_id in dict.fromkeys(user_ids):
                if session.get(UserRow, user_id) is None:
                    ineligible.append({"user": user_id, "reason": "unknown_user", "available_at": None})
                    continue
                info = self.service.status_in(session, user_id, at)
                if info.status == "available":
                    eligible.append(user_id)
                else:
                    ineligible.append({"user": user_id, "reason": info.reason, "available_at": format_utc(info.until)})
            return {"eligible": eligible, "ineligible": ineligible}
        return self.db.read(work)

    # -- internals -----------------------------------------------------------------------
    def _rotation(self, session: Session, rotation_id: str, *, lock: bool = False) -> RotationRow:
        query = select(RotationRow).where(RotationRow.id == rotation_id)
        if lock and self.db.dialect == "postgresql":
            query = query.with_for_update()
        row = session.scalars(query).one_or_none()
        if row is None:
            raise NotFoundInStore(f"no rotation {rotation_id!r}; GET /v1/rotations lists them")
        return row

    @staticmethod
    def _need_user(session: Session, user_id: str) -> None:
        if session.get(UserRow, user_id) is None:
            raise NotFoundInStore(f"no user {user_id!r}; register them with PUT /v1/users/{user_id}")

    def _stats(self, session: Session, row: RotationRow) -> list[rot.Member]:
        """Every seat with its counts, status not yet known (taken as available)."""
        now = self.service.clock()
        since, recent_from = row.counts_since, now - self.recent_window
        created = AssignmentRow.created_at
        per_user = {r.user_id: r for r in session.execute(
            select(AssignmentRow.user_id,
                   func.sum(case((created >= since, 1), else_=0)).label("handed"),
                   func.sum(case((created >= recent_from, 1), else_=0)).label("recent"),
                   func.max(created).label("last"))
            .where(AssignmentRow.rotation_id == row.id).group_by(AssignmentRow.user_id))}
        members = []
        for seat in session.scalars(select(RotationSeatRow).where(RotationSeatRow.rotation_id == row.id)
                                    .order_by(RotationSeatRow.user_id)):
            stats = per_user.get(seat.user_id)
            members.append(rot.Member(
                user_id=seat.user_id, toggled_on=seat.available, status="available",
                count=(stats.handed if stats else 0) + seat.baseline + seat.credit,
                recent=stats.recent if stats else 0,
                last_assigned_at=_aware(stats.last) if stats else None,
            ))
        return members

    def _with_status(self, session: Session, members: Sequence[rot.Member], at: datetime | None
                     ) -> list[rot.Member]:
        statuses = self.service.statuses_in(session, [m.user_id for m in members], at)
        out = []
        for m in members:
            info = statuses[m.user_id]
            away = info.status != "available"
            out.append(replace(m, status=info.status, away_reason=info.reason if away else None,
                               available_at=info.until if away else None))
        return out

    def _members(self, session: Session, row: RotationRow, at: datetime | None) -> tuple[list[rot.Member], rot.Choice]:
        members = self._with_status(session, self._stats(session, row), at)
        return members, rot.choose(members, self.rng)

    def _pick(self, session: Session, row: RotationRow, at: datetime | None) -> tuple[list[rot.Member], rot.Choice]:
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


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # aggregates bypass the column type


def _assignment(row: AssignmentRow, *, replayed: bool) -> Assignment:
    return Assignment(row.id, row.rotation_id, row.user_id, row.start, row.end, row.created_at, replayed)


def _nobody_text(row: RotationRow, choice: rot.Choice) -> str:
    reasons = ", ".join(f"{i.user_id} ({i.reason})" for i in choice.ineligible) or "it has no members"
    when = f"; the first is expected back at {format_utc(choice.next_available_at)}" \
        if choice.next_available_at else ""
    return f"nobody in rotation {row.name!r} can take this: {reasons}{when}"


def rotations_with_team(session: Session, team_id: str) -> list[RotationRow]:
    return list(session.scalars(select(RotationRow).join(
        RotationMemberRow, RotationMemberRow.rotation_id == RotationRow.id).where(
        RotationMemberRow.team_id == team_id)))
