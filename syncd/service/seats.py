"""A rotation's seats follow its members: users named directly and the members of its teams.

Apart from the rotation engine, so that whatever changes a team (the API, or the config
file's teams at start) makes its rotations' seats follow in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from store import rotations as stored
from store.db import Transaction
from store.models import RotationRow
from syncd.core import rotation as rot

__all__ = ["sync_seats", "team_changed"]


def team_changed(session: Transaction, team_id: str, now: datetime) -> None:
    """A team's members changed (or one was deleted): its rotations' seats follow."""
    for rotation in stored.with_team(session, team_id):
        sync_seats(session, rotation, now)


def sync_seats(session: Transaction, rotation: RotationRow, now: datetime) -> None:
    """Make the rotation's seats match its members. Someone new joining resets every count
    (policy ``reset``), or starts the newcomer at the average assignments ÷ weight
    (``calibrate``)."""
    wanted = stored.effective_users(session, rotation.id)
    seats = stored.seats(session, rotation.id)
    for gone in set(seats) - wanted:
        stored.drop_seat(session, seats.pop(gone))
    joining = wanted - set(seats)
    if not joining:
        return
    policy = cast(rot.Policy, rotation.policy)
    if policy == "reset":
        rotation.counts_since = now
        # Assignments made at this very instant (clocks have whole seconds) are still at or after
        # counts_since: the baseline cancels them, so every count really starts from zero.
        handed = stored.handed(session, rotation)
        for user_id, seat in seats.items():
            seat.baseline, seat.credit = -float(handed.get(user_id, 0)), 0.0
        start = 0.0
    else:
        handed = stored.handed(session, rotation)
        current = {u: handed.get(u, 0) + s.baseline + s.credit for u, s in seats.items()}
        start = rot.starting_count([rot.Member(u, True, "available", current[u], weight=s.weight)
                                    for u, s in seats.items()], policy)  # a newcomer's weight is 1
    for user_id in sorted(joining):  # a returning member's earlier assignments are in `start` already
        stored.add_seat(session, rotation.id, user_id, start - handed.get(user_id, 0), now)
    session.flush()
