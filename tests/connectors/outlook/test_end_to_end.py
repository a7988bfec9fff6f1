"""Two-way sync with Microsoft 365 end to end: the service, the syncer, msal and the fake Graph
over TLS (and, for change notifications, the daemon with its HTTP API)."""

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

from connectors.outlook.connector import OutlookConnector
from connectors.registry import Connectors
from store.db import Database
from store.models import CalendarLinkRow, PushChannelRow
from syncd.config import AccountConfig, Options, load_config
from syncd.core.calendars import EventDraft
from syncd.core.ooo import OooContent
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from syncd.service import Syncd
from syncd.service.push import PushChannels
from syncd.sync import LinkSyncer
from tests.conftest import make_config, user
from tests.connectors.contract import all_day, timed
from tests.connectors.outlook.support import OutlookPerson, options_for
from tests.fakes.graph import FakeGraph
from tests.support import free_port

TZ = "Europe/Stockholm"
ALICE = "alice@example.com"  # `user("alice")` in conftest gives this email


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def person(fake: FakeGraph, request: pytest.FixtureRequest) -> OutlookPerson:
    # The server is shared by the module: every test starts from an empty mailbox.
    for event in fake.events(ALICE):
        fake.delete_event(ALICE, event["id"])
    fake.set_automatic_replies(ALICE, "disabled")
    return OutlookPerson(fake, ALICE, TZ)


def outlook_account(fake: FakeGraph, **extra: Any) -> AccountConfig:
    return AccountConfig(name="m365", provider="outlook", options=Options(options_for(fake, **extra)))


@dataclass
class World:
    service: Syncd
    syncer: LinkSyncer
    connectors: Connectors
    person: OutlookPerson
    fake: FakeGraph

    def sync(self) -> list[Any]:
        return self.syncer.sync_once()

    def blocks(self) -> list[OooContent]:
        return sorted((b.content for b in self.service.list_blocks("alice")), key=lambda c: c.start)

    def ooo_events(self) -> list[dict[str, Any]]:
        return self.person.events()


def _world(fake: FakeGraph, database: Database, person: OutlookPerson, **extra: Any) -> tuple[World, Connectors]:
    config = make_config([user("alice", "primary", account="m365", tz=TZ)],
                         accounts={"m365": outlook_account(fake, **extra)})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    return World(service, LinkSyncer(service, connectors), connectors, person, fake), connectors


@pytest.fixture
def world(fake: FakeGraph, database: Database, person: OutlookPerson) -> Iterator[World]:
    built, connectors = _world(fake, database, person)
    yield built
    connectors.close()


def test_oof_added_in_outlook_becomes_a_block(world: World) -> None:
    world.person.add(timed(3))
    world.person.add(timed(4), ooo=False)
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert world.blocks() == [timed(3)]


def test_block_added_in_the_helpdesk_becomes_an_oof_event(world: World) -> None:
    world.service.add_block("alice", all_day(5, 2))
    world.sync()
    [event] = world.ooo_events()
    assert event["isAllDay"] is True and event["isReminderOn"] is False
    outcomes = world.sync()
    assert outcomes[0].actions == 0
    assert world.blocks() == [all_day(5, 2)]
    assert len(world.ooo_events()) == 1


def test_edits_and_ending_early_flow_both_ways(world: World) -> None:
    event_id = world.person.add(timed(3))
    world.sync()
    world.person.edit(event_id, timed(3, hours=2, title="Dentist"))
    world.sync()
    assert world.blocks() == [timed(3, hours=2, title="Dentist")]

    now = datetime.now(UTC)
    world.person.add(OooContent(now - timedelta(hours=1), now + timedelta(days=1), title="Sick"))
    world.sync()
    current = next(b for b in world.service.list_blocks("alice") if b.content.title == "Sick")
    ended = world.service.end_block_early(current.id)
    world.sync()
    sick = next(e for e in world.ooo_events() if e["subject"] == "Sick")
    stored_end = datetime.fromisoformat(sick["end"]["dateTime"][:19]).replace(tzinfo=UTC)
    assert abs(stored_end - ended.end) < timedelta(seconds=1)


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


def test_oof_changed_to_busy_deletes_the_block(world: World) -> None:
    event_id = world.person.add(timed(3))
    world.sync()
    world.person.unmark_ooo(event_id)
    world.sync()
    assert world.blocks() == []


def test_recurring_series_both_ways(world: World) -> None:
    first_day = (datetime.now(UTC) + timedelta(days=2)).date()
    world.fake.add_event(ALICE, {
        "subject": "Course", "showAs": "oof",
        "start": {"dateTime": f"{first_day}T08:00:00", "timeZone": TZ},
        "end": {"dateTime": f"{first_day}T12:00:00", "timeZone": TZ},
        "recurrence": {"pattern": {"type": "daily", "interval": 7},
                       "range": {"type": "numbered", "startDate": str(first_day), "numberOfOccurrences": 3}}})
    world.sync()
    blocks = sorted(world.service.list_blocks("alice"), key=lambda b: b.content.start)
    assert len(blocks) == 3
    first = blocks[0]
    world.service.edit_block(first.id, OooContent(first.content.start, first.content.start + timedelta(hours=1),
                                                  title="Course"))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    view = world.fake.view(ALICE, datetime.now(UTC), datetime.now(UTC) + timedelta(days=30))
    shortened = [e for e in view if e.get("type") == "exception"]
    assert len(shortened) == 1
    last = [e for e in view if e.get("type") == "occurrence"][-1]
    world.fake.delete_event(ALICE, last["id"])
    world.sync()
    assert len(world.service.list_blocks("alice")) == 2


def test_expired_delta_link_resyncs_without_duplicates_or_deletions(world: World) -> None:
    world.person.add(timed(3))
    world.service.add_block("alice", timed(9))
    world.sync()
    world.fake.expire_delta_tokens(ALICE)
    world.person.add(timed(12))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert world.blocks() == [timed(3), timed(9), timed(12)]
    assert len(world.ooo_events()) == 3


def test_crash_between_post_and_link_makes_no_second_event(world: World) -> None:
    block = world.service.add_block("alice", timed(4))
    connector = world.connectors.for_account("m365")
    connector.create(connector.address(ALICE, "primary"), EventDraft(block.id, timed(4), TZ))
    [outcome] = world.sync()
    assert outcome.ok, outcome.error
    assert len(world.ooo_events()) == 1
    assert world.blocks() == [timed(4)]


def test_automatic_replies_are_a_read_only_source(fake: FakeGraph, database: Database,
                                                  person: OutlookPerson) -> None:
    world, connectors = _world(fake, database, person, automatic_replies=True)
    try:
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
        fake.set_automatic_replies(ALICE, "scheduled", start, start + timedelta(days=2))
        [outcome] = world.sync()
        assert outcome.ok, outcome.error
        [block] = world.service.list_blocks("alice")
        assert block.content.start == start and block.content.title == "Automatic replies"
        # The helpdesk edits it: the mailbox's schedule wins, and nothing is written to Outlook.
        world.service.edit_block(block.id, OooContent(start, start + timedelta(days=5), title="Automatic replies"))
        [outcome] = world.sync()
        assert outcome.ok, outcome.error
        [block] = world.service.list_blocks("alice")
        assert block.content.end == start + timedelta(days=2)
        assert world.ooo_events() == []
        fake.set_automatic_replies(ALICE, "disabled")
        world.sync()
        assert world.service.list_blocks("alice") == []
    finally:
        connectors.close()


# -- `syncd sync --once` and `syncd run` ------------------------------------------------------------


def _config_file(tmp_path: Path, fake: FakeGraph, *, extra_account: str = "", api: str = "") -> Path:
    path = tmp_path / "syncd.toml"
    path.write_text(f"""
[daemon]
database_url = "sqlite:///{tmp_path / 'syncd.db'}"
poll_interval = "1h"
{api}
[[accounts]]
name = "m365"
provider = "outlook"
tenant_id = "{fake.tenant_id}"
client_id = "{fake.client_id}"
client_secret_env = "TEST_M365_SECRET"
authority = "{fake.authority}"
graph_url = "{fake.graph_url}"
ca_bundle = "{fake.ca_bundle_path}"
{extra_account}
[[users]]
id = "alice"
email = "{ALICE}"
timezone = "{TZ}"
calendars = [{{ account = "m365" }}]
[[sinks]]
type = "stdout"
""")
    return path


def test_sync_once_from_the_command_line(fake: FakeGraph, person: OutlookPerson, tmp_path: Path) -> None:
    config = _config_file(tmp_path, fake)
    person.add(timed(2))
    env = {**os.environ, "PYTHONWARNINGS": "error", "TEST_M365_SECRET": fake.client_secret}
    done = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "sync", "--once"], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "synced 1/1 links" in done.stdout
    assert fake.client_secret not in done.stdout + done.stderr


def test_change_notification_triggers_a_sync(fake: FakeGraph, person: OutlookPerson, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/v1/hooks/outlook"
    monkeypatch.setenv("TEST_M365_SECRET", fake.client_secret)
    config = load_config(_config_file(tmp_path, fake, extra_account=f'push_url = "{hook}"',
                                      api=f'[api]\nlisten = "127.0.0.1:{port}"'))
    rt = build_runtime(config)
    daemon = Daemon(rt)
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while (not fake.subscriptions or rt.service.links()[0]["last_success"] is None) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        [subscription] = fake.subscriptions.values()
        assert subscription["notificationUrl"] == hook  # the validation handshake passed
        person.add(timed(2))
        while not rt.service.list_blocks("alice") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt.service.list_blocks("alice"), "the notification did not lead to a sync"
    finally:
        daemon.stop()


def test_forged_and_lifecycle_notifications(fake: FakeGraph, database: Database, person: OutlookPerson) -> None:
    from fastapi.testclient import TestClient

    from syncd.api import create_app
    from syncd.service.metrics import Metrics

    config = make_config([user("alice", "primary", account="m365", tz=TZ)],
                         accounts={"m365": outlook_account(fake, push_url="https://hooks.example/o")})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    push = PushChannels(service, connectors)
    metrics = Metrics(database, service.clock)
    fake.validation_timeout = 0.5  # hooks.example does not answer: the fake gives up quickly
    try:
        client = TestClient(create_app(service, push=push, metrics=metrics))
        echoed = client.post("/v1/hooks/outlook", params={"validationToken": "Validation: a token with spaces"})
        assert (echoed.status_code, echoed.text) == (200, "Validation: a token with spaces")
        # A subscription as the connector would have made it (its own handshake needs a public URL).
        with database.session() as session:
            link_id = session.scalars(select(CalendarLinkRow.id)).one()
            from syncd.service.push import digest
            expires = datetime.now(UTC) + timedelta(days=2)
            session.add(PushChannelRow(id="sub-1", link_id=link_id, token_digest=digest("client-state"),
                                       resource_id="users/alice/events", expires_at=expires,
                                       created_at=datetime.now(UTC)))
            session.execute(CalendarLinkRow.__table__.update().values(next_poll_at=None, cursor="x"))
        forged = client.post("/v1/hooks/outlook", json={"value": [{"subscriptionId": "sub-1", "clientState": "guess",
                                                                   "changeType": "created"}]})
        assert forged.status_code == 202
        with database.session() as session:
            assert session.scalars(select(CalendarLinkRow.next_poll_at)).one() is None
        assert metrics.push_refused._value.get() == 1  # type: ignore[attr-defined]
        real = client.post("/v1/hooks/outlook", json={"value": [{"subscriptionId": "sub-1",
                                                                 "clientState": "client-state",
                                                                 "changeType": "updated"}]})
        assert real.status_code == 202
        with database.session() as session:
            assert session.scalars(select(CalendarLinkRow.next_poll_at)).one() is not None
        missed = client.post("/v1/hooks/outlook", json={"value": [{"subscriptionId": "sub-1",
                                                                   "clientState": "client-state",
                                                                   "lifecycleEvent": "missed"}]})
        assert missed.status_code == 202
        with database.session() as session:
            assert session.scalars(select(CalendarLinkRow.cursor)).one() is None  # a full listing next
        client.post("/v1/hooks/outlook", json={"value": [{"subscriptionId": "sub-1", "clientState": "client-state",
                                                          "lifecycleEvent": "reauthorizationRequired"}]})
        with database.session() as session:
            row = session.get(PushChannelRow, "sub-1")
            assert row is not None and row.expires_at <= datetime.now(UTC)  # renewed on the next pass
        client.post("/v1/hooks/outlook", json={"value": [{"subscriptionId": "sub-1", "clientState": "client-state",
                                                          "lifecycleEvent": "subscriptionRemoved"}]})
        with database.session() as session:
            assert session.get(PushChannelRow, "sub-1") is None  # opened again on the next pass
        assert client.post("/v1/hooks/outlook", content=b"not json").status_code == 400
        client.close()
    finally:
        connectors.close()


def test_outlook_connector_is_built_from_config(fake: FakeGraph) -> None:
    connectors = Connectors({"m365": outlook_account(fake, batch_size=10)})
    try:
        connector = connectors.for_account("m365")
        assert isinstance(connector, OutlookConnector)
        assert connector.options.batch_size == 10
    finally:
        connectors.close()
