"""Team coverage: who of a team is available over a span, warnings when a block would take a
team below its minimum, and the ``coverage.low`` / ``coverage.restored`` events.

The intervals are `syncd.core.coverage` over each member's timeline as the status rules see
it. The events work like status transitions: a check looks a few hours ahead, and a crossing
of the minimum less than `LOOKAHEAD` away is queued for its instant; an edit before then
withdraws it. One replica at a time checks a team (its coverage row is locked), so each
crossing is announced once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from store import blocks, outbox, status, users
from store import coverage as stored
from store.db import Transaction
from syncd.core import availability as av
from syncd.core.coverage import COVERAGE_LOW, COVERAGE_RESTORED, CoverageCrossing, CoverageInterval, coverage, crossings
from syncd.core.errors import NotFoundInStore, UserInputError
from syncd.core.events import coverage_event
from syncd.core.time import ensure_aware, format_utc, parse_instant
from syncd.core.timeline import Interval, timeline
from syncd.service import Syncd
from syncd.service.recorder import LOOKAHEAD

__all__ = ["MAX_SPAN", "CoverageWatch", "TeamCoverage", "ordering_key"]

MAX_SPAN = timedelta(days=90)  # one coverage request; also what a block's warnings look at
CHECK_AHEAD = timedelta(hours=6)  # how far a check looks for the next crossing
CATCH_UP = timedelta(minutes=10)  # a look this soon after the last one starts where that one did


@dataclass(frozen=True)
class TeamCoverage:
    team: str
    min_available: int
    intervals: list[CoverageInterval]

    def as_json(self) -> dict[str, Any]:
        return {"team": self.team, "min_available": self.min_available, "intervals": [
            {"start": format_utc(i.start), "end": format_utc(i.end), "available": i.available,
             "members_available": list(i.members_available), "below_min": i.below_min}
            for i in self.intervals]}


def ordering_key(team_id: str) -> str:
    """The outbox's per-owner ordering key of a team's events (it holds 200 characters)."""
    key = f"team:{team_id}"
    return key if len(key) <= 200 else "team:" + hashlib.sha256(team_id.encode()).hexdigest()


class CoverageWatch:
    def __init__(self, service: Syncd) -> None:
        self.service = service
        self.db = service.db

    # -- asked for ------------------------------------------------------------------------------
    def coverage(self, team_id: str, start: datetime, end: datetime) -> TeamCoverage:
        start, end = ensure_aware(start, "from"), ensure_aware(end, "to")
        if end <= start:
            raise UserInputError("to must be after from")
        if end - start > MAX_SPAN:
            raise UserInputError(f"ask for at most {MAX_SPAN.days} days at a time (from {format_utc(start)} "
                                 f"to {format_utc(end)} is {(end - start).days} days)")

        def work(session: Transaction) -> TeamCoverage:
            if not users.team_exists(session, team_id):
                raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")
            minimum = stored.minimum(session, team_id)
            members = users.team_members(session, team_id)
            timelines = self._timelines(session, members, start, end)
            return TeamCoverage(team_id, minimum, coverage(timelines, start, end, minimum))
        return self.db.read(work)

    def warnings(self, block_id: str) -> list[dict[str, Any]]:
        """Where the block takes one of its user's teams below its minimum: intervals inside the
        block's span (at most `MAX_SPAN` of it) that are below the minimum with the block and
        would not be without it."""
        def work(session: Transaction) -> list[dict[str, Any]]:
            block = blocks.live(session, block_id)
            if block is None:
                return []
            teams = stored.teams_with_minimum_of(session, block.user_id)
            if not teams:
                return []
            start, end = block.start, min(block.end, block.start + MAX_SPAN)
            out: list[dict[str, Any]] = []
            for team_id, minimum in teams:
                members = users.team_members(session, team_id)
                timelines = self._timelines(session, members, start, end)
                without = dict(timelines)
                without.update(self._timelines(session, [block.user_id], start, end, leave_out=block_id))
                for low, high, available in _taken_below(coverage(timelines, start, end, minimum),
                                                         coverage(without, start, end, minimum)):
                    out.append({"team": team_id, "from": format_utc(low), "to": format_utc(high),
                                "available": available, "min_available": minimum})
            return out
        return self.db.read(work)

    # -- the events -----------------------------------------------------------------------------
    def check_due(self, *, limit: int = 200, every_team: bool = False) -> int:
        """Look at the teams that are due (or all of them) and announce crossings of their
        minimum; returns the events queued."""
        total = 0
        while True:
            def due(session: Transaction) -> list[str]:
                now = self.service.clock()
                return stored.all_with_minimum(session) if every_team else stored.due(session, now, limit)
            teams = self.db.read(due)
            for team_id in teams:
                total += self.db.run(partial(self._check, team_id=team_id), what="coverage check")
            if every_team or len(teams) < limit:
                return total

    def _check(self, session: Transaction, *, team_id: str) -> int:
        locked = stored.lock(session, team_id)
        if locked is None:
            return 0
        row, minimum = locked
        now = self.service.clock()
        staged = list(row.staged or [])
        passed = [s for s in staged if parse_instant(s["at"]) <= now]
        pending = [s for s in staged if parse_instant(s["at"]) > now]
        announced = passed[-1]["below"] if passed else row.below
        if minimum <= 0:  # no minimum (any more): nothing to announce
            outbox.withdraw(session, [s["seq"] for s in pending])
            stored.save(row, below=None, evaluated_at=now, next_check_at=None, staged=[])
            return 0
        members = users.team_members(session, team_id)
        horizon = now + CHECK_AHEAD
        # From the last look, when it was recent: a crossing since then (an edit made a moment
        # before it, between two looks) is announced with its own instant, not this one.
        since = row.evaluated_at if (row.evaluated_at is not None and row.below is not None
                                     and timedelta(0) < now - row.evaluated_at <= CATCH_UP) else now
        intervals = coverage(self._timelines(session, members, since, horizon), since, horizon, minimum)
        current = next(i for i in intervals if i.start <= now < i.end)
        below_now = current.below_min
        queued = 0
        if intervals[0].below_min == row.below:
            told = {(parse_instant(s["at"]), bool(s["below"])) for s in passed}
            for crossing in crossings(intervals, below_at_start=row.below):
                if crossing.at <= now and (crossing.at, crossing.kind == COVERAGE_LOW) not in told:
                    self._queue(session, team_id, crossing, now)
                    told.add((crossing.at, crossing.kind == COVERAGE_LOW))
                    queued += 1
            if told:
                announced = max(told)[1]  # the latest crossing told, staged earlier or just now
        if announced != below_now and (announced is not None or below_now):
            # Below when first looked at, or changed by an edit: announced now.
            self._queue(session, team_id, CoverageCrossing(
                COVERAGE_LOW if below_now else COVERAGE_RESTORED, now, current.available, minimum), now)
            queued += 1
        intervals = [i for i in intervals if i.end > now]
        ahead = crossings(intervals, below_at_start=below_now)
        soon = [c for c in ahead if c.at <= now + LOOKAHEAD]
        keep = {(s["at"], s["below"]): s for s in pending}
        wanted = {(format_utc(c.at), c.kind == COVERAGE_LOW): c for c in soon}
        outbox.withdraw(session, [s["seq"] for key, s in keep.items() if key not in wanted])
        new_staged = [s for key, s in keep.items() if key in wanted]
        for key, crossing in wanted.items():
            if key not in keep:
                seq = self._queue(session, team_id, crossing, now)
                new_staged.append({"seq": seq, "at": key[0], "below": key[1]})
                queued += 1
        later = [c.at for c in ahead if c.at > now + LOOKAHEAD]
        # Look again in time to stage the next crossing, or before the horizon runs out.
        next_check = (later[0] - LOOKAHEAD / 2) if later else horizon - LOOKAHEAD
        new_staged.sort(key=lambda s: str(s["at"]))
        stored.save(row, below=below_now, evaluated_at=now, next_check_at=next_check, staged=new_staged)
        return queued

    def _queue(self, session: Transaction, team_id: str, crossing: CoverageCrossing, now: datetime) -> int:
        event = coverage_event(uuid.uuid4().hex, team_id, crossing)
        sinks = self.service.recorder.sinks
        return outbox.queue(session, [(str(event["id"]), ordering_key(team_id), event, crossing.at)], sinks, now)[0]

    # -- timelines ------------------------------------------------------------------------------
    def _timelines(self, session: Transaction, user_ids: Sequence[str], start: datetime, end: datetime, *,
                   leave_out: str | None = None) -> Mapping[str, list[Interval]]:
        """Each user's timeline over ``[start, end)`` by the status rules (blocks, holidays and
        days off, working hours, a manual change while it holds); ``leave_out``: as if that block
        were not there (and no manual change either)."""
        if not user_ids:
            return {}
        now = self.service.clock()
        rows = status.users_with_state(session, user_ids)
        periods = blocks.live_periods_of(session, list(rows))
        out: dict[str, list[Interval]] = {}
        for user_id, row in rows.items():
            user_periods = [p for p in periods[user_id] if p.block_id != leave_out]
            policy = self.service.recorder.policy(row)
            state = None
            if leave_out is None and row.effective is not None:
                state = status.state_of(row)
                state = av.advance(state, user_periods, policy, max(now, state.evaluated_at)).state
            out[user_id] = timeline(user_periods, policy, start, end, state)
        return out


def _taken_below(with_block: Sequence[CoverageInterval], without: Sequence[CoverageInterval]
                 ) -> list[tuple[datetime, datetime, int]]:
    """Stretches below the minimum with the block that are not below without it, with the
    number available then."""
    out: list[tuple[datetime, datetime, int]] = []
    for interval in with_block:
        if not interval.below_min:
            continue
        for other in without:
            low, high = max(interval.start, other.start), min(interval.end, other.end)
            if low >= high or other.below_min:
                continue
            if out and out[-1][1] == low and out[-1][2] == interval.available:
                out[-1] = (out[-1][0], high, interval.available)
            else:
                out.append((low, high, interval.available))
    return out
