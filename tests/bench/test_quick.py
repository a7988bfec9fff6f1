"""Every benchmark's short version runs to the end and keeps its contract: the last line printed
is one JSON object, with the figures each benchmark promises (its floors and ratios among
them) and the invariants that hold whatever the machine (nothing published twice, no double
assignment). Several minutes in all, so marked slow: ``pytest -m slow tests/bench``. Nothing
here asserts a time: the figures are for ``docs/performance.md``, the keys are for people and
tools reading the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

# name -> keys its JSON must hold (each a number, or for ``scaling`` a list of rows)
PROMISED: dict[str, tuple[str, ...]] = {
    "sync_cycle": (),
    "google_poll": ("cycle_s", "floor_s", "floor_ratio", "first_sync_per_user_ms"),
    "outlook_poll": ("cycle_s", "floor_s", "floor_ratio", "push_cycle_requests"),
    "caldav_vs_vdirsyncer": ("initial_ratio", "incremental_ratio", "floor_nochange_s", "nochange_vs_floor"),
    "api": ("status_rps", "healthz_rps", "status_vs_healthz", "assign_rps", "write_floor_tps", "assign_vs_floor",
            "postgresql_assign_vs_floor", "double_assignments", "postgresql_double_assignments"),
    "boundaries": ("transitions", "published", "duplicates", "p99_lag_s", "sink_floor_s", "p99_vs_floor",
                   "p99_lag_s_1_replica", "replica_speedup"),
    "scale": ("per_user_growth", "replica_ratio", "scaling"),
    "soak": ("fd_growth", "thread_growth"),
}
# Extra arguments: the boundaries bench measures both replica counts only when asked for two.
ARGS: dict[str, tuple[str, ...]] = {"boundaries": ("--replicas", "2")}


def run_quick(name: str, database_url: str, tmp_path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--quick", *ARGS.get(name, ())], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SYNCD_BENCH_DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=40 * 60)
    assert done.returncode == 0, f"bench.{name} --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    last = done.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert isinstance(figures, dict), f"bench.{name}: the last line is not a JSON object: {last[:200]}"
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROMISED))
def test_the_short_version_keeps_its_contract(name: str, postgresql_url: str, tmp_path: Path) -> None:
    figures = run_quick(name, postgresql_url, tmp_path)
    missing = [key for key in PROMISED[name] if key not in figures]
    assert not missing, f"bench.{name}: the JSON lacks {missing}"
    for key in PROMISED[name]:
        value = figures[key]
        assert isinstance(value, list) if key == "scaling" else isinstance(value, int | float), (key, value)
    if name == "boundaries":
        assert figures["published"] == figures["transitions"] and figures["duplicates"] == 0
    if name == "api":
        assert figures["double_assignments"] == 0 and figures["postgresql_double_assignments"] == 0
