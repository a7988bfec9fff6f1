"""Which of a sink's outbox partitions this replica delivers.

Each partition is a lease (`store.db.Leases`) that one replica at a time holds, from pass to
pass. A replica takes up to its fair share of the free ones, ``PARTITIONS`` divided by the
live replicas, and when more replicas come alive it lets its excess go for them to take. A
partition nobody has taken for `STALE` (its holder died while the others were full) is
taken above the fair share: every partition always has a replica delivering it, and one that
dies hands its partitions over within seconds, not a heartbeat's age.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from store.db import Leases
from store.outbox import PARTITIONS

__all__ = ["STALE", "SinkPartitions"]

# Long enough for a replica that was just offered partitions to take them (it tries every
# second), short enough that a dead replica's users wait only seconds.
STALE = timedelta(seconds=5)


class SinkPartitions:
    """This replica's share of one sink's partitions."""

    def __init__(self, sink: str, leases: Leases, partitions: int = PARTITIONS) -> None:
        self.leases = leases
        self._partition = {f"sink:{sink}:{p}": p for p in range(partitions)}
        self._name = {p: name for name, p in self._partition.items()}
        self._free_since: dict[int, datetime] = {}  # a partition found free, but not kept
        self._replicas = 0  # live replicas at the last balance

    def mine(self) -> frozenset[int]:
        """The partitions held now (safe to call from any thread)."""
        held = self.leases.held
        return frozenset(p for name, p in self._partition.items() if name in held)

    def balance(self, replicas: int, now: datetime) -> frozenset[int]:
        """Take free partitions up to the fair share for ``replicas`` live replicas (and any
        left free for `STALE`), let the excess go when replicas were added; returns what is held."""
        fair = -(-len(self._partition) // max(1, replicas))
        mine = sorted(self.mine())
        if replicas > self._replicas and len(mine) > fair:
            self.leases.release([self._name[p] for p in mine[fair:]])
            mine = mine[:fair]
        self._replicas = replicas
        taken = sorted(self._partition[name]
                       for name in self.leases.take([name for p, name in self._name.items() if p not in mine]))
        # Found free: kept if there is room, or if it has been free too long; else let go again.
        room = max(0, fair - len(mine))
        keep = taken[:room] + [p for p in taken[room:] if self._free_since.setdefault(p, now) <= now - STALE]
        self.leases.release([self._name[p] for p in taken if p not in keep])
        held = self.mine()
        for p in list(self._free_since):
            if p in held or (p not in taken):  # ours now, or another replica has it
                del self._free_since[p]
        return held
