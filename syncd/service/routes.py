"""Routes as the helpdesk asks for them: who takes a user's work now or at an instant."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from store import replacements
from store.db import Transaction
from syncd.core.availability import Status
from syncd.core.route import Route, resolve_routes
from syncd.core.time import ensure_aware
from syncd.service.status import StatusOperations

__all__ = ["RouteOperations"]


class RouteOperations(StatusOperations):
    def route(self, user_id: str, at: datetime | None = None) -> Route:
        """Where ``user_id``'s work goes now (or at ``at``): themselves when available, else the
        first available person along their chain of replacements, else nobody."""
        if at is not None:
            at = ensure_aware(at, "at")

        def work(session: Transaction) -> Route:
            self._user(session, user_id)
            return self.routes_in(session, [user_id], at)[user_id]
        return self.db.read(work)

    def routes_in(self, session: Transaction, user_ids: Sequence[str], at: datetime | None = None
                  ) -> dict[str, Route]:
        """The routes of the known ones of ``user_ids``, inside the caller's transaction. Statuses
        are those `status` answers (past instants from the log, future ones by the rules)."""
        when = self.clock() if at is None else at

        def statuses(ids: Collection[str]) -> dict[str, Status]:
            exists = replacements.emails_of(session, ids)
            known = [u for u in ids if u in exists]
            return {u: info.status for u, info in self.statuses_in(session, known, at).items()}

        return resolve_routes(list(dict.fromkeys(user_ids)), statuses,
                              lambda ids: replacements.at_instant(session, ids, when))
