"""Status as the helpdesk asks for it and changes it, and the timers that move it forward."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from store import blocks, outbox, status, users
from store.db import Transaction
from syncd.core import availability as av
from syncd.core.errors import ConfirmationRequired, NotFoundInStore, UserInputError
from syncd.core.time import ensure_aware, within_reach
from syncd.core.timeline import Interval, check_span, timeline
from syncd.service.base import ServiceBase, StatusInfo
from syncd.service.blocks import confirmation_text
from syncd.service.recorder import LOOKAHEAD

__all__ = ["StatusOperations"]

KEEP_AT_MOST = timedelta(hours=1)  # an answer with no boundary ahead is still read again hourly


def _holds_until(periods: Sequence[av.Period], policy: av.StatusPolicy, now: datetime, has_next: bool
                 ) -> datetime | None:
    """Until when a status answered at ``now`` stays right if the database does not change:
    the next instant where ``auto`` may change (a block's start or end, which also changes
    the covering blocks; an hours or day-off boundary), which is also the earliest the next
    change can fall. With working hours or days off and no change found ahead, ``until``
    depends on how far `next_change` looks from ``now``: not kept."""
    if policy.recurs and not has_next:
        return None
    boundary = av.next_boundary(periods, policy, now)
    if boundary is None and policy.recurs:
        return None
    return min(boundary, now + KEEP_AT_MOST) if boundary is not None else now + KEEP_AT_MOST


class StatusOperations(ServiceBase):
    def set_status(self, user_id: str, wanted: av.Status, *, end_ooo_early: bool = False,
                   by: str | None = None) -> StatusInfo:
        """A manual change. `available` while a block covers now needs ``end_ooo_early``: the
        caller must confirm ending those blocks early (or keep the status away)."""
        if wanted not in (av.AVAILABLE, av.AWAY):
            raise UserInputError(f"status must be 'available' or 'away', not {wanted!r}")

        def work(session: Transaction) -> None:
            now = self.clock()
            user = self._user(session, user_id)
            self.recorder.advance(session, user, now)
            covering = [b for b in blocks.live_rows(session, user.id) if b.start <= now < b.end]
            if wanted == av.AVAILABLE and covering:
                if not end_ooo_early:
                    raise ConfirmationRequired(confirmation_text(user.id, covering), [b.id for b in covering],
                                               max(b.end for b in covering))
                blocks.end_now(covering, now)
                self.recorder.advance(session, user, now, ended_early=True)
                users.touch_links(session, user.id, now)
            else:
                self.recorder.advance(session, user, now, manual=wanted, by=by)
        self.db.run(work)
        return self.status(user_id)

    def status(self, user_id: str, at: datetime | None = None) -> StatusInfo:
        """Status now or at ``at``: past instants come from the log, future ones from the rules."""
        if at is not None:
            at = within_reach(ensure_aware(at, "at"), "at")
            return self.db.read(lambda session: self.status_in(session, user_id, at))
        stamp = self.db.change_stamp()  # before the read begins: see `StatusCache.put`
        now, info, valid_until = self.db.read(lambda session: self._status_now(session, user_id))
        if valid_until is not None:
            self.status_answers.put(user_id, stamp, now, valid_until, info)
        return info

    def kept_status(self, user_id: str) -> StatusInfo | None:
        """`status(user_id)` for now if it is known without reading the database (see
        `syncd.service.status_cache`), else None. Cheap enough for the event loop."""
        return self.status_answers.get(user_id, self.db.change_stamp(), self.clock())

    def current_statuses_in(self, session: Transaction, user_ids: Sequence[str], stamp: int | None
                            ) -> dict[str, StatusInfo]:
        """`statuses_in` for now, from the kept answers where there are some; the others are
        read in ``session`` and kept. ``stamp`` is `Database.change_stamp`, taken before
        ``session`` began (see `StatusCache.put`)."""
        now = self.clock()
        out, missing = {}, []
        for user_id in dict.fromkeys(user_ids):
            kept = self.status_answers.get(user_id, stamp, now)
            if kept is None:
                missing.append(user_id)
            else:
                out[user_id] = kept
        if missing:
            until: dict[str, datetime | None] = {}
            read = self._statuses(session, missing, now, None, until)
            for user_id, info in read.items():
                if (valid_until := until.get(user_id)) is not None:
                    self.status_answers.put(user_id, stamp, now, valid_until, info)
            out.update(read)
        return out

    def status_in(self, session: Transaction, user_id: str, at: datetime | None = None) -> StatusInfo:
        """`status` inside the caller's transaction."""
        return self.statuses_in(session, [user_id], at)[user_id]

    def statuses_in(self, session: Transaction, user_ids: Sequence[str], at: datetime | None = None
                    ) -> dict[str, StatusInfo]:
        """Status of many users in two queries (a hot path: the helpdesk polls it, and the
        rotation engine asks for whole rotations), on plain rows rather than ORM objects."""
        return self._statuses(session, user_ids, self.clock(), at)

    def _status_now(self, session: Transaction, user_id: str) -> tuple[datetime, StatusInfo, datetime | None]:
        """The status now, the instant it was read at, and until when it holds while the
        database does not change (None: do not keep it)."""
        now = self.clock()
        until: dict[str, datetime | None] = {}
        info = self._statuses(session, [user_id], now, None, until)[user_id]
        return now, info, until.get(user_id)

    def _statuses(self, session: Transaction, user_ids: Sequence[str], now: datetime, at: datetime | None,
                  holds_until: dict[str, datetime | None] | None = None) -> dict[str, StatusInfo]:
        wanted = list(dict.fromkeys(user_ids))
        found = status.users_with_state(session, wanted)
        for user_id in wanted:
            if user_id not in found:
                raise NotFoundInStore(f"no user {user_id!r}; `syncd status` lists the known users")
        periods = blocks.live_periods_of(session, wanted)
        out = {}
        when = now if at is None else at
        for user_id in wanted:
            row, user_periods = found[user_id], periods[user_id]
            policy = self.recorder.policy(row)
            state = av.initial_state(user_periods, policy, now) if row.effective is None else status.state_of(row)
            if when < state.evaluated_at:
                upcoming = av.next_change(state, user_periods, policy)  # for a past status still in force
                out[user_id] = self._past_status(session, user_id, when, user_periods,
                                                 upcoming.effective_at if upcoming else None, state)
                continue
            state = av.advance(state, user_periods, policy, when).state
            upcoming = av.next_change(state, user_periods, policy)
            out[user_id] = StatusInfo(user_id, state.effective, state.reason, state.since,
                                      upcoming.effective_at if upcoming else None,
                                      [p.block_id for p in av.covering(user_periods, when)])
            if holds_until is not None:
                holds_until[user_id] = _holds_until(user_periods, policy, when, upcoming is not None)
        return out

    def availability(self, user_id: str, start: datetime, end: datetime) -> list[Interval]:
        """The user's timeline over ``[start, end)`` (at most `timeline.MAX_SPAN`), by the
        status rules, with a manual change in force shown until the next automatic transition."""
        start, end = ensure_aware(start, "from"), ensure_aware(end, "to")
        check_span(start, end)

        def work(session: Transaction) -> list[Interval]:
            now = self.clock()
            found = status.users_with_state(session, [user_id])
            if user_id not in found:
                raise NotFoundInStore(f"no user {user_id!r}; `syncd status` lists the known users")
            row, periods = found[user_id], blocks.live_periods_of(session, [user_id])[user_id]
            policy = self.recorder.policy(row)
            state = av.initial_state(periods, policy, now) if row.effective is None else status.state_of(row)
            state = av.advance(state, periods, policy, max(now, state.evaluated_at)).state
            return timeline(periods, policy, start, end, state)
        return self.db.read(work)

    def _past_status(self, session: Transaction, user_id: str, when: datetime, periods: list[av.Period],
                     still_until: datetime | None, current: av.StatusState) -> StatusInfo:
        log_rows = status.log_of(session, user_id)
        before = [r for r in log_rows if r.effective_at <= when]
        after = [r for r in log_rows if r.effective_at > when]
        if before:
            last = before[-1]
            effective, reason, since = last.status, last.reason, last.effective_at
        elif after:
            effective, reason, since = (after[0].previous or av.AVAILABLE), "initial", None
        else:  # nothing logged yet: the status has not changed since syncd first saw the user
            effective, reason, since = current.effective, current.reason, None
        return StatusInfo(user_id, effective if effective == av.AWAY else av.AVAILABLE, reason, since,
                          after[0].effective_at if after else still_until,
                          [p.block_id for p in av.covering(periods, when)])

    def user_state(self, user_id: str) -> av.StatusState:
        def work(session: Transaction) -> av.StatusState:
            row = status.get(session, user_id)
            if row is None:
                raise NotFoundInStore(f"no user {user_id!r}")
            return status.state_of(row)
        return self.db.run(work)

    # -- the timers ---------------------------------------------------------------------------
    def advance_due(self, *, limit: int = 2000) -> int:
        """Publish automatic transitions whose instant has come (the boundary timer). Evaluates
        at most ``limit`` users in one transaction; the timer calls again while it is busy."""
        def work(session: Transaction) -> tuple[int, int]:
            now = self.clock()
            due = status.due(session, now, limit)
            return len(due), self.recorder.advance_many(session, due, now)
        total = 0
        while True:
            evaluated, changes = self.db.run(work, what="status timer")
            total += changes
            if evaluated < limit:
                return total
            self.on_published(changes)

    def stage_ahead(self, *, limit: int = 2000) -> set[datetime]:
        """Stage the transitions of the next `LOOKAHEAD` (see `StatusRecorder.stage_many`);
        returns the instants at which their events fall due."""
        def work(session: Transaction) -> tuple[int, set[datetime]]:
            now = self.clock()
            due = status.stage_candidates(session, now, now + LOOKAHEAD, limit)
            return len(due), self.recorder.stage_many(session, due, now)
        instants: set[datetime] = set()
        while True:
            staged, due = self.db.run(work, what="status timer")
            instants |= due
            if staged < limit:
                return instants

    def advance_all(self, *, chunk: int = 1000) -> int:
        """Bring every user up to now: on start-up (transitions while down) and in the sweep.
        One replica at a time: two would only lock each other's rows."""
        with self.db.claim("status sweep") as ours:
            return self._advance_all(chunk) if ours else 0

    def _advance_all(self, chunk: int) -> int:
        total = 0
        user_ids = self.user_ids()
        for start in range(0, len(user_ids), chunk):
            part = user_ids[start:start + chunk]

            def work(session: Transaction, part: list[str] = part) -> int:
                # Not while another replica starting up writes the config's users: the two
                # would lock the same rows in different orders.
                self.db.startup_lock(session)
                status.lock_all(session, part)
                return self.recorder.advance_many(session, part, self.clock())
            total += self.db.run(work, what="status sweep")
        return total

    def next_boundary(self) -> datetime | None:
        return self.db.run(status.next_boundary)

    def dead_letters(self) -> int:
        return self.db.run(outbox.dead_count)
