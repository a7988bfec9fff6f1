"""Routes inside a transaction: statuses and replacements read for `syncd.core.route`, and the
route changes that status changes cause for the away users whose chains pass through them.

A status change of Bo at ``t`` can change the route of every away user whose chain reaches
Bo. Those are found backwards (who names Bo, who names them, ... at most `MAX_CHAIN` steps),
and their routes at ``t`` are resolved twice: with the changed users' previous statuses and
with their new ones. Where the two differ, the user's route changed. Nothing is stored, so
an undone (staged) change leaves nothing behind but the events it withdraws.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from store import blocks, replacements, status
from store.db import Transaction
from syncd.core import availability as av
from syncd.core.route import MAX_CHAIN, Route, resolve_routes

__all__ = ["RouteEffects", "route_effects", "rule_statuses"]

_INSTANT = timedelta(microseconds=1)


# A user's rules from a row of their columns (the recorder's `policy`).
PolicyOf = Callable[[Any], av.StatusPolicy]


def rule_statuses(session: Transaction, user_ids: Collection[str], at: datetime, policy_of: PolicyOf,
                  overrides: Mapping[str, av.Status]) -> dict[str, av.Status]:
    """The known users' effective status at ``at`` (now or ahead) by the rules, from their last
    recorded state; ``overrides`` are statuses just decided in this transaction."""
    out = {u: overrides[u] for u in user_ids if u in overrides}
    rest = [u for u in user_ids if u not in overrides]
    if not rest:
        return out
    found = status.users_with_state(session, rest)
    periods = blocks.live_periods_of(session, list(found))
    for user_id, row in found.items():
        policy = policy_of(row)
        state = av.initial_state(periods[user_id], policy, at) if row.effective is None else status.state_of(row)
        if at > state.evaluated_at:
            state = av.advance(state, periods[user_id], policy, at).state
        out[user_id] = state.effective
    return out


@dataclass
class RouteEffects:
    """What a batch of status changes means for routes."""

    # The route of each user who went away, at the instant they did: their event carries it.
    of_change: dict[tuple[str, datetime], Route] = field(default_factory=dict)
    # Routes of other away users that changed: (index of the change behind it, before, after, instant).
    changed: list[tuple[int, Route, Route, datetime]] = field(default_factory=list)
    emails: dict[str, str] = field(default_factory=dict)

    def person(self, user_id: str | None) -> dict[str, str] | None:
        return None if user_id is None else {"id": user_id, "email": self.emails.get(user_id, "")}


def route_effects(session: Transaction, changes: Sequence[tuple[str, av.StatusChange]],
                  policy_of: PolicyOf) -> RouteEffects:
    effects = RouteEffects()
    if not changes or not replacements.anyone_named(session):
        return effects  # every route is the user or nobody, and no change can alter one
    by_instant: dict[datetime, list[int]] = {}
    for index, (_user, change) in enumerate(changes):
        by_instant.setdefault(change.effective_at, []).append(index)
    for at, indexes in by_instant.items():
        before: dict[str, av.Status] = {}
        after: dict[str, av.Status] = {}
        for index in indexes:
            user_id, change = changes[index]
            before.setdefault(user_id, change.previous)
            after[user_id] = change.status

        def names(ids: Collection[str], at: datetime = at) -> dict[str, str | None]:
            return replacements.at_instant(session, ids, at)

        def statuses(overrides: Mapping[str, av.Status], at: datetime = at
                     ) -> Callable[[Collection[str]], dict[str, av.Status]]:
            return lambda ids: rule_statuses(session, ids, at, policy_of, overrides)

        gone_away = [u for u, s in after.items() if s == av.AWAY]
        for user_id, found in resolve_routes(gone_away, statuses(after), names).items():
            effects.of_change[(user_id, at)] = found
        # Everyone whose chain may pass through a changed user, just before the instant or at
        # it, at most MAX_CHAIN steps back.
        upstream: set[str] = set()
        level = set(after)
        for _ in range(MAX_CHAIN):
            level = replacements.naming(session, level, at - _INSTANT, at) - upstream - after.keys()
            if not level:
                break
            upstream |= level
        if upstream:
            # Before: as things stood just before the instant (a block ending at it still names).
            old = resolve_routes(sorted(upstream), statuses(before), partial(names, at=at - _INSTANT))
            new = resolve_routes(sorted(upstream), statuses(after), names)
            for user_id in sorted(new):
                was, now_ = old.get(user_id), new[user_id]
                if now_.status != av.AWAY or was is None or was.route_to == now_.route_to:
                    continue
                cause = next((i for i in indexes if changes[i][0] in (*was.chain, *now_.chain)), indexes[0])
                effects.changed.append((cause, was, now_, at))
    people = {r.route_to for r in effects.of_change.values()}
    for _cause, was, now_, _at in effects.changed:
        people |= {was.user, was.route_to, now_.route_to}
    effects.emails = replacements.emails_of(session, {p for p in people if p is not None})
    return effects
