"""Claiming links and holding their leases, so that replicas never sync one link at once.

A replica claims due links for ``lease_ttl`` and renews the lease every third of it while
it works (`Holding`), so a long pass keeps its links and a replica that dies loses them to
the others when the lease runs out. A process of this machine that is gone (a daemon killed
and restarted) is seen at once: its leases are taken over without waiting (`syncd.sync.replica`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from store import links, replicas
from store.db import Database, Transaction
from syncd.core.errors import SyncdError
from syncd.sync.replica import ProcessIdentity, holder_is_dead

__all__ = ["DEAD_HOLDER_CHECK", "LEASE_TTL", "Holding", "Leases"]

log = logging.getLogger(__name__)
LEASE_TTL = timedelta(seconds=60)  # a replica that dies loses its links to the others after this
DEAD_HOLDER_CHECK = 5.0  # seconds between looks for leases held by dead processes of this machine


class Leases:
    """``database_clock``: leases and due times are judged by the database server's clock
    (PostgreSQL), so a replica whose own clock is off cannot take a link another holds."""

    def __init__(self, db: Database, clock: Callable[[], datetime], identity: ProcessIdentity,
                 ttl: timedelta = LEASE_TTL, *, database_clock: bool = False) -> None:
        self.db = db
        self._clock = clock
        self.database_clock = database_clock
        self.owner, self.process = identity.name, identity.key
        self.ttl = ttl
        self._dead_checked = float("-inf")  # monotonic time of the last look for dead holders

    def claim_due(self, limit: int = 50) -> list[int]:
        """Links whose poll is due and that no replica holds, leased to this one."""
        if time.monotonic() - self._dead_checked >= DEAD_HOLDER_CHECK:
            self._dead_checked = time.monotonic()
            self.free_dead_holders()
        return self.db.run(lambda s: links.claim_due(s, self.owner, self.process or None, self.now(s), self.ttl,
                                                     limit), what="claiming links")

    def now(self, session: Transaction) -> datetime:
        found = replicas.db_now(session) if self.database_clock else None
        return found or self._clock()

    def free_dead_holders(self) -> int:
        """End the leases of processes of this machine that are gone: a daemon restarted after
        a crash (SIGKILL, OOM) resumes its predecessor's links at once, not a lease TTL later."""
        def work(session: Transaction) -> int:
            now = self.now(session)
            dead = [key for key in links.holders(session, now) if key != self.process and holder_is_dead(key)]
            return links.dead_holders_free(session, dead, now) if dead else 0
        freed = self.db.run(work, what="freeing dead replicas' leases")
        if freed:
            log.info("took over %d link(s) leased by a process of this machine that is no longer running", freed)
        return freed

    def renew(self, link_ids: Sequence[int]) -> None:
        self.db.run(lambda s: links.renew(s, link_ids, self.owner, self.now(s) + self.ttl), what="renewing leases")

    def release(self, link_ids: Sequence[int]) -> None:
        """Claimed but not synced (the daemon is stopping): due again for the next start."""
        self.db.run(lambda s: links.release(s, link_ids, self.now(s)), what="releasing links")

    def holding(self, link_ids: Sequence[int]) -> Holding:
        return Holding(self, list(link_ids))


class Holding:
    """Renews this replica's leases on ``link_ids`` every third of the lease's life while a
    pass over them runs."""

    def __init__(self, leases: Leases, link_ids: list[int]) -> None:
        self.leases, self.link_ids = leases, link_ids
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="syncd-leases", daemon=True)

    def __enter__(self) -> Holding:
        if self.link_ids:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        every = max(0.5, self.leases.ttl.total_seconds() / 3)
        while not self.done.wait(every):
            try:
                self.leases.renew(self.link_ids)
            except SyncdError as exc:  # the database is away: the lease may lapse; syncing goes on
                log.warning("renewing leases failed: %s", exc)
