"""Provider faults at 30 % of requests: syncs fail and back off, nothing is duplicated or
lost, and once the faults stop, both sides converge."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from connectors.registry import Connectors
from store.db import Database
from store.models import CalendarLinkRow
from syncd.config import AccountConfig, Options
from syncd.service import Syncd
from syncd.sync import LinkSyncer
from tests.conftest import make_config, user
from tests.connectors.contract import timed
from tests.connectors.google.support import GooglePerson, service_account_file
from tests.connectors.google.support import account_toml as google_account_toml
from tests.connectors.outlook.support import OutlookPerson, options_for
from tests.connectors.outlook.support import account_toml as outlook_account_toml
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph

TZ = "Europe/Stockholm"
USERS = [f"u{n}" for n in range(6)]


def _run(service: Syncd, syncer: LinkSyncer, rounds: int) -> list[Any]:
    outcomes: list[Any] = []
    for _ in range(rounds):
        with service.db.session() as session:  # whatever the backoff said: poll now
            session.execute(update(CalendarLinkRow).values(next_poll_at=None, state="ok"))
        outcomes += syncer.sync_once()
    return outcomes


def _scenario(service: Syncd, syncer: LinkSyncer, people: dict[str, Any], set_faults: Any,
              ooo_of: Any) -> None:
    """Both sides edit while 30 % of requests fail; then the faults stop and everything settles."""
    set_faults(0.3)
    theirs = {uid: people[uid].add(timed(3 + n)) for n, uid in enumerate(USERS)}
    ours = {uid: service.add_block(uid, timed(20 + n)) for n, uid in enumerate(USERS)}
    failed = [o for o in _run(service, syncer, 4) if not o.ok]
    for n, uid in enumerate(USERS[:3]):
        people[uid].edit(theirs[uid], timed(3 + n, hours=2, title="Moved"))
        service.edit_block(ours[uid].id, timed(30 + n))
    failed += [o for o in _run(service, syncer, 4) if not o.ok]
    assert failed, "30 % of requests failed, yet no sync did: the faults did not reach syncd"
    set_faults(0)
    _run(service, syncer, 3)
    for n, uid in enumerate(USERS):
        blocks = sorted((b.content for b in service.list_blocks(uid)), key=lambda c: c.start)
        first = timed(3 + n, hours=2, title="Moved") if n < 3 else timed(3 + n)
        assert blocks == sorted([first, timed(30 + n) if n < 3 else timed(20 + n)], key=lambda c: c.start), uid
        events = sorted(ooo_of(uid), key=lambda c: c.start)
        assert events == [b for b in sorted(blocks, key=lambda c: c.start)], uid  # no duplicates, nothing lost


@pytest.fixture
def google(tmp_path: Path) -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as fake:
        yield fake


def test_google_under_faults_converges(google: FakeGoogleCalendar, database: Database, tmp_path: Path) -> None:
    account = AccountConfig(name="gw", provider="google", options=Options({
        "api_endpoint": google.api_endpoint, "batch_uri": google.batch_uri,
        "service_account_file": str(service_account_file(tmp_path, google))}))
    config = make_config([user(u, "primary", account="gw", tz=TZ) for u in USERS], accounts={"gw": account},
                         poll_interval=timedelta(minutes=5))
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    try:
        people = {u: GooglePerson(google, f"{u}@example.com") for u in USERS}
        from connectors.google.connector import event_content

        def ooo_of(uid: str) -> list[Any]:
            return [event_content(e, TZ) for e in people[uid].events()]
        _scenario(service, LinkSyncer(service, connectors), people, google.fault_rate, ooo_of)
    finally:
        connectors.close()


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


def test_outlook_under_faults_converges(graph: FakeGraph, database: Database) -> None:
    account = AccountConfig(name="m365", provider="outlook", options=Options(options_for(graph)))
    domain = f"d{database.dialect}.example.com"  # a fresh set of mailboxes per database
    config = make_config([replace(user(u, "primary", account="m365", tz=TZ), email=f"{u}@{domain}") for u in USERS],
                         accounts={"m365": account})
    service = Syncd(config, database)
    service.prepare()
    connectors = Connectors(config.accounts)
    try:
        people = {u: OutlookPerson(graph, f"{u}@{domain}", TZ) for u in USERS}
        from connectors.outlook.connector import event_content

        def ooo_of(uid: str) -> list[Any]:
            return [event_content(e, TZ) for e in people[uid].events()]
        _scenario(service, LinkSyncer(service, connectors), people, graph.fault_rate, ooo_of)
    finally:
        connectors.close()


def test_a_failing_provider_neither_delays_the_others_nor_floods_the_log(
        google: FakeGoogleCalendar, graph: FakeGraph, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import time

    from syncd.config import load_config
    from syncd.daemon import Daemon
    from syncd.daemon.runtime import build_runtime

    config = tmp_path / "syncd.toml"
    mailboxes = [f"m{n}@down.example.com" for n in range(3)]
    config.write_text(f"""
[daemon]
database_url = "sqlite:///{tmp_path / 'syncd.db'}"
poll_interval = "1s"
{google_account_toml(google, tmp_path)}
{outlook_account_toml(graph)}
""" + "".join(f'[[users]]\nid = "g{n}"\nemail = "g{n}@example.com"\ntimezone = "{TZ}"\n'
              'calendars = [{ account = "gw" }]\n' for n in range(3))
        + "".join(f'[[users]]\nid = "m{n}"\nemail = "{mailboxes[n]}"\ntimezone = "{TZ}"\n'
                  'calendars = [{ account = "m365" }]\n' for n in range(3)))
    for mailbox in mailboxes:  # Microsoft 365 is down for these mailboxes
        graph.block_mailbox(mailbox, status=503, code="ServiceUnavailable")
    rt = build_runtime(load_config(config))
    daemon = Daemon(rt, serve_api=False)
    with caplog.at_level(logging.INFO, logger="syncd"):
        daemon.start()
        try:
            successes: dict[str, set[str]] = {f"g{n}": set() for n in range(3)}
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                for link in rt.service.links():
                    if link["user"] in successes and link["last_success"]:
                        successes[link["user"]].add(link["last_success"])
                time.sleep(0.2)
        finally:
            daemon.stop()
        for mailbox in mailboxes:
            graph.unblock_mailbox(mailbox)
    # Google users kept being polled every second or so while Microsoft 365 failed
    assert all(len(polls) >= 3 for polls in successes.values()), successes
    states = {link["user"]: link["state"] for link in rt.service.links()}
    assert all(states[f"m{n}"] == "error" for n in range(3))
    failed_lines = [r.getMessage() for r in caplog.records if "sync failed" in r.getMessage()]
    for n in range(3):  # one line per failing link for the whole episode, not one per poll
        assert len([line for line in failed_lines if f"m{n}/" in line]) == 1, failed_lines
