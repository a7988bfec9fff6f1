"""The chaos driver: `syncd run` against fake Google, fake Microsoft Graph and a real Radicale,
with edits on both sides (among them a person deleting syncd's fresh write before syncd lists
the calendar again), killed with SIGKILL at random moments and restarted, with the default
lease TTL: a restarted replica takes over its dead predecessor's leases at once.

After the last restart and a settling period, `check` proves the sync's promises: every
calendar holds exactly the user's live blocks (no duplicated event, no duplicated or lost
block), and every status transition that happened was delivered to the sink at least once,
in order per user, and nothing that did not happen was delivered.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from connectors import ical
from connectors.google.connector import event_content as google_content
from connectors.outlook.connector import event_content as outlook_content
from store.db import Database
from store.models import CalendarLinkRow, OutboxRow
from syncd.config import load_config
from syncd.core.calendars import OooRules, SyncWindow
from syncd.core.ooo import OooContent, timed_content
from syncd.service import Syncd
from tests.connectors.caldav.servers import CalDAVServer, radicale_server, vevent
from tests.connectors.google.support import account_toml as google_account_toml
from tests.connectors.outlook.support import account_toml as outlook_account_toml
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph
from tests.support import free_port

TZ = "Europe/Stockholm"
WEBHOOK_SECRET = "whsec_Y2hhb3MtdGVzdC13ZWJob29rLXNlY3JldC0zMi1ieXRlcw=="  # 34 bytes


class Receiver:
    """The helpdesk's webhook: records every delivery (a replayed event arrives again)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.fault_rate = 0.0  # share of deliveries answered 503 (not recorded: the sender retries)
        self.rng = random.Random(5)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

            def do_POST(self) -> None:  # noqa: N802 - stdlib naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    refused = receiver.rng.random() < receiver.fault_rate
                    if not refused:
                        receiver.events.append(json.loads(body))
                self.send_response(503 if refused else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@dataclass
class User:
    id: str
    provider: str  # google | outlook | caldav
    email: str
    calendar: str = "primary"  # the CalDAV collection URL for caldav users


@dataclass
class World:
    root: Path
    google: FakeGoogleCalendar
    graph: FakeGraph
    dav: CalDAVServer
    receiver: Receiver
    users: list[User]
    config: Path
    rng: random.Random
    replicas: int = 1
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: int = 0
    edits: int = 0
    helpdesk_blocks: set[str] = field(default_factory=set)  # created and never deleted by the helpdesk
    log: Path | None = None

    # -- the daemon ------------------------------------------------------------------------------
    def start(self, replica: int | None = None) -> None:
        """Start the given replica, or every replica that is not running."""
        for n in [replica] if replica is not None else range(self.replicas):
            if n in self.processes:
                continue
            self.log = self.root / f"syncd-{n}.log"
            out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it; closed when it is reaped
            env = {**os.environ, "CHAOS_GRAPH_SECRET": self.graph.client_secret, "PYTHONWARNINGS": "ignore"}
            config = self.config if n == 0 else self.config.with_name(f"syncd-{n}.toml")
            self.processes[n] = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"],
                                                 stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.root)
            out.close()

    def kill(self) -> int:
        """SIGKILL one running replica (at random); returns which."""
        n = self.rng.choice(sorted(self.processes))
        process = self.processes.pop(n)
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills += 1
        return n

    def stop(self) -> None:
        for n in sorted(self.processes):
            process = self.processes.pop(n)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # -- people editing calendars, and the helpdesk ------------------------------------------------
    def service(self) -> Syncd:
        """The helpdesk's view: the same database, from this process."""
        config = load_config(self.config)
        return Syncd(config, Database(config.daemon.database_url))

    def person_add(self, user: User) -> None:
        start = self._when()
        content = timed_content(start, start + timedelta(hours=self.rng.randint(1, 30)), f"P{self.edits}")
        if user.provider == "google":
            self.google.add_event(user.email, "primary", {
                "summary": content.title, "eventType": "outOfOffice",
                "start": {"dateTime": content.start.isoformat()}, "end": {"dateTime": content.end.isoformat()}})
        elif user.provider == "outlook":
            self.graph.add_event(user.email, {
                "subject": content.title, "showAs": "oof",
                "start": {"dateTime": content.start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                "end": {"dateTime": content.end.replace(tzinfo=None).isoformat(), "timeZone": "UTC"}})
        else:
            uid = f"p{self.edits}-{self.rng.randrange(10**9)}"
            self.dav.put_event(user.calendar, uid, vevent(uid, content.start, content.end, summary=content.title))

    def person_delete(self, user: User) -> None:
        """The person deletes one of their own OOO events (never one of syncd's)."""
        own = [(event_id, c) for event_id, c in self.calendar_events(user) if c.title.startswith("P")]
        if not own:
            return
        event_id, _content = self.rng.choice(own)
        self.delete_event(user, event_id)

    def helpdesk_add(self, service: Syncd, user: User) -> None:
        start = self._when()
        block = service.add_block(user.id, timed_content(start, start + timedelta(hours=self.rng.randint(1, 30)),
                                                         f"H{self.edits}"))
        self.helpdesk_blocks.add(block.id)

    def helpdesk_delete(self, service: Syncd, user: User) -> None:
        ours = [b for b in service.list_blocks(user.id) if b.id in self.helpdesk_blocks]
        if ours:
            block = self.rng.choice(ours)
            service.delete_block(block.id)
            self.helpdesk_blocks.discard(block.id)

    def fresh_write_deleted(self, service: Syncd, user: User) -> None:
        """The helpdesk adds a block and the person deletes syncd's event for it within moments of
        its being written, before syncd lists the calendar again: the block must go too."""
        start = self._when()
        block = service.add_block(user.id, timed_content(start, start + timedelta(hours=self.rng.randint(1, 30)),
                                                         f"R{self.edits}"))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            event_id = self.written_event(user, block.id)
            if event_id is not None:
                self.delete_event(user, event_id)
                return
            time.sleep(0.02)
        # Not written in time (the daemon is starting, or busy): the block stays and is written later.
        self.helpdesk_blocks.add(block.id)

    def written_event(self, user: User, block_id: str) -> str | None:
        """The id of the event syncd wrote for ``block_id`` in ``user``'s calendar, if it is there yet."""
        if user.provider == "google":
            return next((str(e["id"]) for e in self.google.events(user.email, "primary")
                         if (e.get("extendedProperties") or {}).get("private", {}).get("syncdBlock") == block_id),
                        None)
        if user.provider == "outlook":
            return next((str(e["id"]) for e in self.graph.events(user.email)
                         if any(p.get("value") == block_id for p in e.get("singleValueExtendedProperties") or ())),
                        None)
        uid = f"syncd-{block_id}"
        return uid if self.dav.get_event(user.calendar, uid) is not None else None

    def delete_event(self, user: User, event_id: str) -> None:
        if user.provider == "google":
            self.google.delete_event(user.email, "primary", event_id)
        elif user.provider == "outlook":
            self.graph.delete_event(user.email, event_id)
        else:
            self.dav.delete_event(user.calendar, event_id)

    def edit(self, service: Syncd) -> None:
        user = self.rng.choice(self.users)
        self.edits += 1
        action = self.rng.choice(("person_add", "person_add", "person_delete", "helpdesk_add", "helpdesk_add",
                                  "helpdesk_delete", "fresh_write_deleted"))
        if action == "person_add":
            self.person_add(user)
        elif action == "person_delete":
            self.person_delete(user)
        elif action == "helpdesk_add":
            self.helpdesk_add(service, user)
        elif action == "fresh_write_deleted":
            self.fresh_write_deleted(service, user)
        else:
            self.helpdesk_delete(service, user)

    def _when(self) -> datetime:
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        return now + timedelta(days=self.rng.randint(1, 60), hours=self.rng.randint(0, 23))

    # -- what each side holds ----------------------------------------------------------------------
    def calendar_events(self, user: User) -> list[tuple[str, OooContent]]:
        if user.provider == "google":
            return [(str(e["id"]), google_content(e, TZ)) for e in self.google.events(user.email, "primary")
                    if e.get("eventType") == "outOfOffice"]
        if user.provider == "outlook":
            return [(str(e["id"]), outlook_content(e, TZ)) for e in self.graph.events(user.email)
                    if e.get("showAs") == "oof"]
        found: list[tuple[str, OooContent]] = []
        window = SyncWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC), TZ)
        for href in self.dav.list_hrefs(user.calendar):
            got = self.dav.request("GET", self.dav.url(href))
            for event in ical.parse_ooo_events(got.content, window, OooRules(), etag="").events:
                found.append((event.event_id, event.content))
        return found


def _key(content: OooContent) -> tuple[datetime, datetime, str]:
    return content.start, content.end, content.title


def check(world: World, settle_s: float = 90.0) -> None:
    """Let the daemon settle, then check both sides and the deliveries (raises AssertionError).

    A link that failed many times in a row is retried only when its backoff ends (minutes, after a
    run of faults), so the settling lasts until then as well."""
    deadline = time.monotonic() + settle_s + _backoff_left_s(world)
    problems: list[str] = []
    while True:
        service = world.service()
        try:
            problems = _differences(world, service)
        finally:
            service.db.dispose()
        if not problems or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not problems, "after settling:\n" + "\n".join(problems[:20])
    _check_deliveries(world)


def _backoff_left_s(world: World) -> float:
    """Seconds until the last link that is backing off after failures is tried again."""
    service = world.service()
    try:
        due = service.db.run(lambda s: s.scalar(select(func.max(CalendarLinkRow.next_poll_at))
                                                .where(CalendarLinkRow.failures > 0)))
    finally:
        service.db.dispose()
    if due is None:
        return 0.0
    return max(0.0, (due.replace(tzinfo=due.tzinfo or UTC) - datetime.now(UTC)).total_seconds())


def _differences(world: World, service: Syncd) -> list[str]:
    problems = []
    for user in world.users:
        blocks = sorted(_key(b.content) for b in service.list_blocks(user.id))
        events = sorted(_key(c) for _event_id, c in world.calendar_events(user))
        if blocks != events:
            problems.append(f"{user.id} ({user.provider}): {len(blocks)} blocks, {len(events)} OOO events; "
                            f"only blocks: {sorted(set(blocks) - set(events))[:3]}, "
                            f"only events: {sorted(set(events) - set(blocks))[:3]}")
        if len(set(blocks)) != len(blocks):
            problems.append(f"{user.id}: duplicated blocks")
    live = {b.id for u in world.users for b in service.list_blocks(u.id)}
    lost = world.helpdesk_blocks - live
    if lost:
        problems.append(f"{len(lost)} helpdesk block(s) lost (never deleted by the helpdesk): {sorted(lost)[:3]}")
    return problems


def _check_deliveries(world: World) -> None:
    service = world.service()
    try:
        outbox = service.db.run(lambda s: [(r.event_id, r.user_id) for r in s.scalars(
            select(OutboxRow).order_by(OutboxRow.seq))])
    finally:
        service.db.dispose()
    with world.receiver.lock:
        delivered = list(world.receiver.events)
    written = {event_id for event_id, _user in outbox}
    seen = [e["id"] for e in delivered]
    assert set(seen) <= written, "an event was delivered that syncd never recorded"
    missing = written - set(seen)
    assert not missing, f"{len(missing)} status event(s) never delivered"
    first_seen: dict[str, int] = {}
    for n, event_id in enumerate(seen):
        first_seen.setdefault(event_id, n)
    for user in {u for _e, u in outbox}:
        order = [event_id for event_id, owner in outbox if owner == user]
        assert sorted(order, key=lambda e: first_seen[e]) == order, f"{user}: delivered out of order"


@contextmanager
def world(root: Path, *, seed: int = 0, users_per_provider: int = 2, database_url: str | None = None,
          replicas: int = 1) -> Iterator[World]:
    with ExitStack() as stack:
        google = stack.enter_context(FakeGoogleCalendar())
        graph = stack.enter_context(FakeGraph())
        (root / "dav").mkdir(exist_ok=True)
        dav = stack.enter_context(radicale_server(root / "dav"))
        receiver = Receiver()
        stack.callback(receiver.close)
        users: list[User] = []
        for n in range(users_per_provider):
            users.append(User(f"g{n}", "google", f"g{n}@example.com"))
            users.append(User(f"o{n}", "outlook", f"o{n}@example.com"))
            users.append(User(f"c{n}", "caldav", f"c{n}@example.com", dav.make_calendar(f"c{n}")))
        lines = [f"""[daemon]
database_url = "{database_url or f'sqlite:///{root}/syncd.db'}"
poll_interval = "1s"
mass_delete_min = 1000000
[api]
listen = "127.0.0.1:API_PORT"
{google_account_toml(google, root)}
{outlook_account_toml(graph, extra='client_secret_env = "CHAOS_GRAPH_SECRET"')}
[[accounts]]
name = "dav"
provider = "caldav"
url = "{dav.base_url}"
username = "{dav.username}"
password = "{dav.password}"
[[sinks]]
type = "webhook"
url = "{receiver.url}"
secret = "{WEBHOOK_SECRET}"
"""]
        account = {"google": "gw", "outlook": "m365", "caldav": "dav"}
        for user in users:
            lines.append(f'[[users]]\nid = "{user.id}"\nemail = "{user.email}"\ntimezone = "{TZ}"\n'
                         f'calendars = [{{ account = "{account[user.provider]}", calendar = "{user.calendar}" }}]\n')
        config = root / "syncd.toml"
        text = "\n".join(lines)
        config.write_text(text.replace("API_PORT", str(free_port())))
        for n in range(1, replicas):  # the same, but each replica serves its API on a port of its own
            config.with_name(f"syncd-{n}.toml").write_text(text.replace("API_PORT", str(free_port())))
        os.environ.setdefault("CHAOS_GRAPH_SECRET", graph.client_secret)
        chaos = World(root, google, graph, dav, receiver, users, config, random.Random(seed), replicas)
        stack.callback(chaos.stop)
        yield chaos


def run(root: Path, *, kills: int, seed: int = 0, database_url: str | None = None, replicas: int = 1,
        fault_rate: float = 0.0) -> World:
    """Edit, kill and restart ``kills`` times, then let it settle and check everything. With
    several replicas, one of them (at random) is killed each time while the others run on.
    With ``fault_rate``, that share of requests to the fake providers fail (429, 403, 500,
    503, dropped connections) and of deliveries to the webhook get 503, until the settling."""
    with world(root, seed=seed, database_url=database_url, replicas=replicas) as chaos:
        chaos.google.fault_rate(fault_rate, seed=seed)
        chaos.graph.fault_rate(fault_rate, seed=seed + 1)
        chaos.receiver.fault_rate = fault_rate
        service = chaos.service()
        service.prepare()
        for user in chaos.users:  # something to sync from the start
            chaos.person_add(user)
            chaos.helpdesk_add(service, user)
        service.db.dispose()
        for _ in range(kills):
            chaos.start()
            service = chaos.service()
            try:
                for _ in range(chaos.rng.randint(1, 3)):
                    chaos.edit(service)
            finally:
                service.db.dispose()
            time.sleep(chaos.rng.uniform(0.3, 2.5))  # mid-start, mid-pull, mid-push, mid-delivery...
            chaos.kill()
        chaos.google.fault_rate(0.0)
        chaos.graph.fault_rate(0.0)
        chaos.receiver.fault_rate = 0.0
        chaos.start()
        check(chaos)
        chaos.stop()
        return chaos
