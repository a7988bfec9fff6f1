"""What a stranger, or a token of a lesser scope, can make the HTTP API do.

Push hooks are open to the internet: they exist only where push is configured, refuse big or
malformed bodies, and a forged notification writes nothing. The event loop never waits for
the database, so /healthz answers while the database is stuck. Strangers learn little from
/readyz and nothing from the OpenAPI document. Changing a user's calendar links, which aims
syncd's calendar credentials, needs the admin scope.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import event, select, update

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store import push as channels
from store.db import Database
from store.models import CalendarLinkRow
from syncd.api import create_app
from syncd.config import AccountConfig, ApiConfig, ApiToken, Config, Options
from syncd.core.errors import ConfigError
from syncd.service import Syncd
from syncd.service.push import PushChannels, digest
from syncd.service.rotations import RotationEngine
from tests.conftest import Clock, make_config, user
from tests.support import free_port

TOKENS = (ApiToken("hd", "w-token-of-at-least-24-chars", ("write",)),
          ApiToken("ro", "r-token-of-at-least-24-chars", ("read",)),
          ApiToken("root", "a-token-of-at-least-24-chars", ("admin",)))
W = {"Authorization": "Bearer w-token-of-at-least-24-chars"}
R = {"Authorization": "Bearer r-token-of-at-least-24-chars"}
A = {"Authorization": "Bearer a-token-of-at-least-24-chars"}


def config_with(push: bool, **api: Any) -> Config:
    options = Options({"push_url": "https://syncd.example/v1/hooks/google"} if push else {})
    accounts = {"mem": AccountConfig(name="mem", provider="memory"),
                "gw": AccountConfig(name="gw", provider="google", options=options)}
    base = make_config([user("alice", "work")], accounts=accounts)
    return dataclasses.replace(base, api=ApiConfig(tokens=TOKENS, **api))


@pytest.fixture
def make_app(database: Database, clock: Clock) -> Iterator[Callable[..., tuple[TestClient, Syncd]]]:
    opened: list[TestClient] = []

    def build(push: bool = True, **api: Any) -> tuple[TestClient, Syncd]:
        service = Syncd(config_with(push, **api), database, clock=clock)
        service.prepare()
        channels_ = PushChannels(service, Connectors(service.config.accounts, overrides={"mem": MemoryConnector()}))
        client = TestClient(create_app(service, push=channels_), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client, service
    yield build
    for client in opened:
        client.__exit__(None, None, None)


def writes_during(db: Database, action: Callable[[], Any]) -> int:
    """How many statements that change data run while ``action`` runs."""
    writes = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append(statement)
    engines = {db.engine, db.read_engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        action()
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)
    return len(writes)


def open_channel(service: Syncd, token: str) -> str:
    """A live push channel for alice's link, as a provider watch leaves it."""
    def work(session: Any) -> None:
        [link] = [r["id"] for r in service.links()]
        channels.add(session, "chan-1", link, digest(token), "res-1", service.clock().replace(year=2099),
                     service.clock())
    service.db.run(work)
    return "chan-1"


# -- push hooks ----------------------------------------------------------------------------------


def test_hooks_do_not_exist_where_no_account_has_push(make_app: Callable[..., tuple[TestClient, Syncd]]) -> None:
    client, _ = make_app(push=False)
    for provider in ("google", "outlook", "caldav", "nope"):
        assert client.post(f"/v1/hooks/{provider}", headers={"X-Goog-Channel-ID": "x"}).status_code == 404


def test_big_or_malformed_bodies_are_refused_before_anything_is_looked_up(
        make_app: Callable[..., tuple[TestClient, Syncd]], database: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    client, service = make_app(push=True)
    service.config.accounts["gw"]  # push configured for google only: outlook has no hook here
    assert client.post("/v1/hooks/outlook", json={"value": []}).status_code == 404
    big = b"x" * ((1 << 20) + 1)
    with caplog.at_level(logging.DEBUG):
        assert writes_during(database, lambda: client.post("/v1/hooks/google", content=big).status_code) == 0
    answer = client.post("/v1/hooks/google", content=big)
    assert answer.status_code == 413 and "Traceback" not in caplog.text


def test_outlook_hooks_refuse_floods_deep_nesting_and_long_validation_tokens(
        database: Database, clock: Clock) -> None:
    options = Options({"tenant_id": "t", "client_id": "c", "client_secret": "s" * 30,
                       "push_url": "https://syncd.example/v1/hooks/outlook"}, secret=("client_secret",))
    accounts = {"m365": AccountConfig(name="m365", provider="outlook", options=options)}
    config = dataclasses.replace(make_config([user("alice")], accounts=accounts), api=ApiConfig(tokens=TOKENS))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    with TestClient(create_app(service, push=PushChannels(service, Connectors(config.accounts))),
                    raise_server_exceptions=False) as client:
        flood = {"value": [{"subscriptionId": f"s{n}", "clientState": "x"} for n in range(1001)]}
        assert client.post("/v1/hooks/outlook", json=flood).status_code == 413
        deep = "[" * 100_000 + "]" * 100_000
        nested = client.post("/v1/hooks/outlook", content=deep, headers={"Content-Type": "application/json"})
        assert nested.status_code == 400 and nested.json()["error"] == "bad_request"
        assert client.post("/v1/hooks/outlook", params={"validationToken": "v" * 1025}).status_code == 400
        echoed = client.post("/v1/hooks/outlook", params={"validationToken": "<script>alert(1)</script>"})
        assert echoed.status_code == 200 and echoed.text == "<script>alert(1)</script>"
        assert echoed.headers["content-type"].startswith("text/plain")
        assert echoed.headers["x-content-type-options"] == "nosniff"


def test_a_forged_notification_writes_nothing_and_a_real_one_is_debounced(
        make_app: Callable[..., tuple[TestClient, Syncd]], database: Database) -> None:
    client, service = make_app(push=True)
    channel = open_channel(service, "the-channel-token")

    def forged() -> None:
        for n in range(50):
            answer = client.post("/v1/hooks/google", headers={"X-Goog-Channel-ID": channel if n % 2 else f"c{n}",
                                                              "X-Goog-Channel-Token": "guess",
                                                              "X-Goog-Resource-State": "exists"})
            assert answer.status_code == 403
    assert writes_during(database, forged) == 0

    def real() -> None:
        for _ in range(20):
            answer = client.post("/v1/hooks/google", headers={
                "X-Goog-Channel-ID": channel, "X-Goog-Channel-Token": "the-channel-token",
                "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "res-1"})
            assert answer.status_code == 200 and answer.headers["x-content-type-options"] == "nosniff"
    # The clock stands still: the link made due now (two rows) and once more at the end of the
    # second (two rows), so that a change after the first sync's listing is not lost; not twenty.
    assert writes_during(database, real) == 4


def test_a_change_notified_within_the_debounce_second_is_not_lost(
        make_app: Callable[..., tuple[TestClient, Syncd]], clock: Clock) -> None:
    client, service = make_app(push=True)
    channel = open_channel(service, "the-channel-token")
    headers = {"X-Goog-Channel-ID": channel, "X-Goog-Channel-Token": "the-channel-token",
               "X-Goog-Resource-State": "exists", "X-Goog-Resource-ID": "res-1"}

    def due() -> datetime | None:
        return service.db.read(lambda s: s.scalars(select(CalendarLinkRow.next_poll_at)).one())

    def synced() -> None:  # what a sync leaves: the next poll far ahead
        service.db.run(lambda s: s.execute(update(CalendarLinkRow).values(next_poll_at=clock() + timedelta(hours=1))))
    first = clock()
    assert client.post("/v1/hooks/google", headers=headers).status_code == 200
    assert due() == first
    synced()  # the sync it started listed the calendar, then the person changed it again
    clock.advance(timedelta(milliseconds=300))
    assert client.post("/v1/hooks/google", headers=headers).status_code == 200
    assert due() == first + timedelta(seconds=1)  # polled again at the end of the second
    clock.advance(timedelta(milliseconds=300))
    assert client.post("/v1/hooks/google", headers=headers).status_code == 200
    assert due() == first + timedelta(seconds=1)  # already pending: nothing more
    clock.advance(timedelta(seconds=2))
    synced()
    assert client.post("/v1/hooks/google", headers=headers).status_code == 200
    assert due() == clock()  # after the window: due at once again


# -- the event loop never waits for the database ---------------------------------------------------


@contextmanager
def serving(service: Syncd) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _stuck_while(url: str, stuck: Callable[[], httpx.Response]) -> None:
    """Send ``stuck`` (a request the database holds up) and, while it waits, /healthz."""
    finished = threading.Event()
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            stuck()
        except httpx.HTTPError:
            pass
        finished.set()
    threading.Thread(target=run, daemon=True).start()
    started.wait()
    time.sleep(0.3)  # the request is in, and waiting for the database
    assert not finished.is_set(), "the request was expected to wait for the database"
    health = httpx.get(f"{url}/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["ok"] is True
    assert not finished.is_set(), "/healthz answered only after the stuck request"


def test_healthz_answers_while_the_sqlite_write_lock_is_held_elsewhere(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "syncd.db"
    db = Database(f"sqlite:///{path}", connect_args={"timeout": 4})
    service = Syncd(dataclasses.replace(make_config([user("alice")]), api=ApiConfig(tokens=TOKENS)), db,
                    clock=clock)
    service.prepare()
    made = RotationEngine(service).create("calls", members=["alice"])  # to assign from, before the lock
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with serving(service) as url:
            _stuck_while(url, lambda: httpx.post(f"{url}/v1/rotations/{made['id']}/assign", headers=W,
                                                 json={"idempotency_key": "t-1"}, timeout=30))
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()
        db.dispose()


def test_healthz_answers_while_postgresql_does_not(tmp_path: Path, clock: Clock) -> None:
    silent = socket.socket()  # accepts connections and never says a word, like a server behind a dead link
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    db = Database(f"postgresql+psycopg://syncd@127.0.0.1:{port}/syncd", connect_args={"connect_timeout": 5})
    config = dataclasses.replace(make_config([user("alice")], database_url=db.url), api=ApiConfig(tokens=TOKENS))
    service = Syncd(config, db, clock=clock)
    try:
        with serving(service) as url:
            _stuck_while(url, lambda: httpx.get(f"{url}/v1/users/alice/status", headers=R, timeout=30))
    finally:
        silent.close()
        db.dispose()


# -- what strangers see ---------------------------------------------------------------------------


def test_readyz_tells_strangers_only_what_fails(make_app: Callable[..., tuple[TestClient, Syncd]]) -> None:
    client, service = make_app(push=False)
    with service.db.session() as session:  # a link overdue for an hour: the links check fails
        from sqlalchemy import update

        from store.models import CalendarLinkRow
        session.execute(update(CalendarLinkRow).values(next_poll_at=service.clock().replace(year=2020)))
    stranger = client.get("/readyz")
    assert stranger.status_code == 503
    assert stranger.json() == {"ready": False, "failing": ["links"]}
    assert "alice" not in stranger.text and "work" not in stranger.text
    insider = client.get("/readyz", headers=R).json()
    assert insider["ready"] is False and "alice/mem/work" in insider["checks"]["links"]


def test_the_api_document_needs_a_token_unless_made_public(make_app: Callable[..., tuple[TestClient, Syncd]]) -> None:
    client, _ = make_app(push=False)
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/docs").status_code == 401
    assert "/v1/users/{user_id}" in client.get("/openapi.json", headers=R).json()["paths"]
    public, _ = make_app(push=False, public_docs=True)
    assert public.get("/openapi.json").status_code == 200 and public.get("/docs").status_code == 200


def test_short_api_tokens_are_a_config_error(tmp_path: Path) -> None:
    from syncd.config import load_config

    path = tmp_path / "syncd.toml"
    path.write_text('[api]\ntokens = [{ name = "hd", token = "only-23-characters-long" }]\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (f"{path}: api.tokens[0].token: is 23 characters; an API token needs at "
                                  "least 24")


# -- calendar links need the admin scope ----------------------------------------------------------


def test_only_an_admin_token_creates_or_changes_calendar_links(
        make_app: Callable[..., tuple[TestClient, Syncd]]) -> None:
    client, service = make_app(push=False)
    body = {"email": "mallory@example.com", "timezone": "UTC",
            "calendars": [{"account": "mem", "calendar": "somebody-elses"}]}
    refused = client.put("/v1/users/mallory", json=body, headers=W)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert "mallory" not in service.user_ids()
    assert client.put("/v1/users/mallory", json={**body, "calendars": []}, headers=W).status_code == 201
    assert client.put("/v1/users/mallory", json=body, headers=W).status_code == 403
    assert client.put("/v1/users/mallory", json=body, headers=A).status_code == 200
    kept = client.put("/v1/users/mallory", json={"email": "mallory@example.com", "timezone": "Europe/Oslo"},
                      headers=W)  # a write token may still change the rest; the links stay as they are
    assert kept.status_code == 200
    assert [c["calendar"] for c in kept.json()["calendars"]] == ["somebody-elses"]
    assert kept.json()["timezone"] == "Europe/Oslo"
    assert json.dumps(kept.json())
