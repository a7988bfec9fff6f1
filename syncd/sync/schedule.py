"""When each link is polled next: the poll interval with jitter, longer while a push channel
reports changes, backing off after failures (at least as long as the provider asked), and
never later than a poll a notification asked for meanwhile.

Failures are logged once per episode (when a link starts failing, or fails differently), and
once more when it recovers: never on every poll.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from store import blocks, links
from store.db import Database, Transaction
from syncd.config import Config
from syncd.core import reconcile as rc
from syncd.core.errors import Bug, RateLimited, ReauthRequired, SyncdError
from syncd.core.events import LinkRef
from syncd.core.text import first_line
from syncd.service.notices import LinkNotices
from syncd.sync.snapshot import LinkOutcome, Snapshot

__all__ = ["MAX_BACKOFF", "PUSH_POLL_INTERVAL", "Schedule", "next_poll"]

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(hours=1)
PUSH_POLL_INTERVAL = timedelta(hours=1)  # the fallback poll of a link whose push channel is live


def next_poll(asked: datetime | None, snap: Snapshot, planned: datetime) -> datetime:
    """As planned, unless a poll was asked for (a push notification) while this sync ran,
    which it may have missed."""
    if asked is not None and snap.started_at is not None and asked > snap.started_at:
        return min(asked, planned)
    return planned


class Schedule:
    def __init__(self, config: Config, db: Database, notices: LinkNotices, rng: random.Random | None = None) -> None:
        self.config = config
        self.db = db
        self.notices = notices  # link.reauth_required / link.restored, in the transaction that records them
        self.rng = rng or random.Random()

    def interval(self, snap: Snapshot) -> timedelta:
        """The poll interval; longer while a push channel reports changes as they happen."""
        interval = self.config.daemon.poll_interval
        if snap.pushed:
            account = self.config.accounts.get(snap.account)
            pushed = account.options.get("push_poll_interval") if account is not None else None
            interval = max(interval, pushed or PUSH_POLL_INTERVAL)
        return interval

    def jittered(self, interval: timedelta) -> timedelta:
        # ±10 % so a thousand links configured at once do not poll in lockstep.
        return interval * self.rng.uniform(0.9, 1.1)

    def planned(self, snap: Snapshot, now: datetime) -> datetime:
        return now + self.jittered(self.interval(snap))

    def recovered(self, snap: Snapshot) -> None:
        if snap.state not in ("ok", "held"):
            log.info("link %s: recovered after %d failed attempt(s)", snap.name, snap.failures,
                     extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})

    def succeeded(self, snap: Snapshot, result: rc.Plan, cursor: str | None, now: datetime,
                  written: list[tuple[str, str | None]]) -> None:
        """Record a successful sync; its writes seen since are confirmed (see `blocks.confirm_writes`)."""

        self.recovered(snap)
        held = result.held_deletions
        message = (f"{held} deletions held by the safety valve; confirm with "
                   f"`syncd links release-deletions {snap.link.id}`") if held else None
        planned = self.planned(snap, now)

        def work(session: Transaction) -> None:
            before = links.record_success(session, snap.link.id, links.LinkState(
                now, lambda asked: next_poll(asked, snap, planned)), cursor=cursor, held=held, held_message=message)
            if before is None:
                return
            if before[0] == "reauth_required":
                self.notices.restored(session, self._ref(snap), snap.user_id)
            if held and before != ("held", held):
                log.warning("link %s: held %d deletions (the calendar suddenly lacks most of this user's blocks); "
                            "confirm with `syncd links release-deletions %d`", snap.name, held, snap.link.id,
                            extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
            if not held:
                blocks.confirm_writes(session, snap.link.id, written)
        self.db.run(work, what=f"saving link {snap.name}")

    def failed(self, snap: Snapshot, outcome: LinkOutcome, exc: Exception, now: datetime) -> None:
        message = first_line(exc)
        outcome.ok, outcome.error = False, message
        at_least = timedelta(0)  # the provider's Retry-After: a floor the jitter must not go under
        if isinstance(exc, ReauthRequired):
            state, delay = "reauth_required", MAX_BACKOFF
        else:
            state = "error"
            base = self.config.daemon.poll_interval
            delay = min(MAX_BACKOFF, timedelta(seconds=min(base.total_seconds(), 60) * 2 ** min(snap.failures, 10)))
            if isinstance(exc, RateLimited) and exc.retry_after:
                at_least = timedelta(seconds=exc.retry_after)
                delay = max(delay, at_least)
        if snap.state in ("ok", "held") or (snap.state != state):
            # Once per failure episode, not every poll; a traceback for a Bug and what is not ours.
            log.warning("link %s: sync failed: %s", snap.name, message,
                        exc_info=isinstance(exc, Bug) or not isinstance(exc, SyncdError),
                        extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
        else:
            log.debug("link %s: still failing: %s", snap.name, message,
                      extra={"user": snap.user_id, "link": snap.link.id, "account": snap.account})
        due = now + max(self.jittered(delay), at_least)

        def work(session: Transaction) -> None:
            before = links.record_failure(session, snap.link.id, now, state, message, due)
            if before is not None and state == "reauth_required":
                self.notices.reauth_required(session, self._ref(snap), snap.user_id, message, before=before)
        self.db.run(work, what=f"saving link {snap.name}")

    def _ref(self, snap: Snapshot) -> LinkRef:
        return self.notices.ref(snap.link.id, snap.account, snap.configured)
