"""The package as operators install it: `python -m build` makes a wheel, and a fresh virtual
environment with only that wheel (and its dependencies from the index) runs `syncd`.

Slow (a build and a fresh install of every dependency, a minute or more): `make test` skips
it; .ci/run runs it (`pytest -m slow tests/contrib/test_wheel.py`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*argv: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{argv}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=tmp_path)
    (wheel,) = dist.glob("syncd-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel,
         cwd=tmp_path)
    syncd = venv / "bin" / "syncd"

    checked = _run(syncd, "-c", ROOT / "config.example.toml", "check-config", cwd=tmp_path)
    assert checked.stdout == f"{ROOT / 'config.example.toml'}: ok (4 users, 1 accounts, 5 calendar links, 1 sinks)\n"

    # What the wheel must carry besides the code: the database migrations. A sync on the demo
    # calendars makes the database and publishes the demo's status events.
    shutil.copy(ROOT / "config.example.toml", tmp_path / "syncd.toml")
    _run(venv / "bin" / "python", "-m", "syncd.cli.demo", tmp_path / "var" / "demo", cwd=tmp_path)
    synced = _run(syncd, "-c", tmp_path / "syncd.toml", "sync", "--once", cwd=tmp_path)
    assert "synced 5/5 links" in synced.stdout, synced.stdout
    assert '"status":"away"' in synced.stdout  # ada's sabbatical, on stdout
    installed = _run(venv / "bin" / "python", "-c", "import syncd; print(syncd.__file__)", cwd=tmp_path)
    assert installed.stdout.startswith(str(venv)), "syncd must come from the wheel, not the work tree"
