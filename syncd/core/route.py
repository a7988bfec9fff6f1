"""Routes: who takes an away user's work.

A user may name a default replacement, and an OOO block may name its own, which wins while
the block covers. The route of a user at an instant is the user when available; otherwise
the first available person along the chain of replacements, each link taken at that same
instant (an away replacement's own block may name someone else). Chains may loop (nothing
stops Ada naming Bo while Bo names Ada): a person seen twice ends the walk, and so does the
`MAX_CHAIN`-th link, so a walk costs at most `MAX_CHAIN` look-ups whatever is stored.

Pure: the caller passes how to look up a person's status and replacement at the instant.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from syncd.core.availability import AVAILABLE, AWAY, Status

__all__ = ["MAX_CHAIN", "BlockReplacement", "Route", "RouteReason", "replacement_at", "resolve_route",
           "resolve_routes"]

MAX_CHAIN = 10

RouteReason = Literal["available", "replacement", "no_replacement", "no_replacement_available"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where ``user``'s work goes: ``route_to`` (None: nobody), and the replacements tried, in order."""

    user: str
    status: Status
    route_to: str | None
    chain: tuple[str, ...]
    reason: RouteReason

    def as_json(self) -> dict[str, object]:
        return {"user": self.user, "status": self.status, "route_to": self.route_to, "chain": list(self.chain),
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class BlockReplacement:
    """An OOO block that names a replacement."""

    block_id: str
    start: datetime
    end: datetime
    replacement: str


def replacement_at(default: str | None, blocks: Iterable[BlockReplacement], at: datetime) -> str | None:
    """A user's replacement at ``at``: that of a block covering ``at`` (the one ending last, as
    status says "away until" it), else the user's default."""
    covering = sorted((b for b in blocks if b.start <= at < b.end), key=lambda b: (b.end, b.block_id), reverse=True)
    return covering[0].replacement if covering else default


def resolve_route(user: str, status_of: Callable[[str], Status | None],
                  replacement_of: Callable[[str], str | None], *, limit: int = MAX_CHAIN) -> Route:
    """The route of ``user``. ``status_of`` answers None for a person syncd does not know (a
    replacement deleted since it was named): such a person cannot take work and names nobody.
    Looks at most ``limit`` replacements."""
    status = status_of(user)
    if status is None:
        raise ValueError(f"no status for {user!r}")
    if status == AVAILABLE:
        return Route(user, status, user, (), "available")
    chain: list[str] = []
    seen = {user}
    current = user
    while len(chain) < limit:
        candidate = replacement_of(current)
        if candidate is None or candidate in seen:  # the end of the chain, or a loop
            break
        chain.append(candidate)
        seen.add(candidate)
        candidate_status = status_of(candidate)
        if candidate_status == AVAILABLE:
            return Route(user, status, candidate, tuple(chain), "replacement")
        if candidate_status is None:
            break
        current = candidate
    return Route(user, status, None, tuple(chain), "no_replacement_available" if chain else "no_replacement")


def resolve_routes(users: Collection[str], statuses: Callable[[Collection[str]], Mapping[str, Status]],
                   replacements: Callable[[Collection[str]], Mapping[str, str | None]], *,
                   limit: int = MAX_CHAIN) -> dict[str, Route]:
    """The routes of many users at one instant, asking for statuses and replacements a whole
    step of every chain at a time (at most ``limit`` + 1 calls of each, however many users).
    ``statuses`` and ``replacements`` leave out the people they do not know."""
    status_known: dict[str, Status | None] = {u: None for u in users}
    status_known.update(statuses(list(users)))
    names: dict[str, str | None] = {}
    # People whose replacement the walks need next: the away ones reached so far.
    frontier = {u for u in users if status_known[u] == AWAY}
    for _ in range(limit):
        ask = frontier - names.keys()
        if not ask:
            break
        names.update({u: None for u in ask})
        names.update(replacements(sorted(ask)))
        reached = {names[u] for u in ask} - {None}
        new = sorted(p for p in reached if p is not None and p not in status_known)
        status_known.update({p: None for p in new})
        if new:
            status_known.update(statuses(new))
        frontier = {p for p in reached if p is not None and status_known[p] == AWAY}
    known_users = [u for u in users if status_known[u] is not None]
    return {u: resolve_route(u, status_known.get, names.get, limit=limit) for u in known_users}
