"""Two-way sync with real CalDAV servers (Radicale, Xandikos) end to end: the service, the
syncer and the connector, `syncd sync --once` and `syncd run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.registry import Connectors
from store.db import Database
from syncd.config import AccountConfig, Options, load_config
from syncd.core.ooo import OooContent
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import make_config, user
from tests.connectors.caldav.servers import CalDAVPerson, CalDAVServer, server, vevent
from tests.connectors.contract import all_day, timed

TZ = "Europe/Stockholm"


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def caldav(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    with server(request.param, tmp_path_factory.mktemp(request.param)) as running:
        yield running


@pytest.fixture
def calendar(caldav: CalDAVServer, request: pytest.FixtureRequest) -> str:
    return caldav.make_calendar(f"s{abs(hash(request.node.nodeid)) % 10**9}")


def caldav_account(caldav: CalDAVServer) -> AccountConfig:
    return AccountConfig(name="dav", provider="caldav", options=Options(
        {"url": caldav.base_url, "username": caldav.username, "password": caldav.password}))


@dataclass
class World:
    service: Syncd
    syncer: LinkSyncer
    person: CalDAVPerson
    caldav: CalDAVServer
    calendar: str

    def sync(self) -> list[Any]:
        outcomes = self.syncer.sync_once()
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        return outcomes

    def blocks(self) -> list[OooContent]:
        return sorted((b.content for b in self.service.list_blocks("alice")), key=lambda c: c.start)

    def objects(self) -> dict[str, str]:
        return self.caldav.list_hrefs(self.calendar)


@pytest.fixture
def world(caldav: CalDAVServer, calendar: str, database: Database) -> Iterator[World]:
    config = make_config([user("alice", calendar, account="dav", tz=TZ)], accounts={"dav": caldav_account(caldav)})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    yield World(service, LinkSyncer(service, connectors), CalDAVPerson(caldav, calendar, TZ), caldav, calendar)
    connectors.close()


def test_ooo_added_in_the_calendar_becomes_a_block(world: World) -> None:
    world.person.add(timed(3))
    world.person.add(timed(4), ooo=False)
    world.sync()
    assert world.blocks() == [timed(3)]


def test_block_added_in_the_helpdesk_becomes_an_ooo_event_and_stays_put(world: World) -> None:
    block = world.service.add_block("alice", all_day(5, 2))
    world.sync()
    [(href, _etag)] = world.objects().items()
    body, _ = world.caldav.get_event(world.calendar, f"syncd-{block.id}") or ("", "")
    assert "X-MICROSOFT-CDO-BUSYSTATUS:OOF" in body and "TRANSP:OPAQUE" in body
    # the server rewrote what we sent; the next passes see no change and write nothing
    assert world.sync()[0].actions == 0
    assert world.sync()[0].actions == 0
    assert world.objects() == {href: world.objects()[href]}
    assert world.blocks() == [all_day(5, 2)]


def test_edits_and_ending_early_flow_both_ways(world: World) -> None:
    event_id = world.person.add(timed(3))
    world.sync()
    world.person.edit(event_id, timed(3, hours=2, title="Dentist"))
    world.sync()
    assert world.blocks() == [timed(3, hours=2, title="Dentist")]
    now = datetime.now(UTC)
    sick = world.person.add(OooContent(now - timedelta(hours=1), now + timedelta(days=1), title="Sick"))
    world.sync()
    block = next(b for b in world.service.list_blocks("alice") if b.content.title == "Sick")
    ended = world.service.end_block_early(block.id)
    world.sync()
    body, _ = world.caldav.get_event(world.calendar, sick) or ("", "")
    assert f"DTEND:{ended.end.astimezone(UTC):%Y%m%dT%H%M%SZ}" in body


def test_deletes_flow_both_ways(world: World) -> None:
    theirs = world.person.add(timed(3))
    ours = world.service.add_block("alice", timed(8))
    world.sync()
    assert len(world.objects()) == 2
    world.person.remove(theirs)
    world.service.delete_block(ours.id)
    world.sync()
    assert world.blocks() == []
    assert world.objects() == {}


def test_recurring_ooo_both_ways(world: World) -> None:
    first = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=2)
    world.caldav.put_event(world.calendar, "weekly", vevent("weekly", first, first + timedelta(hours=4),
                                                            summary="Course",
                                                            extra_lines=["RRULE:FREQ=WEEKLY;COUNT=3"]))
    world.sync()
    blocks = sorted(world.service.list_blocks("alice"), key=lambda b: b.content.start)
    assert [b.content.start for b in blocks] == [first + timedelta(weeks=n) for n in range(3)]
    # the helpdesk shortens the second occurrence: the calendar gets an override for it
    second = blocks[1]
    world.service.edit_block(second.id, OooContent(second.content.start, second.content.start + timedelta(hours=1),
                                                   title="Course"))
    world.sync()
    body, _ = world.caldav.get_event(world.calendar, "weekly") or ("", "")
    assert "RECURRENCE-ID" in body
    # the helpdesk deletes the third: the calendar excludes it
    world.service.delete_block(blocks[2].id)
    world.sync()
    body, _ = world.caldav.get_event(world.calendar, "weekly") or ("", "")
    assert "EXDATE" in body.replace("\r\n ", "")
    assert len(world.service.list_blocks("alice")) == 2


def test_an_expired_sync_token_resyncs_without_duplicates_or_deletions(world: World, database: Database) -> None:
    from sqlalchemy import update

    from store.models import CalendarLinkRow

    world.person.add(timed(3))
    world.service.add_block("alice", timed(9))
    world.sync()
    with database.session() as session:  # the server forgot the token (Radicale drops them after 30 days)
        link = session.get(CalendarLinkRow, 1)
        assert link is not None and link.cursor
        session.execute(update(CalendarLinkRow).values(cursor=link.cursor.replace('"t":"', '"t":"x')))
    world.person.add(timed(12))
    world.sync()
    assert world.blocks() == [timed(3), timed(9), timed(12)]
    assert len(world.objects()) == 3


# -- `syncd sync --once` and `syncd run` ------------------------------------------------------------


def _config_file(tmp_path: Path, caldav: CalDAVServer, calendar: str, poll: str = "1h") -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f"""
[daemon]
database_url = "sqlite:///{tmp_path / 'syncd.db'}"
poll_interval = "{poll}"
[api]
listen = "127.0.0.1:0"
[[accounts]]
name = "dav"
provider = "caldav"
url = "{caldav.base_url}"
username = "{caldav.username}"
password_env = "TEST_CALDAV_PASSWORD"
[[users]]
id = "alice"
email = "alice@example.com"
timezone = "{TZ}"
calendars = [{{ account = "dav", calendar = "{calendar}" }}]
[[sinks]]
type = "stdout"
""")
    return path


def test_sync_once_from_the_command_line(caldav: CalDAVServer, calendar: str, tmp_path: Path) -> None:
    CalDAVPerson(caldav, calendar, TZ).add(timed(2))
    env = {**os.environ, "PYTHONWARNINGS": "error", "TEST_CALDAV_PASSWORD": caldav.password}
    config = _config_file(tmp_path, caldav, calendar)
    done = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "sync", "--once"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "synced 1/1 links" in done.stdout
    listed = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "ooo", "list", "alice"],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert listed.returncode == 0 and "calendar:dav/" in listed.stdout


def test_the_daemon_keeps_both_sides_in_step(caldav: CalDAVServer, calendar: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CALDAV_PASSWORD", caldav.password)
    person = CalDAVPerson(caldav, calendar, TZ)
    rt = build_runtime(load_config(_config_file(tmp_path, caldav, calendar, poll="1s")))
    daemon = Daemon(rt, serve_api=False)
    daemon.start()
    try:
        person.add(timed(2))
        deadline = time.monotonic() + 30
        while not rt.service.list_blocks("alice") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(rt.service.list_blocks("alice")) == 1, "the daemon did not pull the calendar's OOO"
        rt.service.add_block("alice", timed(6))
        while len(caldav.list_hrefs(calendar)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(caldav.list_hrefs(calendar)) == 2, "the daemon did not push the helpdesk's block"
    finally:
        daemon.stop()
