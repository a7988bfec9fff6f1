"""Who hosts next: the rotation's choice rules (seed 002) as pure functions.

A member is *eligible* when their availability toggle in the rotation is on, their status
is ``available`` at the meeting's start (or now), and they are below their cap: a member with
a ``cap`` takes at most that many assignments within the rotation's ``cap_window`` (counted
by when the assignments were made, up to now). Among eligible members the next host is the
one with the fewest assignments *per unit of weight* (``count / weight``: a weight-2 member
takes twice the share of a weight-1 member); ties go to the fewest assignments recently,
then to the one assigned least recently (never assigned counts as longest ago), then to
chance. The store keeps the counts; this module only decides.

Two counting policies:

- ``reset`` (the seed's rule): adding a member resets everyone's count to zero.
- ``calibrate``: a new member starts at the current average load (times their weight), and a
  member who is away while assignments are handed out is credited with the share their
  weight would have received, so a member back from OOO is not flooded with every assignment
  until they catch up.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

__all__ = [
    "CAPACITY",
    "Choice",
    "Ineligible",
    "Member",
    "Policy",
    "away_credits",
    "choose",
    "slot_frees_at",
    "preference_order",
    "reweighed_count",
    "ineligibility",
    "starting_count",
]

Policy = Literal["reset", "calibrate"]
CAPACITY = "capacity"  # the reason a member at their cap is ineligible


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    toggled_on: bool  # the member's availability switch in this rotation
    status: str  # "available" | "away" at the instant asked about
    count: float  # assignments since the last reset, plus any calibration baseline and credit
    recent: int = 0  # assignments within the recent window
    last_assigned_at: datetime | None = None
    away_reason: str | None = None  # ooo_started, working_hours, manual …
    available_at: datetime | None = None  # when an away member is next expected back
    weight: float = 1.0  # share of assignments relative to the others (positive)
    cap: int | None = None  # most assignments within the rotation's cap window; None: no cap
    in_window: tuple[datetime, ...] = ()  # when their recent assignments were made (for the cap)

    @property
    def load(self) -> float:
        """Assignments per unit of weight: what "fewest assignments" compares."""
        return self.count / self.weight


@dataclass(frozen=True, slots=True)
class Ineligible:
    user_id: str
    reason: str  # "toggled_off" or the reason the member is away
    available_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    member: str | None  # None: nobody is eligible
    eligible: tuple[str, ...]  # in order of preference
    ineligible: tuple[Ineligible, ...]
    next_available_at: datetime | None  # when the first ineligible member is expected back


def slot_frees_at(member: Member, now: datetime, window: timedelta | None) -> datetime | None:
    """When a member at their cap may take an assignment again; None when they may now.

    Only assignments made within ``(now - window, now]`` count. With ``n`` of them and a cap
    of ``c <= n``, a slot frees when the ``n - c + 1`` oldest have left the window.
    """
    if member.cap is None or window is None:
        return None
    inside = sorted(t for t in member.in_window if now - window < t <= now)
    if len(inside) < member.cap:
        return None
    return inside[len(inside) - member.cap] + window


def ineligibility(member: Member, now: datetime | None = None,
                  cap_window: timedelta | None = None) -> Ineligible | None:
    """Why a member may not take the next assignment, or None. Caps count only with ``now``."""
    if not member.toggled_on:
        return Ineligible(member.user_id, "toggled_off")
    if member.status != "available":
        return Ineligible(member.user_id, member.away_reason or "away", member.available_at)
    if now is not None and (frees := slot_frees_at(member, now, cap_window)) is not None:
        return Ineligible(member.user_id, CAPACITY, frees)
    return None


def _preference(member: Member, tiebreak: float) -> tuple[float, int, float, float]:
    last = member.last_assigned_at.timestamp() if member.last_assigned_at else float("-inf")
    return (member.load, member.recent, last, tiebreak)


def preference_order(members: Sequence[Member], rng: random.Random) -> list[Member]:
    """Members in the order they would be picked if all were eligible (ties at random).

    The first eligible member in this order is the choice, so a caller may look up members'
    status lazily, down the list, instead of for the whole rotation.
    """
    return sorted(members, key=lambda m: _preference(m, rng.random()))


def choose(members: Sequence[Member], rng: random.Random, now: datetime | None = None,
           cap_window: timedelta | None = None) -> Choice:
    """The next host, or why there is none (caps apply when ``now`` is given)."""
    ineligible = [i for m in members if (i := ineligibility(m, now, cap_window)) is not None]
    out = {i.user_id for i in ineligible}
    ranked = preference_order([m for m in members if m.user_id not in out], rng)
    upcoming = [i.available_at for i in ineligible if i.available_at is not None]
    return Choice(
        member=ranked[0].user_id if ranked else None,
        eligible=tuple(m.user_id for m in ranked),
        ineligible=tuple(sorted(ineligible, key=lambda i: i.user_id)),
        next_available_at=min(upcoming) if upcoming else None,
    )


def starting_count(members: Sequence[Member], policy: Policy, weight: float = 1.0) -> float:
    """The count a newly added member of ``weight`` starts from (the others are reset under
    ``reset``): under ``calibrate``, the members' average load, so the newcomer is level."""
    if policy == "reset" or not members:
        return 0.0
    return weight * sum(m.load for m in members) / len(members)


def reweighed_count(count: float, old: float, new: float) -> float:
    """The count that keeps a member's load when their weight changes from ``old`` to ``new``:
    the new weight applies from now on, neither flooding nor starving them to catch up."""
    return count * new / old


def away_credits(members: Sequence[Member], policy: Policy, now: datetime | None = None,
                 cap_window: timedelta | None = None) -> dict[str, float]:
    """Under ``calibrate``: what each away member is credited when one assignment is handed out.

    An eligible member of weight ``w`` receives on average ``w / W`` of an assignment (``W``
    the eligible members' total weight), so every eligible load grows by ``1 / W``; an away
    member of weight ``w`` is credited ``w / W``, and their load keeps pace while they are
    out. A member at their cap is not away, and is not credited.
    """
    if policy != "calibrate":
        return {}
    total = sum(m.weight for m in members if ineligibility(m, now, cap_window) is None)
    if total <= 0:
        return {}
    return {m.user_id: m.weight / total for m in members if m.toggled_on and m.status != "available"}
