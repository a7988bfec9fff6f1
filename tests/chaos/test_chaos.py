"""Crash safety under SIGKILL: see `tests.chaos.driver`. CI runs a short version; the full run
(100 kills) is marked slow: ``pytest -m slow tests/chaos``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.driver import run


def test_killed_at_random_moments_nothing_is_lost_or_doubled(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=6, seed=1)
    assert chaos.kills == 6


@pytest.mark.slow
def test_a_hundred_kills(tmp_path: Path) -> None:
    chaos = run(tmp_path, kills=100, seed=7)
    assert chaos.kills == 100


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A database URL on a schema of its own, for daemons started as separate processes."""
    from store.db import Database
    from tests.conftest import _PG_PROBLEM, PG_URL

    if _PG_PROBLEM:
        if os.environ.get("CI"):
            pytest.fail(f"{_PG_PROBLEM}; CI must run the PostgreSQL tests")
        pytest.skip(f"{_PG_PROBLEM}; set SYNCD_TEST_DATABASE_URL to run these")
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    admin = Database(PG_URL)
    with admin.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.mark.postgres
def test_two_replicas_on_postgresql_one_killed_at_a_time(tmp_path: Path, postgres_schema: str) -> None:
    chaos = run(tmp_path, kills=6, seed=3, database_url=postgres_schema, replicas=2)
    assert chaos.kills == 6


@pytest.mark.slow
@pytest.mark.postgres
def test_two_replicas_a_hundred_kills(tmp_path: Path, postgres_schema: str) -> None:
    chaos = run(tmp_path, kills=100, seed=11, database_url=postgres_schema, replicas=2)
    assert chaos.kills == 100
