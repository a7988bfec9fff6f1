"""Who hosts next: the rotation's choice rules (seed 002) as pure functions.

A member is *eligible* when their availability toggle in the rotation is on and their
status is ``available`` at the meeting's start (or now). Among eligible members the next
host is the one with the fewest assignments; ties go to the fewest assignments recently,
then to the one assigned least recently (never assigned counts as longest ago), then to
chance. The store keeps the counts; this module only decides.

Two counting policies:

- ``reset`` (the seed's rule): adding a member resets everyone's count to zero.
- ``calibrate``: a new member starts at the current average, and a member who is away while
  assignments are handed out is credited with the share each eligible member received, so a
  member back from OOO is not flooded with every assignment until they catch up.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "Choice",
    "Ineligible",
    "Member",
    "Policy",
    "away_credits",
    "choose",
    "preference_order",
    "ineligibility",
    "starting_count",
]

Policy = Literal["reset", "calibrate"]


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


def ineligibility(member: Member) -> Ineligible | None:
    if not member.toggled_on:
        return Ineligible(member.user_id, "toggled_off")
    if member.status != "available":
        return Ineligible(member.user_id, member.away_reason or "away", member.available_at)
    return None


def _preference(member: Member, tiebreak: float) -> tuple[float, int, float, float]:
    last = member.last_assigned_at.timestamp() if member.last_assigned_at else float("-inf")
    return (member.count, member.recent, last, tiebreak)


def preference_order(members: Sequence[Member], rng: random.Random) -> list[Member]:
    """Members in the order they would be picked if all were eligible (ties at random).

    The first eligible member in this order is the choice, so a caller may look up members'
    status lazily, down the list, instead of for the whole rotation.
    """
    return sorted(members, key=lambda m: _preference(m, rng.random()))


def choose(members: Sequence[Member], rng: random.Random) -> Choice:
    """The next host, or why there is none."""
    ineligible = [i for m in members if (i := ineligibility(m)) is not None]
    out = {i.user_id for i in ineligible}
    ranked = preference_order([m for m in members if m.user_id not in out], rng)
    upcoming = [i.available_at for i in ineligible if i.available_at is not None]
    return Choice(
        member=ranked[0].user_id if ranked else None,
        eligible=tuple(m.user_id for m in ranked),
        ineligible=tuple(sorted(ineligible, key=lambda i: i.user_id)),
        next_available_at=min(upcoming) if upcoming else None,
    )


def starting_count(members: Sequence[Member], policy: Policy) -> float:
    """The count a newly added member starts from (the others are reset under ``reset``)."""
    if policy == "reset" or not members:
        return 0.0
    return sum(m.count for m in members) / len(members)


def away_credits(members: Sequence[Member], policy: Policy) -> dict[str, float]:
    """Under ``calibrate``: what each away member is credited when one assignment is handed out.

    Each eligible member receives on average ``1 / len(eligible)`` of an assignment; an away
    member is credited the same, so their count keeps pace while they are out.
    """
    if policy != "calibrate":
        return {}
    eligible = [m for m in members if ineligibility(m) is None]
    if not eligible:
        return {}
    share = 1.0 / len(eligible)
    return {m.user_id: share for m in members if m.toggled_on and m.status != "available"}
