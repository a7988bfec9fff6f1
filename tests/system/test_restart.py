"""`syncd run` as operators run it: a person racing syncd's own writes, and a restart after a crash.

Both run the real daemon in a process of its own on a calendar folder, polling every two
seconds, and play the person with plain file operations.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from store.db import Database
from store.models import CalendarLinkRow
from syncd.config import load_config
from syncd.core.ooo import timed_content
from syncd.service import Syncd
from syncd.sync.replica import holder_is_dead
from tests.conftest import pg_url_for
from tests.connectors.caldav.servers import vevent
from tests.system.processes import folder_config, running_daemon

POLL = 2.0  # the daemon's poll interval, seconds


def write_config(root: Path, database_url: str) -> Path:
    return folder_config(root, database_url=database_url, poll=f"{POLL:.0f}s")


def helpdesk(config: Path) -> Syncd:
    """The helpdesk's side (what `syncd ooo add` does), on the daemon's database."""
    loaded = load_config(config)
    return Syncd(loaded, Database(loaded.daemon.database_url))


def eventually(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'syncd.db'}"
    schema: str = request.getfixturevalue("pg_schema")
    return pg_url_for(schema)


def test_a_fresh_write_deleted_by_the_person_before_the_next_poll_deletes_the_block(
        tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    folder = tmp_path / "calendars" / "alice"
    with running_daemon(config):
        service = helpdesk(config)
        try:
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
            block = service.add_block("alice", timed_content(start, start + timedelta(hours=3), "Course"))
            written = folder / f"syncd-{block.id}.ics"
            assert eventually(written.exists, within=30), "the daemon never wrote the block's event"
            written.unlink()  # at once: before the daemon lists the folder again
            # Two poll intervals are enough; the deadline only stops a test that would hang.
            assert eventually(lambda: service.list_blocks("alice") == [], within=30), \
                "the block outlived its event"
            time.sleep(2 * POLL)
            assert service.list_blocks("alice") == [] and list(folder.iterdir()) == []
        finally:
            service.db.dispose()


def test_a_restart_after_a_crash_resumes_at_once_despite_the_dead_daemons_leases(
        tmp_path: Path, database_url: str) -> None:
    config = write_config(tmp_path, database_url)
    service = helpdesk(config)
    try:
        with running_daemon(config) as first:
            assert eventually(lambda: any(link["owner"] for link in service.links()), within=30)
            first.send_signal(signal.SIGKILL)
            first.wait()
        # As if it died mid-sync: its lease would keep the link from anyone else for ten minutes.
        with service.db.session() as session:
            session.execute(update(CalendarLinkRow).values(
                lease_expires=datetime.now(UTC) + timedelta(minutes=10), next_poll_at=datetime.now(UTC)))
            [holder] = {row.lease_process for row in session.query(CalendarLinkRow)}
        assert holder_is_dead(holder)
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        (tmp_path / "calendars" / "alice" / "trip.ics").write_text(
            vevent("trip", start, start + timedelta(hours=8), summary="Trip"))
        with running_daemon(config):
            assert eventually(lambda: [b.title for b in service.list_blocks("alice")] == ["Trip"], within=30), \
                "the restarted daemon waited for its predecessor's lease"
    finally:
        service.db.dispose()
