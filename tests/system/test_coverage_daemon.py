"""`syncd run` announces a team's coverage crossings at their instants (the coverage job)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from syncd.config import SinkConfig
from syncd.config.model import TeamConfig
from syncd.core.ooo import timed_content
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from tests.conftest import make_config, user
from tests.system.test_daemon import CollectingSink


def test_coverage_low_and_restored_go_out_at_their_instants(tmp_path: Path) -> None:
    sink = CollectingSink()
    config = make_config([user("alice"), user("bob")], sinks=(SinkConfig(type="stdout", name=sink.name),),
                         database_url=f"sqlite:///{tmp_path / 'syncd.db'}", poll_interval=timedelta(seconds=1))
    config = dataclasses.replace(config, teams=(TeamConfig(id="support", members=("alice", "bob"), min_available=2),))
    rt = build_runtime(config, connectors=Connectors(config.accounts, overrides={"mem": MemoryConnector()}),
                       sinks={sink.name: sink})
    daemon = Daemon(rt, serve_api=False)
    daemon.start()
    try:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
        rt.service.add_block("alice", timed_content(start, start + timedelta(seconds=4)))
        assert sink.wait_for(lambda evs: sum(e["type"].startswith("coverage.") for e in evs) >= 2, timeout=30)
        coverage = [e for e in sink.events if e["type"].startswith("coverage.")]
        assert [(e["type"], e["at"], e["available"], e["min_available"], e["team"]) for e in coverage] == [
            ("coverage.low", start.isoformat().replace("+00:00", "Z"), 1, 2, {"id": "support"}),
            ("coverage.restored", (start + timedelta(seconds=4)).isoformat().replace("+00:00", "Z"), 2, 2,
             {"id": "support"}),
        ]
    finally:
        daemon.stop()
