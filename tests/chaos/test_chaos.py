"""Crash safety under SIGKILL: see `tests.chaos.driver`. CI runs a short version; the full run
(100 kills) is marked slow: ``pytest -m slow tests/chaos``."""

from __future__ import annotations

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
