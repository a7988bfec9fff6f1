"""Prometheus metrics for `/metrics`: what an operator graphs and alerts on.

Counters and the latency histogram are fed by the sync loop as it runs; the gauges (outbox
depth, oldest undelivered event, users per status, links per state) are read from the
database when scraped, so they are right on every replica without any bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from store import gauges
from store.db import Database

__all__ = ["Metrics"]


class _StoreCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        read = self.db.read(gauges.read, what="metrics")
        by_sink, oldest, users, links = read.undelivered, read.oldest_pending, read.users, read.links
        depth = GaugeMetricFamily("syncd_outbox_undelivered", "Status events not yet delivered, per sink and state",
                                  labels=["sink", "state"])
        for sink, state, count in by_sink:
            depth.add_metric([sink, state], count)
        yield depth
        age = GaugeMetricFamily("syncd_outbox_oldest_undelivered_seconds",
                                "Age of the oldest status event still waiting for delivery (0 if none)")
        age.add_metric([], max(0.0, (self.clock() - oldest).total_seconds()) if oldest else 0.0)
        yield age
        per_status = GaugeMetricFamily("syncd_users", "Users per effective status", labels=["status"])
        counts = users
        for status in ("available", "away"):
            per_status.add_metric([status], counts.get(status, 0))
        yield per_status
        per_state = GaugeMetricFamily("syncd_links", "Enabled calendar links per sync state "
                                      "(reauth_required needs a person)", labels=["state"])
        states = links
        for state in ("ok", "error", "held", "reauth_required"):
            per_state.add_metric([state], states.get(state, 0))
        yield per_state


class Metrics:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry()
        self.syncs = Counter("syncd_syncs", "Calendar link syncs, by provider and result",
                             ["provider", "result"], registry=self.registry)
        self.sync_seconds = Histogram("syncd_sync_seconds", "Time to sync one calendar link", ["provider"],
                                      buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                      registry=self.registry)
        self.push_refused = Counter("syncd_push_refused", "Push notifications refused (unknown channel or "
                                    "wrong token)", registry=self.registry)
        self.registry.register(_StoreCollector(db, clock))

    def observe_sync(self, provider: str, ok: bool, seconds: float) -> None:
        self.syncs.labels(provider, "ok" if ok else "failed").inc()
        self.sync_seconds.labels(provider).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
