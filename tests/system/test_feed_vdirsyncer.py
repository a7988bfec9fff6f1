"""A team absence feed read by a real subscriber: vdirsyncer's ``http`` storage syncing the
feed into a folder (one ``.ics`` file per event), against syncd's API served by uvicorn, on
SQLite and PostgreSQL; each file read back with icalendar."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import icalendar
import pytest
import uvicorn
from fastapi.testclient import TestClient

from store.db import Database
from syncd.api import create_app
from syncd.config import ApiConfig, ApiToken
from syncd.core.ooo import all_day_content, timed_content
from syncd.service import Syncd
from tests.conftest import Clock, make_config, user
from tests.known_secrets import register
from tests.support import free_port

A = {"Authorization": "Bearer a-token-of-at-least-24-chars"}
VDIRSYNCER = str(Path(sys.executable).with_name("vdirsyncer"))


@dataclasses.dataclass
class Served:
    service: Syncd
    url: str
    client: TestClient  # the admin's calls, in-process


@pytest.fixture
def served(database: Database, clock: Clock) -> Iterator[Served]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = dataclasses.replace(
        make_config([user("ada"), user("bo"), user("cy")]),
        api=ApiConfig(tokens=(ApiToken("root", "a-token-of-at-least-24-chars", ("admin",)),), public_url=base))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    app = create_app(service)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        with TestClient(app) as client:
            yield Served(service, base, client)
    finally:
        server.should_exit = True
        thread.join(10)


def vdirsyncer(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VDIRSYNCER, "-c", str(root / "config"), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False, timeout=120)


def files(folder: Path) -> dict[str, icalendar.Event]:
    """The synced folder by file name: each file one VCALENDAR with one VEVENT. (vdirsyncer's
    http storage names items by a hash of their content, not by UID, since many feeds' UIDs
    are not stable; so a file that keeps its name is an event the feed served unchanged.)"""
    found = {}
    for path in sorted(folder.glob("*.ics")):
        events = icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT")
        assert len(events) == 1, path
        found[path.name] = events[0]
    return found


def seen(folder: Path) -> set[tuple[str, object, object]]:
    return {(str(e["SUMMARY"]), e.decoded("DTSTART"), e.decoded("DTEND")) for e in files(folder).values()}


def test_vdirsyncer_subscribes_to_the_team_feed(served: Served, clock: Clock, tmp_path: Path) -> None:
    svc, now = served.service, clock.now
    assert served.client.put("/v1/teams/support", json={"members": ["ada", "bo"]},
                             headers=A).status_code == 201
    svc.add_block("ada", timed_content(now + timedelta(days=1), now + timedelta(days=1, hours=3),
                                               "Dentist"), source="helpdesk")
    all_day = svc.add_block("bo", all_day_content(date(2026, 3, 10), date(2026, 3, 13), "Europe/Stockholm",
                                                  "Parental leave"), source="helpdesk")
    svc.add_block("cy", timed_content(now + timedelta(days=1), now + timedelta(days=2)), source="helpdesk")
    made = served.client.post("/v1/teams/support/feeds", json={}, headers=A).json()
    register(made["url"].rsplit("/", 1)[1].removesuffix(".ics"))

    folder = tmp_path / "team"
    folder.mkdir()
    (tmp_path / "config").write_text(f"""[general]
status_path = "{tmp_path / 'status'}/"

[pair team]
a = "team_feed"
b = "team_folder"
collections = null
conflict_resolution = "a wins"

[storage team_feed]
type = "http"
url = "{made['url']}"

[storage team_folder]
type = "filesystem"
path = "{folder}"
fileext = ".ics"
""")
    for step in ("discover", "sync"):
        done = vdirsyncer(tmp_path, step)
        assert done.returncode == 0, done.stderr
    ada = ("ada — away", now + timedelta(days=1), now + timedelta(days=1, hours=3))
    bo = ("bo — away", date(2026, 3, 10), date(2026, 3, 13))  # all-day: DATE values, the end exclusive
    assert seen(folder) == {ada, bo}
    first = files(folder)
    assert all("Dentist" not in str(e) and "leave" not in str(e) for e in first.values())

    # Another block is deleted, a new one appears: the next sync follows, and leaves the
    # unchanged event's file alone.
    svc.delete_block(all_day.id)
    svc.add_block("bo", timed_content(now + timedelta(days=5), now + timedelta(days=6)), source="helpdesk")
    clock.advance(timedelta(minutes=5))
    done = vdirsyncer(tmp_path, "sync")
    assert done.returncode == 0, done.stderr
    later = ("bo — away", now + timedelta(days=5), now + timedelta(days=6))
    assert seen(folder) == {ada, later}
    kept = [name for name, e in first.items() if str(e["SUMMARY"]) == "ada — away"]
    assert kept and (folder / kept[0]).exists()

    # Revoked: the subscriber is refused at once, and keeps what it had.
    assert served.client.delete(f"/v1/teams/support/feeds/{made['id']}", headers=A).status_code == 204
    done = vdirsyncer(tmp_path, "sync")
    assert done.returncode != 0 and "Not Found" in done.stderr, done.stderr
    assert seen(folder) == {ada, later}
