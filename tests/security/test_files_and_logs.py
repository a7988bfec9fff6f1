"""Files and logs: the database is its owner's alone, a config with secrets in it that others
may read is pointed out, and a conflict's log line carries ids and times, not the title."""

from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from store.db import Database
from syncd.cli import main
from syncd.core.ooo import timed_content
from tests.conftest import Harness, user

HarnessFactory = Callable[..., Harness]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_and_its_wal_are_for_their_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "state" / "syncd.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    db.run(lambda s: s.execute(text("CREATE TABLE t (x INTEGER)")))
    with db.session() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        wal, shm = path.with_name("syncd.db-wal"), path.with_name("syncd.db-shm")
        assert wal.exists() and shm.exists()
        assert (mode(path), mode(wal), mode(shm)) == (0o600, 0o600, 0o600)
    db.dispose()


def test_an_existing_database_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Database(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o600


def test_check_config_warns_when_others_may_read_secrets_in_the_file(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[api]\ntokens = [{ name = "hd", token = "a-token-of-at-least-24-chars" }]\n')
    path.chmod(0o644)
    assert main(["-c", str(path), "check-config"]) == 0
    warning = capsys.readouterr().err
    assert "api.tokens[0].token" in warning and "chmod 600" in warning
    assert "a-token-of-at-least-24-chars" not in warning
    path.chmod(0o600)
    assert main(["-c", str(path), "check-config"]) == 0
    assert capsys.readouterr().err == ""


def test_a_conflicts_log_line_names_ids_not_the_persons_words(harness_factory: HarnessFactory,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    h = harness_factory([user("alice", "work")])
    start = h.clock() + timedelta(days=2)
    block = h.service.add_block("alice", timed_content(start, start + timedelta(hours=3), "Oncology visit"))
    h.sync()
    [event] = h.calendars.calendar("work").events.values()
    h.clock.advance(timedelta(minutes=1))
    h.service.edit_block(block.id, timed_content(start, start + timedelta(hours=4), "Oncology visit, longer"))
    h.clock.advance(timedelta(minutes=1))
    h.calendars.edit("work", event.event_id, timed_content(start, start + timedelta(hours=5), "Chemo, day 1"))
    with caplog.at_level(logging.WARNING):
        h.sync()
    [line] = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage()]
    assert block.id in line and event.event_id in line
    assert "Oncology" not in line and "Chemo" not in line
