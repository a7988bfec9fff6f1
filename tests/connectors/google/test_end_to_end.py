"""Two-way sync with Google Calendar end to end: the service, the syncer, the real client
library and the fake Google server (and, for push, the daemon with its HTTP API)."""

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
from sqlalchemy import select

from connectors.google.connector import BLOCK_PROPERTY, GoogleConnector
from connectors.registry import Connectors
from store.db import Database
from store.models import BlockRow, CalendarLinkRow, PushChannelRow
from syncd.config import AccountConfig, ApiConfig, Options
from syncd.core.ooo import OooContent
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import make_config, user
from tests.connectors.contract import all_day, timed
from tests.connectors.google.support import ALICE, GooglePerson, service_account_file
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.support import free_port

TZ = "Europe/Stockholm"


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server


def google_account(fake: FakeGoogleCalendar, folder: Path, **extra: Any) -> AccountConfig:
    options = {"api_endpoint": fake.api_endpoint, "batch_uri": fake.batch_uri,
               "service_account_file": str(service_account_file(folder, fake)), **extra}
    return AccountConfig(name="gw", provider="google", options=Options(options))


@dataclass
class World:
    service: Syncd
    syncer: LinkSyncer
    connectors: Connectors
    person: GooglePerson
    fake: FakeGoogleCalendar

    def sync(self) -> list[Any]:
        return self.syncer.sync_once()

    def blocks(self) -> list[OooContent]:
        return sorted((b.content for b in self.service.list_blocks("alice")), key=lambda c: c.start)

    def ooo_events(self) -> list[dict[str, Any]]:
        return self.person.events()


@pytest.fixture
def world(fake: FakeGoogleCalendar, database: Database, tmp_path: Path) -> Iterator[World]:
    config = make_config([user("alice", "primary", account="gw", tz=TZ)],
                         accounts={"gw": google_account(fake, tmp_path)})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    yield World(service, LinkSyncer(service, connectors), connectors, GooglePerson(fake, ALICE, "primary", TZ), fake)
    connectors.close()


def test_ooo_added_in_google_becomes_a_block(world: World) -> None:
    world.person.add(timed(3))
    world.person.add(timed(4), ooo=False)  # a meeting: not OOO
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert world.blocks() == [timed(3)]


def test_block_added_in_the_helpdesk_becomes_an_ooo_event(world: World) -> None:
    block = world.service.add_block("alice", all_day(5, 2))
    world.sync()
    [event] = world.ooo_events()
    assert event["extendedProperties"]["private"][BLOCK_PROPERTY] == block.id
    assert event["start"]["timeZone"] == TZ
    # nothing more to do: the next pass writes nothing
    before = world.fake.request_count(include_batch_parts=True)
    outcomes = world.sync()
    assert outcomes[0].actions == 0
    assert world.fake.request_count(include_batch_parts=True) - before == 1  # the one listing
    assert world.blocks() == [all_day(5, 2)]


def test_edits_flow_both_ways(world: World) -> None:
    event_id = world.person.add(timed(3))
    world.sync()
    world.person.edit(event_id, timed(3, hours=2, title="Dentist"))
    world.sync()
    assert world.blocks() == [timed(3, hours=2, title="Dentist")]

    [block] = world.service.list_blocks("alice")
    world.service.edit_block(block.id, timed(6, hours=5, title="Dentist"))
    world.sync()
    [event] = world.ooo_events()
    assert event["id"] == event_id
    assert datetime.fromisoformat(event["end"]["dateTime"]) == timed(6, hours=5).end


def test_ending_early_in_the_helpdesk_shortens_the_event(world: World) -> None:
    now = datetime.now(UTC)
    world.person.add(OooContent(now - timedelta(hours=1), now + timedelta(days=2)))
    world.sync()
    [block] = world.service.list_blocks("alice")
    ended = world.service.end_block_early(block.id)
    world.sync()
    [event] = world.ooo_events()
    assert datetime.fromisoformat(event["end"]["dateTime"]) == ended.end.replace(microsecond=0) \
        or datetime.fromisoformat(event["end"]["dateTime"]) == ended.end


def test_deletes_flow_both_ways(world: World) -> None:
    theirs = world.person.add(timed(3))
    ours = world.service.add_block("alice", timed(8))
    world.sync()
    assert len(world.ooo_events()) == 2
    world.person.remove(theirs)
    world.service.delete_block(ours.id)
    world.sync()
    assert world.blocks() == []
    assert world.ooo_events() == []


def test_expired_sync_token_resyncs_without_duplicates_or_deletions(world: World) -> None:
    world.person.add(timed(3))
    world.service.add_block("alice", timed(9))
    world.sync()
    world.fake.expire_sync_tokens(ALICE, "primary")
    world.person.add(timed(12))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert world.blocks() == [timed(3), timed(9), timed(12)]
    assert len(world.ooo_events()) == 3


def test_crash_between_insert_and_link_makes_no_second_event(world: World, database: Database) -> None:
    block = world.service.add_block("alice", timed(4))
    connector = world.connectors.for_account("gw")
    # syncd wrote the event, then died before the link was saved
    connector.create(connector.address(ALICE, "primary"), _draft(block.id, timed(4)))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert len(world.ooo_events()) == 1
    assert world.blocks() == [timed(4)]
    world.sync()
    assert len(world.ooo_events()) == 1


def test_one_users_failure_does_not_stop_the_others(fake: FakeGoogleCalendar, database: Database,
                                                    tmp_path: Path) -> None:
    config = make_config([user(name, "primary", account="gw", tz=TZ) for name in ("alice", "bob", "carol")],
                         accounts={"gw": google_account(fake, tmp_path)})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    try:
        for name in ("alice", "bob", "carol"):
            GooglePerson(fake, f"{name}@example.com").add(timed(3))
        fake.deny_subject("bob@example.com")
        outcomes = {o.user_id: o for o in LinkSyncer(service, connectors).sync_once()}
    finally:
        connectors.close()
    assert outcomes["alice"].ok and outcomes["carol"].ok
    assert not outcomes["bob"].ok and "cannot sign in" in (outcomes["bob"].error or "")
    links = {link["user"]: link for link in service.links()}
    assert links["bob"]["state"] == "reauth_required"
    assert links["alice"]["state"] == "ok"


def _draft(block_id: str, content: OooContent) -> Any:
    from syncd.core.calendars import EventDraft
    return EventDraft(block_id, content, TZ)


# -- `syncd sync` and `syncd run` -------------------------------------------------------------


def _config_file(tmp_path: Path, fake: FakeGoogleCalendar, *, extra_account: str = "", api: str = "") -> Path:
    sa = service_account_file(tmp_path, fake)
    path = tmp_path / "syncd.toml"
    path.write_text(f"""
[daemon]
database_url = "sqlite:///{tmp_path / 'syncd.db'}"
poll_interval = "1h"
{api}
[[accounts]]
name = "workspace"
provider = "google"
service_account_file = "{sa}"
api_endpoint = "{fake.api_endpoint}"
batch_uri = "{fake.batch_uri}"
{extra_account}
[[users]]
id = "alice"
email = "{ALICE}"
timezone = "{TZ}"
calendars = [{{ account = "workspace" }}]
[[sinks]]
type = "stdout"
""")
    return path


def _syncd(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), *args], capture_output=True,
                          text=True, env=env, input=stdin, timeout=120, check=False)


def test_sync_once_from_the_command_line(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    config = _config_file(tmp_path, fake)
    GooglePerson(fake).add(timed(2))
    first = _syncd(config, "sync", "--once")
    assert first.returncode == 0, first.stderr
    assert "synced 1/1 links" in first.stdout
    listed = _syncd(config, "ooo", "list", "alice")
    assert listed.returncode == 0 and "calendar:workspace/primary" in listed.stdout


def test_refresh_tokens_are_stored_encrypted_and_used(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    key = _syncd(tmp_path / "unused.toml", "credentials", "new-key").stdout.strip()
    fake.add_refresh_token("1//alice-secret-token", ALICE)
    config = tmp_path / "syncd.toml"
    config.write_text(f"""
[daemon]
database_url = "sqlite:///{tmp_path / 'syncd.db'}"
[[accounts]]
name = "workspace"
provider = "google"
client_id = "client"
client_secret = "secret"
token_uri = "{fake.token_uri}"
token_key = "{key}"
api_endpoint = "{fake.api_endpoint}"
batch_uri = "{fake.batch_uri}"
[[users]]
id = "alice"
email = "{ALICE}"
timezone = "{TZ}"
calendars = [{{ account = "workspace" }}]
""")
    missing = _syncd(config, "sync", "--once")
    assert missing.returncode == 1 and "syncd credentials set workspace" in missing.stderr
    stored = _syncd(config, "credentials", "set", "workspace", "alice", stdin="1//alice-secret-token\n")
    assert stored.returncode == 0, stored.stderr
    assert b"alice-secret-token" not in (tmp_path / "syncd.db").read_bytes()
    listed = _syncd(config, "credentials", "list")
    assert ALICE in listed.stdout and "alice-secret-token" not in listed.stdout
    GooglePerson(fake).add(timed(2))
    synced = _syncd(config, "sync", "--once")
    assert synced.returncode == 0, synced.stderr
    fake.revoke_refresh_token("1//alice-secret-token")
    fake.invalidate_access_tokens()
    revoked = _syncd(config, "sync", "--once")
    assert revoked.returncode == 1
    status = _syncd(config, "status")
    assert "reauth_required" in status.stderr



def test_push_notification_triggers_a_sync(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/v1/hooks/google"
    from syncd.config import load_config
    config = load_config(_config_file(tmp_path, fake, extra_account=f'push_url = "{hook}"',
                                      api=f'[api]\nlisten = "127.0.0.1:{port}"'))
    assert isinstance(config.api, ApiConfig)
    rt = build_runtime(config)
    daemon = Daemon(rt)
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while not fake.channels and time.monotonic() < deadline:
            time.sleep(0.05)
        [channel] = fake.channels.values()
        assert channel["address"] == hook
        # the first poll has run (the link is then not due for an hour)
        while rt.service.links()[0]["last_success"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        GooglePerson(fake).add(timed(2))
        edited = time.monotonic()
        while not rt.service.list_blocks("alice") and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - edited
        assert rt.service.list_blocks("alice"), "the notification did not lead to a sync"
        print(f"push to block: {took:.2f}s")
        with rt.db.session() as session:
            [row] = session.scalars(select(PushChannelRow)).all()
            assert row.notified_at is not None
            link = session.scalars(select(CalendarLinkRow)).one()
            assert link.next_poll_at is not None
            # polling continues as the fallback, at the longer interval while the channel lives
            assert link.next_poll_at - datetime.now(UTC) > timedelta(minutes=50)
    finally:
        daemon.stop()


def test_forged_notifications_are_refused(fake: FakeGoogleCalendar, database: Database, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from syncd.api import create_app
    from syncd.service.push import PushChannels

    config = make_config([user("alice", "primary", account="gw", tz=TZ)],
                         accounts={"gw": google_account(fake, tmp_path, push_url="https://hooks.example/g")})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    push = PushChannels(service, connectors)
    try:
        assert push.refresh() == 1
        [channel] = fake.channels.values()
        with database.session() as session:
            session.execute(CalendarLinkRow.__table__.update().values(next_poll_at=None))
        client = TestClient(create_app(service, push=push))
        forged = client.post("/v1/hooks/google", headers={"X-Goog-Channel-ID": channel["id"],
                                                          "X-Goog-Channel-Token": "guess",
                                                          "X-Goog-Resource-State": "exists"})
        unknown = client.post("/v1/hooks/google", headers={"X-Goog-Channel-ID": "nope",
                                                           "X-Goog-Channel-Token": channel["token"]})
        assert forged.status_code == 403 and unknown.status_code == 403
        with database.session() as session:
            assert session.scalars(select(CalendarLinkRow.next_poll_at)).one() is None
        real = client.post("/v1/hooks/google", headers={"X-Goog-Channel-ID": channel["id"],
                                                        "X-Goog-Channel-Token": channel["token"],
                                                        "X-Goog-Resource-ID": channel["resourceId"],
                                                        "X-Goog-Resource-State": "exists"})
        assert real.status_code == 200
        with database.session() as session:
            assert session.scalars(select(CalendarLinkRow.next_poll_at)).one() is not None
        client.close()
        # the link is removed from the config: its channel is stopped
        with database.session() as session:
            session.execute(CalendarLinkRow.__table__.update().values(enabled=False))
        push.refresh()
        assert channel["stopped"]
        with database.session() as session:
            assert session.scalars(select(PushChannelRow)).all() == []
    finally:
        connectors.close()


def test_channels_are_renewed_before_they_expire(fake: FakeGoogleCalendar, database: Database,
                                                 tmp_path: Path) -> None:
    from syncd.service.push import PushChannels

    config = make_config([user("alice", "primary", account="gw", tz=TZ)],
                         accounts={"gw": google_account(fake, tmp_path, push_url="https://hooks.example/g",
                                                        channel_ttl=timedelta(days=1))})
    now = [datetime.now(UTC)]
    service = Syncd(config, database, clock=lambda: now[0])
    service.prepare()
    connectors = Connectors(config.accounts)
    push = PushChannels(service, connectors)
    try:
        assert push.refresh() == 1
        assert push.refresh() == 0  # still fresh
        first = next(iter(fake.channels))
        now[0] += timedelta(hours=20)  # less than a quarter of the day left
        assert push.refresh() == 1
        assert fake.channels[first]["stopped"]
        live = [c for c in fake.channels.values() if not c["stopped"]]
        assert len(live) == 1
    finally:
        connectors.close()


def test_google_connector_is_built_from_config(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    connectors = Connectors({"gw": google_account(fake, tmp_path, batch_size=7)})
    try:
        connector = connectors.for_account("gw")
        assert isinstance(connector, GoogleConnector)
        assert connector.options.batch_size == 7
    finally:
        connectors.close()


def test_block_rows_keep_the_calendar_as_source(world: World, database: Database) -> None:
    world.person.add(timed(3))
    world.sync()
    with database.session() as session:
        assert session.scalars(select(BlockRow.source)).all() == ["calendar:gw/primary"]


def test_recurring_ooo_both_ways(world: World) -> None:
    from zoneinfo import ZoneInfo

    first = (datetime.now(UTC) + timedelta(days=3)).date()
    master = world.fake.add_event(ALICE, "primary", {
        "summary": "Course", "eventType": "outOfOffice",
        "start": {"dateTime": f"{first}T08:00:00", "timeZone": TZ},
        "end": {"dateTime": f"{first}T12:00:00", "timeZone": TZ},
        "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"]})["id"]
    world.sync()
    blocks = world.service.list_blocks("alice")
    assert len(blocks) == 3
    starts = sorted(b.content.start for b in blocks)
    assert starts[0] == datetime.combine(first, datetime.min.time().replace(hour=8), tzinfo=ZoneInfo(TZ))

    # The helpdesk shortens the first occurrence: Google gets an exception for that instance only.
    block = next(b for b in blocks if b.content.start == starts[0])
    world.service.edit_block(block.id, OooContent(block.content.start, block.content.start + timedelta(hours=1),
                                                  title="Course"))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    instance = f"{master}_{starts[0].astimezone(UTC):%Y%m%dT%H%M%SZ}"
    exceptions = {e["id"]: e for e in world.fake.events(ALICE, "primary") if e.get("recurringEventId") == master}
    assert datetime.fromisoformat(exceptions[instance]["end"]["dateTime"]) == starts[0] + timedelta(hours=1)

    # The person cancels the last occurrence in Google: its block goes.
    world.fake.delete_event(ALICE, "primary", f"{master}_{starts[2].astimezone(UTC):%Y%m%dT%H%M%SZ}")
    world.sync()
    assert sorted(b.content.start for b in world.service.list_blocks("alice")) == starts[:2]
