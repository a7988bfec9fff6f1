"""contrib/prometheus: `promtool check rules` and `promtool test rules` (alerts_test.yml).

promtool comes with Prometheus (Debian: the `prometheus` package; .ci/run provides it). Without
it these skip, except under CI=true, where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parents[2] / "contrib" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found (Debian: apt-get install prometheus, or see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must check the alert rules")
        pytest.skip(message)
    return found


def test_rules_are_valid() -> None:
    result = subprocess.run([_promtool(), "check", "rules", "alerts.yml"], cwd=HERE, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    result = subprocess.run([_promtool(), "test", "rules", "alerts_test.yml"], cwd=HERE, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
