"""`syncd_replicas`: the replicas whose heartbeat is recent, as the replicas judge each other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from store import replicas
from store.db import Database
from syncd.service.metrics import Metrics
from syncd.service.replicas import ALIVE_FOR


def _gauge(metrics: Metrics, name: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(metrics.render()[0].decode())}
    return families[name].samples[0].value


def test_replicas_gauge_counts_recent_heartbeats(database: Database) -> None:
    now = datetime.now(UTC)  # the real clock: on PostgreSQL the database's clock judges
    metrics = Metrics(database, lambda: datetime.now(UTC))
    assert _gauge(metrics, "syncd_replicas") == 0
    database.run(lambda s: replicas.heartbeat(s, "host-a:1", "f", now))
    database.run(lambda s: replicas.heartbeat(s, "host-b:2", "f", now - timedelta(seconds=5)))
    database.run(lambda s: replicas.heartbeat(s, "host-c:3", "f", now - ALIVE_FOR - timedelta(minutes=5)))
    assert _gauge(metrics, "syncd_replicas") == 2
    database.run(lambda s: replicas.leave(s, "host-b:2"))
    assert _gauge(metrics, "syncd_replicas") == 1


def test_dead_letters_and_sinks_are_there_before_anything_happens(database: Database) -> None:
    metrics = Metrics(database, lambda: datetime.now(UTC))
    metrics.expect(providers=["local"], sinks=["hook"])
    text = metrics.render()[0].decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("syncd_outbox_dead_letters", ())] == 0
    assert samples[("syncd_outbox_undelivered", (("sink", "hook"), ("state", "pending")))] == 0
    assert samples[("syncd_deliveries_total", (("result", "delivered"), ("sink", "hook")))] == 0
    assert samples[("syncd_syncs_total", (("provider", "local"), ("result", "failed")))] == 0
    assert ("syncd_ready", ()) not in samples  # only `syncd run` knows its scheduler
