"""`syncd_ready` on /metrics answers what /readyz answers, so an alert on it is an alert on
readiness without a probe."""

from __future__ import annotations

import dataclasses
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from syncd.config import ApiConfig, SinkConfig
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from tests.conftest import make_config, user
from tests.system.test_daemon import CollectingSink


def _ready(address: str) -> tuple[int, float, dict[str, float]]:
    """(/readyz status, syncd_ready, syncd_ready_check by check)."""
    try:
        with urllib.request.urlopen(f"http://{address}/readyz", timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    checks = {s.labels["check"]: s.value for s in families["syncd_ready_check"].samples}
    return status, families["syncd_ready"].samples[0].value, checks


def test_ready_gauge_follows_readyz(tmp_path: Path) -> None:
    sink = CollectingSink()
    config = make_config([user("alice", "work")], sinks=(SinkConfig(type="stdout", name=sink.name),),
                         database_url=f"sqlite:///{tmp_path / 'syncd.db'}", poll_interval=timedelta(seconds=1))
    config = dataclasses.replace(config, api=ApiConfig(listen="127.0.0.1:0"))
    rt = build_runtime(config, clock=lambda: datetime.now(UTC),
                       connectors=Connectors(config.accounts, overrides={"mem": MemoryConnector()}),
                       sinks={sink.name: sink})
    daemon = Daemon(rt)
    daemon.start()
    try:
        assert _ready(daemon.api_address) == (200, 1.0, {"database": 1.0, "scheduler": 1.0, "links": 1.0})
        daemon.scheduler.shutdown(wait=True)  # the scheduler stops: not ready, on both
        assert _ready(daemon.api_address) == (503, 0.0, {"database": 1.0, "scheduler": 0.0, "links": 1.0})
        daemon.scheduler.start()
        assert _ready(daemon.api_address)[:2] == (200, 1.0)
    finally:
        daemon.stop()
