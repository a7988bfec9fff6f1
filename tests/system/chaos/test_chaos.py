"""Crash safety under SIGKILL: see `tests.system.chaos.driver`. CI runs a short version; the full run
(100 kills) is marked slow: ``pytest -m slow tests/system/chaos``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import pg_url_for
from tests.system.chaos.driver import run


def test_killed_at_random_moments_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=6, seed=1)
    assert chaos.kills == 6


@pytest.mark.slow
def test_a_hundred_kills(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=100, seed=7)
    assert chaos.kills == 100


@pytest.mark.postgres
def test_two_replicas_on_postgresql_one_killed_at_a_time(tmp_path: Path, pg_schema: str) -> None:
    chaos = run(tmp_path, kills=6, seed=3, database_url=pg_url_for(pg_schema), replicas=2)
    assert chaos.kills == 6


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_a_hundred_kills(tmp_path: Path, pg_schema: str) -> None:
    chaos = run(tmp_path, kills=100, seed=11, database_url=pg_url_for(pg_schema), replicas=2)
    assert chaos.kills == 100


def test_killed_while_providers_and_the_webhook_fail_a_third_of_requests(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=6, seed=5, fault_rate=0.3)
    assert chaos.kills == 6


@pytest.mark.slow
def test_a_hundred_kills_with_faults(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=100, seed=13, fault_rate=0.3)
    assert chaos.kills == 100
