"""`syncd run` under systemd: the notifications a ``Type=notify`` unit waits for (the unit
file itself: tests/contrib/test_systemd_unit.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.system.processes import folder_config


def _receive_until(sock: socket.socket, wanted: str, seen: list[str], timeout: float = 20.0) -> None:
    """Read datagrams into ``seen`` until one has the line ``wanted``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except TimeoutError:
            break
        seen.append(message)
        if wanted in message.splitlines():
            return
    pytest.fail(f"no {wanted} from syncd; it sent: {seen}")


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_run_notifies_ready_watchdog_and_stopping(tmp_path: Path, kind: str) -> None:
    config = folder_config(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        address: str = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        name = f"syncd-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        address = "@" + name
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000", "PYTHONWARNINGS": "error"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    seen: list[str] = []
    try:
        with sock:
            _receive_until(sock, "READY=1", seen)
            assert not any("WATCHDOG=1" in m for m in seen), "a watchdog ping came before READY=1"
            ready_at = len(seen)
            _receive_until(sock, "WATCHDOG=1", seen)
            _receive_until(sock, "WATCHDOG=1", seen)  # again: it is a job that repeats
            proc.send_signal(signal.SIGTERM)
            _receive_until(sock, "STOPPING=1", seen)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read()
        proc.stderr.close()
    ready = seen[ready_at - 1].splitlines()
    assert any(line.startswith("STATUS=running: 1 user(s)") for line in ready), ready
    assert "Traceback" not in stderr and "cannot notify" not in stderr, stderr


def test_run_without_notify_socket_says_nothing_of_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(folder_config(tmp_path)), "run"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "syncd running" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=15) == 0
    assert "NOTIFY_SOCKET" not in rest and "Traceback" not in rest
