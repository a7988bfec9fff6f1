"""The status recorder: load a user's status, advance it by the rules, record and queue the changes.

Everything here runs inside the caller's transaction, so a status change, its log entry and
its outbox entries are committed together with the edit that caused them.

Staging: a transition less than `LOOKAHEAD` away is evaluated ahead and its events queued
for its instant, so that thousands of blocks ending in the same minute are announced at
once rather than evaluated then. The state itself changes at the instant (`load` and
`advance_many` apply it); any edit of the user before then undoes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from store import blocks, outbox, status, users
from store.db import Transaction
from store.models import UserRow, UserStatusRow
from syncd.core import availability as av
from syncd.core.daysoff import DaysOffSpec, days_off_of, spec_from_json
from syncd.core.events import route_event, status_event
from syncd.core.hours import hours_from_json
from syncd.service.routing import route_effects

__all__ = ["HORIZON", "LOOKAHEAD", "SETTLE", "StatusRecorder", "policy_of"]

# Blocks starting later than this are read only for their first start (the next boundary).
HORIZON = timedelta(days=1)
# Transitions this close are staged: their events queued, to be sent at their instant. One
# replica stages about 1,600 a second: three minutes covers 100,000 ending at once with room
# to spare (at one minute it did not, and most of them went out a minute late).
LOOKAHEAD = timedelta(minutes=3)
# ... and their state written this long after it, out of the way of the sending.
SETTLE = timedelta(seconds=10)

# (user id, email, change) of a change to publish
Published = tuple[str, str, av.StatusChange]


def policy_of(user: Any, away_outside_working_hours: bool, days_off: DaysOffSpec | None = None) -> av.StatusPolicy:
    """A user's rules besides their blocks, from their row (or a row of their columns):
    the hours a linked calendar provides, in their own zone, else the config's in the user's;
    ``days_off`` is the daemon's default for everyone."""
    offs = days_off_of(spec_from_json(user.days_off), days_off)
    if user.effective_hours is not None:
        return av.StatusPolicy(user.timezone, hours_from_json(user.effective_hours), away_outside_working_hours,
                               offs, hours_timezone=user.effective_hours_zone)
    return av.StatusPolicy(user.timezone, hours_from_json(user.working_hours), away_outside_working_hours, offs)


@dataclass
class StatusRecorder:
    """Advances users' status inside a transaction and writes log, outbox and deliveries."""

    sinks: Sequence[str]
    away_outside_working_hours: bool = False
    days_off: DaysOffSpec = DaysOffSpec()  # the daemon's holidays and days off, for everyone

    def policy(self, user: Any) -> av.StatusPolicy:
        """The rules of ``user`` (a row, or a row of the user's columns)."""
        return policy_of(user, self.away_outside_working_hours, self.days_off)

    # -- one user -----------------------------------------------------------------------------
    def load(self, session: Transaction, user: UserRow, now: datetime, *, keep_staged: bool = False,
             known: users.Known | None = None) -> tuple[UserStatusRow, av.StatusState]:
        """The user's status row, locked for this transaction (created on first use). A staged
        transition whose instant has come becomes the state; one still ahead is undone (the
        caller is about to change something), unless ``keep_staged``. With ``known`` (read and
        locked for a group holding this user), the row is not read again and a new one is
        flushed with the group."""
        row = known.statuses.get(user.id) if known is not None else status.lock(session, user.id)
        if row is not None and row.staged_for is not None and not (keep_staged and row.staged_for > now):
            self._settle_staged(session, row, now)
        if row is None:
            periods = [] if known is not None and user.id not in known.users else blocks.live_periods(session, user.id)
            policy = self.policy(user)
            state = av.initial_state(periods, policy, now)
            row = status.create(session, user.id)
            status.store(row, state, av.next_boundary(periods, policy, state.evaluated_at))
            if state.effective == av.AWAY:  # the helpdesk assumes available until told otherwise
                self._publish(session, [(user.id, user.email, av.first_seen_away(state, policy))], now, {})
            if known is None:
                session.flush()
        return row, status.state_of(row)

    def _settle_staged(self, session: Transaction, row: UserStatusRow, now: datetime) -> None:
        staged, at = row.staged or {}, row.staged_for
        if at is not None and at <= now:
            status.store(row, status.state_from_json(staged["state"]),
                         None if staged.get("next_boundary_at") is None
                         else datetime.fromisoformat(staged["next_boundary_at"]))
            status.insert_log(session, [status.log_entry_from_json(row.user_id, entry, now)
                                        for entry in staged.get("logs", ())])
        elif staged.get("outbox"):  # not happened yet, and now it may not: its events must not go out
            outbox.withdraw(session, staged["outbox"])
        row.staged_for, row.staged = None, None

    def peek(self, session: Transaction, user: UserRow, now: datetime) -> av.StatusState:
        """The user's state for reading: no lock, nothing written."""
        row = status.get(session, user.id)
        if row is not None:
            return status.state_of(row)
        return av.initial_state(blocks.live_periods(session, user.id), self.policy(user), now)

    def advance_due(self, session: Transaction, user: UserRow, now: datetime) -> list[av.StatusChange]:
        """`advance`, but only if a boundary has come since the last evaluation (before an
        edit: nothing else can have changed the status, and the blocks need not be read)."""
        row, _state = self.load(session, user, now)
        if row.next_boundary_at is None or row.next_boundary_at > now:
            return []
        return self.advance(session, user, now)

    def advance(self, session: Transaction, user: UserRow, now: datetime, *, ended_early: bool = False,
                manual: av.Status | None = None, by: str | None = None) -> list[av.StatusChange]:
        """Bring the user's status up to ``now`` (after an edit, a boundary, or a restart)."""
        row, state = self.load(session, user, now)
        periods = blocks.live_periods(session, user.id)
        policy = self.policy(user)
        evaluation = av.advance(state, periods, policy, max(now, state.evaluated_at), ended_early=ended_early)
        changes = list(evaluation.changes)
        state = evaluation.state
        if manual is not None:
            manual_eval = av.set_manual(state, manual, now)
            changes.extend(manual_eval.changes)
            state = manual_eval.state
            row.manual_by = by
        status.store(row, state, av.next_boundary(periods, policy, state.evaluated_at))
        self._publish(session, [(user.id, user.email, change) for change in changes], now, {})
        return changes

    # -- many users at once -------------------------------------------------------------------
    def advance_many(self, session: Transaction, user_ids: Collection[str], now: datetime) -> int:
        """`advance` for many users at once, in a handful of statements rather than several per
        user: the boundary timer when thousands of blocks end in the same minute, and the sweep.
        The callers hold the status rows locked (or are the only writer, on SQLite). Returns
        the number of changes published."""
        if not user_ids:
            return 0
        ids = list(user_ids)
        rows = status.rows_of(session, ids)
        users, periods = status.live_periods_until(session, ids, rows.values(), now + HORIZON)
        published: list[Published] = []
        logs: list[dict[str, Any]] = []  # of staged transitions, whose events are queued already
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for user_id in ids:
            user = users.get(user_id)
            if user is None:
                continue
            policy = self.policy(user)
            user_periods = periods.get(user_id, [])
            row = rows.get(user_id)
            if row is None:
                state = av.initial_state(user_periods, policy, now)
                if state.effective == av.AWAY:  # the helpdesk assumes available until told otherwise
                    published.append((user.id, user.email, av.first_seen_away(state, policy)))
            else:
                if row.staged_for is not None and row.staged_for > now:
                    continue  # prepared for an instant still ahead; an edit would have undone it
                if row.staged_for is not None:
                    state = status.state_from_json(row.staged["state"])
                    logs += [status.log_entry_from_json(user_id, entry, now) for entry in row.staged.get("logs", ())]
                else:
                    state = status.state_of(row)
                evaluation = av.advance(state, user_periods, policy, max(now, state.evaluated_at))
                state = evaluation.state
                published.extend((user.id, user.email, change) for change in evaluation.changes)
            values = {**status.state_columns(state), "staged_for": None, "staged": None,
                      "next_boundary_at": av.next_boundary(user_periods, policy, state.evaluated_at)}
            if row is None:
                inserts.append({"user_id": user_id, **values})
            else:
                updates.append({"b_user": user_id, **values})
        status.insert_states(session, inserts)
        status.update_states(session, updates)
        status.insert_log(session, logs)
        self._publish(session, published, now, {p.block_id: p for ps in periods.values() for p in ps})
        return len(published)

    def stage_many(self, session: Transaction, user_ids: Collection[str], now: datetime) -> set[datetime]:
        """Prepare the transitions of users whose next boundary is near: their events are queued
        now, due at the boundary's instant. The callers hold the rows locked. Returns the
        instants at which staged events fall due."""
        if not user_ids:
            return set()
        rows = [r for r in status.rows_of(session, list(user_ids)).values()
                if r.staged_for is None and r.next_boundary_at is not None and r.next_boundary_at > now]
        users, periods = status.live_periods_until(session, [r.user_id for r in rows], rows, now + HORIZON)
        staged: list[tuple[str, datetime, av.StatusState, datetime | None, list[av.StatusChange]]] = []
        for row in rows:
            user = users.get(row.user_id)
            if user is None:
                continue
            policy = self.policy(user)
            user_periods = periods.get(row.user_id, [])
            at = row.next_boundary_at
            evaluation = av.advance(status.state_of(row), user_periods, policy, at)
            # Staged even without a change: the user is then not evaluated again until the instant.
            after = av.next_boundary(user_periods, policy, at)
            staged.append((row.user_id, at, evaluation.state, after, list(evaluation.changes)))
        published = [(user_id, users[user_id].email, change) for user_id, _at, _s, _n, changes in staged
                     for change in changes]
        seqs = iter(self._queue(session, published, now, {p.block_id: p for ps in periods.values() for p in ps},
                                staged=True))  # a change's own event, and the route events it causes
        # The timer writes the staged state SETTLE after the instant, out of the way of the
        # sending, or at the user's following boundary if that comes sooner.
        status.update_states(session, [{
            "b_user": user_id, "staged_for": at,
            "next_boundary_at": at + SETTLE if after is None else min(at + SETTLE, after),
            "staged": {"state": status.state_to_json(state),
                       "next_boundary_at": None if after is None else after.isoformat(),
                       "logs": [status.change_to_json(change) for change in changes],
                       "outbox": [seq for _change in changes for seq in next(seqs)]},
        } for user_id, at, state, after, changes in staged])
        return {at for _u, at, _s, _n, changes in staged if changes}

    # -- publishing ---------------------------------------------------------------------------
    def _publish(self, session: Transaction, published: Sequence[Published], now: datetime,
                 known: dict[str, av.Period]) -> None:
        """Log the changes and queue one delivery per change and sink, in bulk statements."""
        if not published:
            return
        status.insert_log(session, [status.log_entry(user_id, change, now) for user_id, _email, change in published])
        self._queue(session, published, now, known)

    def _queue(self, session: Transaction, published: Sequence[Published], now: datetime,
               known: dict[str, av.Period], *, staged: bool = False) -> list[list[int]]:
        """Outbox entries and their deliveries; staged ones are due at their change's instant.
        Each away event carries the user's route; the route changes the changes cause for other
        away users follow as ``route.changed`` events. Returns, per change in order, the sequence
        numbers of its status event and of the route events it caused."""
        effects = route_effects(session, [(user_id, change) for user_id, _email, change in published], self.policy)
        entries = []
        for user_id, email, change in published:
            block_id = change.block_id
            block = None if block_id is None else known.get(block_id) or blocks.period(session, block_id)
            route = effects.of_change.get((user_id, change.effective_at))
            event_id = uuid.uuid4().hex
            entries.append((event_id, user_id,
                            status_event(event_id, user_id, email, change, block,
                                         effects.person(route.route_to if route else None)),
                            change.effective_at if staged else now))
        causes = []
        for cause, was, route, at in effects.changed:
            event_id = uuid.uuid4().hex
            entries.append((event_id, route.user,
                            route_event(event_id, {"id": route.user, "email": effects.emails.get(route.user, "")},
                                        was, route, at, effects.person(route.route_to),
                                        effects.person(was.route_to)),
                            at if staged else now))
            causes.append(cause)
        seqs = outbox.queue(session, entries, self.sinks, now)
        per_change = [[seq] for seq in seqs[:len(published)]]
        for cause, seq in zip(causes, seqs[len(published):], strict=True):
            per_change[cause].append(seq)
        return per_change
