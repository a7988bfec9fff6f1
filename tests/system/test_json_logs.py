"""``daemon.log_format = "json"``: one JSON object per stderr line, as log shippers read them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.system.processes import folder_config


def _json_config(root: Path, log_format: str = "json") -> Path:
    config = folder_config(root)
    config.write_text(config.read_text().replace("[daemon]\n", f'[daemon]\nlog_format = "{log_format}"\n', 1))
    return config


def _record(line: str) -> dict[str, Any]:
    record = json.loads(line)
    assert isinstance(record, dict), line
    assert {"time", "level", "logger", "message"} <= record.keys(), line
    when = datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    assert record["time"].endswith("Z") and when.utcoffset() == timedelta(0), line
    return record


def test_run_logs_one_json_object_per_line_with_the_link(tmp_path: Path) -> None:
    config = _json_config(tmp_path)
    shutil.rmtree(tmp_path / "calendars" / "alice")  # alice's calendar folder is gone: her link fails
    proc = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "sync failed" in line:
                break
        proc.send_signal(signal.SIGTERM)
        lines += proc.stderr.read().splitlines(keepends=True)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    records = [_record(line) for line in lines]  # every line, the traceback-free start to "stopped"
    messages = [r["message"] for r in records]
    assert any(m.startswith("syncd running: 1 user(s)") for m in messages), messages
    assert messages[-1] == "stopped"
    failed = next(r for r in records if "sync failed" in r["message"])
    assert failed["level"] == "WARNING" and failed["logger"] == "syncd.sync.schedule"
    assert (failed["user"], failed["account"]) == ("alice", "folder")
    assert isinstance(failed["link"], int)
    assert "exc_info" not in failed  # a ConfigError is expected: no traceback
    running = next(r for r in records if r["message"].startswith("syncd running"))
    assert "user" not in running and "link" not in running


def test_exception_is_one_field_and_uncaught_ones_are_logged_too(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import logging
        from syncd.daemon.logs import setup_logging
        setup_logging("INFO", "json")
        log = logging.getLogger("syncd.sync.schedule")
        try:
            1 / 0
        except ZeroDivisionError:
            log.warning("link %s: sync failed", "ada/work/ada", exc_info=True,
                        extra={"user": "ada", "link": 7, "account": "work"})
        log.info("multi\\nline")
        raise RuntimeError("boom")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    failed, multi, uncaught = (_record(line) for line in lines)
    assert failed["message"] == "link ada/work/ada: sync failed"
    assert (failed["user"], failed["link"], failed["account"]) == ("ada", 7, "work")
    assert failed["exc_info"].startswith("Traceback") and "ZeroDivisionError: division by zero" in failed["exc_info"]
    assert multi["message"] == "multi\nline" and "exc_info" not in multi
    assert uncaught["level"] == "CRITICAL" and "RuntimeError: boom" in uncaught["exc_info"]


def test_a_bad_log_format_is_a_one_line_config_error(tmp_path: Path) -> None:
    config = _json_config(tmp_path, "xml")
    result = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "check-config"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"syncd: {config}: daemon.log_format: must be one of text, json; got 'xml'\n"


def test_json_config_errors_after_loading_are_json_too(tmp_path: Path) -> None:
    config = _json_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "status", "nobody"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    record = _record(line)
    assert record["level"] == "ERROR" and "nobody" in record["message"]
