"""Prometheus metrics for `/metrics`: what an operator graphs and alerts on.

Counters and the latency histogram are fed by the sync loop and the publisher as they run;
the gauges (outbox depth, oldest undelivered event, dead letters, users per status, links per
state, live replicas, open push channels) are read from the database when scraped, so they
are right on every replica without any bookkeeping. In `syncd run`, ``syncd_ready`` is what
`/readyz` answers (1 ready, 0 not), and ``syncd_ready_check`` says which of its checks fail.

`contrib/prometheus/alerts.yml` alerts on these, and `contrib/grafana/syncd.json` graphs them;
a test checks that every metric those use is here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from store import gauges
from store.db import Database
from syncd.core.errors import SyncdError
from syncd.service.replicas import ALIVE_FOR

__all__ = ["READY_CHECKS", "Metrics", "readiness"]

log = logging.getLogger(__name__)
READY_CHECKS = ("database", "scheduler", "links")


def readiness(ping: Callable[[], object], scheduler_alive: Callable[[], bool],
              stuck_links: Callable[[], list[str]]) -> dict[str, bool]:
    """The checks `/readyz` makes (`syncd/api/routes/operations.py`), each True when it passes:
    the database answers, the scheduler runs, and no link's poll is long overdue."""
    checks: dict[str, bool] = {}
    try:
        ping()
        checks["database"] = True
    except Exception:  # noqa: BLE001 - any failure means not ready
        checks["database"] = False
    checks["scheduler"] = bool(scheduler_alive())
    try:
        checks["links"] = checks["database"] and not stuck_links()
    except Exception:  # noqa: BLE001 - unknown counts as failing
        checks["links"] = False
    return checks


class _StoreCollector(Collector):
    def __init__(self, db: Database, clock: Callable[[], datetime], metrics: Metrics) -> None:
        self.db = db
        self.clock = clock
        self.metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        database_ok = True
        if self.metrics.readiness is not None:
            checks = self.metrics.readiness()
            database_ok = checks.get("database", True)
            ready = GaugeMetricFamily("syncd_ready", "1 when /readyz answers ready (database, scheduler and links "
                                      "all ok), else 0")
            ready.add_metric([], 1.0 if all(checks.values()) else 0.0)
            yield ready
            each = GaugeMetricFamily("syncd_ready_check", "Each check of /readyz: 1 ok, 0 failing", labels=["check"])
            for name in READY_CHECKS:
                each.add_metric([name], 1.0 if checks.get(name, False) else 0.0)
            yield each
        if not database_ok:
            return  # the gauges below are the database's: absent while it is unreachable (syncd_ready says so)
        try:
            read = self.db.read(lambda s: gauges.read(s, now=self.clock(), alive_for=ALIVE_FOR), what="metrics")
        except SyncdError as exc:
            log.debug("metrics: the database gauges are left out this scrape: %s", exc)
            return
        by_sink, oldest, users, links = read.undelivered, read.oldest_pending, read.users, read.links
        depth = GaugeMetricFamily("syncd_outbox_undelivered", "Status events not yet delivered, per sink and state",
                                  labels=["sink", "state"])
        waiting = {(sink, state): 0 for sink in self.metrics.sinks for state in ("pending", "dead")}
        waiting.update({(sink, state): count for sink, state, count in by_sink})
        for (sink, state), count in sorted(waiting.items()):
            depth.add_metric([sink, state], count)
        yield depth
        age = GaugeMetricFamily("syncd_outbox_oldest_undelivered_seconds",
                                "Age of the oldest status event still waiting for delivery (0 if none)")
        age.add_metric([], max(0.0, (self.clock() - oldest).total_seconds()) if oldest else 0.0)
        yield age
        dead = GaugeMetricFamily("syncd_outbox_dead_letters", "Status event deliveries dead-lettered (given up "
                                 "after daemon.dead_letter_after), all sinks; kept in the database")
        dead.add_metric([], sum(count for _sink, state, count in by_sink if state == "dead"))
        yield dead
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
        replicas = GaugeMetricFamily("syncd_replicas", "Daemons sharing this database whose heartbeat is recent "
                                     f"(at most {ALIVE_FOR.total_seconds():.0f} s old)")
        replicas.add_metric([], read.replicas)
        yield replicas
        channels = GaugeMetricFamily("syncd_push_channels", "Push notification channels open with providers")
        channels.add_metric([], read.push_channels)
        yield channels
        teams = GaugeMetricFamily("syncd_team_available", "Members of each team whose status is available now",
                                  labels=["team"])
        for team, available in sorted(read.teams.items()):
            teams.add_metric([team], available)
        yield teams


class Metrics:
    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.registry = CollectorRegistry()
        self.syncs = Counter("syncd_syncs", "Calendar link syncs, by provider and result",
                             ["provider", "result"], registry=self.registry)
        self.sync_seconds = Histogram("syncd_sync_seconds", "Time to sync one calendar link", ["provider"],
                                      buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                      registry=self.registry)
        self.deliveries = Counter("syncd_deliveries", "Status event deliveries tried by this process, by sink and "
                                  "result (delivered, failed: retried later or dead-lettered)",
                                  ["sink", "result"], registry=self.registry)
        self.push_wakeups = Counter("syncd_push_wakeups", "Push notification requests that made calendar links "
                                    "due (they are polled at once)", registry=self.registry)
        self.push_refused = Counter("syncd_push_refused", "Push notifications refused (unknown channel or "
                                    "wrong token)", registry=self.registry)
        self.sinks: tuple[str, ...] = ()  # the config's sinks: their outbox series are there even when empty
        # Set by `syncd run`: the checks of /readyz, for `syncd_ready`. Without it (the API alone) no such gauge.
        self.readiness: Callable[[], Mapping[str, bool]] | None = None
        self.registry.register(_StoreCollector(db, clock, self))

    def expect(self, *, providers: Iterable[str] = (), sinks: Iterable[str] = ()) -> None:
        """Export zeros for the providers and sinks the config has, so that their series exist
        (and rates and alerts see them) before the first sync or delivery, and while nothing waits."""
        for provider in providers:
            for result in ("ok", "failed"):
                self.syncs.labels(provider, result)
            self.sync_seconds.labels(provider)
        self.sinks = tuple(sinks)
        for sink in self.sinks:
            for result in ("delivered", "failed"):
                self.deliveries.labels(sink, result)

    def observe_sync(self, provider: str, ok: bool, seconds: float) -> None:
        self.syncs.labels(provider, "ok" if ok else "failed").inc()
        self.sync_seconds.labels(provider).observe(seconds)

    def observe_deliveries(self, sink: str, delivered: int, failed: int) -> None:
        if delivered:
            self.deliveries.labels(sink, "delivered").inc(delivered)
        if failed:
            self.deliveries.labels(sink, "failed").inc(failed)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
