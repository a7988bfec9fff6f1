"""A daemon as operators run it: `syncd run` in a process of its own, on a calendar folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["folder_config", "running_daemon"]


def folder_config(root: Path, *, database_url: str | None = None, poll: str | None = None) -> Path:
    """``root/syncd.toml``: one user, alice, with one local calendar folder; the API on any free port."""
    (root / "calendars" / "alice").mkdir(parents=True, exist_ok=True)
    daemon = "".join(f'{key} = "{value}"\n' for key, value in (("database_url", database_url),
                                                                ("poll_interval", poll)) if value)
    config = root / "syncd.toml"
    config.write_text(f"""
[daemon]
{daemon}
[api]
listen = "127.0.0.1:0"
[[accounts]]
name = "folder"
provider = "local"
root = "calendars"
[[users]]
id = "alice"
email = "alice@example.com"
timezone = "UTC"
calendars = [{{ account = "folder", calendar = "alice" }}]
[[sinks]]
type = "stdout"
""")
    return config


@contextmanager
def running_daemon(config: Path, *, warnings: str = "ignore",
                   stdout: int = subprocess.DEVNULL) -> Iterator[subprocess.Popen[str]]:
    """`syncd run` until it says it is running (its stderr from then on is left to read, and its
    stdout too with ``stdout=subprocess.PIPE``: the stdout sink's events); stopped with SIGTERM,
    or killed, on the way out if still running."""
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], cwd=config.parent,
                            stdout=stdout, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": warnings})
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until it is really running
            if "syncd running" in line:
                break
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stderr, proc.stdout):
            if stream is not None:
                stream.close()
