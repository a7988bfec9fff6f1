"""A poll cycle over 10,000 users on three providers, with one and with two replicas.

    python -m bench.scale [--quick] [--users N] [--sizes N,N,...] [--events N] [--latency S] [--changed SHARE]

Starts the fake Google Calendar and the fake Microsoft Graph in processes of their own, and a
real Radicale behind a proxy that adds the same latency to each request. N users (default
10,000): 40 % on Google (service account), 40 % on Graph (app-only), 20 % on Radicale, each
with M OOO events (default 10: 100,000 in all). syncd runs as `syncd run` processes on one
PostgreSQL schema.

1. Two replicas do the first sync of every calendar (no latency): ``first_sync_s``.
2. Two warm-up cycles without latency, so each replica holds its sign-ins, as long-running
   replicas do.
3. With ``--latency`` (default 50 ms) on every request and a share of the users (default
   1 %) having edited an event, every link is made due at once; the time until every link has
   been synced again is ``cycle_s_2_replicas``.
4. One replica is stopped; after a warm-up cycle, step 3 again: ``cycle_s_1_replica``.

Also ``peak_rss_mb`` (the larger replica's peak), ``blocks`` (in the store after the first
sync), ``requests`` per provider in the 2-replica cycle, ``database_mb`` (the schema's tables
and indexes after the run).

All of that is done for each size of a scaling table, each on fresh fakes and a fresh schema:
powers of ten from 1,000 up to ``--users`` (``--quick``: 100 and 1,000; ``--sizes`` to choose;
``--earlier FILE`` adds the sizes an earlier run's output measured and this one does not).
The JSON's top-level figures are the largest size's, and ``scaling`` holds one row per size
and replica count (cycle s, cycle ms per user, peak RSS MB per replica, database MB), with
``per_user_growth`` (cycle ms per user at the largest size ÷ at the size ten times smaller,
1 replica) and ``replica_ratio`` (2 replicas ÷ 1 replica at the largest size). The last line
printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from sqlalchemy import func, select, text, update

from bench.harness import LatencyProxy, log_tail, pg_schema, process_stats, replica, stop, wait_for
from bench.outlook_poll import Remote as RemoteGraph
from store.db import Database
from store.models import BlockRow, CalendarLinkRow
from tests.connectors.caldav.servers import radicale_server, vevent
from tests.connectors.google.support import private_key_pem
from tests.fakes.google_calendar import RemoteFakeGoogleCalendar, serve_in_subprocess
from tests.fakes.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from tests.fakes.http_support import ready_subprocess
from tests.support import free_port

TZ = "Europe/Stockholm"


def provider_of(n: int) -> str:
    return ("google", "google", "outlook", "outlook", "caldav")[n % 5]


def _slot(n: int, k: int, now: datetime) -> datetime:
    return (now + timedelta(days=2 + 3 * k + n % 3, hours=n % 9)).replace(minute=0, second=0, microsecond=0,
                                                                         tzinfo=UTC)


@dataclass
class Deployment:
    """The three providers seeded with the users' events, and the config the replicas share."""

    root: Path
    url: str
    users: int
    google: RemoteFakeGoogleCalendar
    graph: RemoteGraph
    radicale: Any
    proxy: LatencyProxy
    now: datetime
    google_ids: dict[int, str] = field(default_factory=dict)  # user -> one event id to edit
    graph_ids: dict[int, str] = field(default_factory=dict)

    def seed(self, events: int) -> None:
        google: list[list[Any]] = []
        graph: list[dict[str, Any]] = []
        collections = Path(self.root / "radicale" / "collection-root" / "alice")
        for n in range(self.users):
            kind = provider_of(n)
            for k in range(events):
                start = _slot(n, k, self.now)
                end = start + timedelta(hours=8)
                if kind == "google":
                    google.append([f"u{n}@example.com", "primary", {
                        "summary": f"Away {n}-{k}", "eventType": "outOfOffice",
                        "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
                        "end": {"dateTime": end.isoformat(), "timeZone": "UTC"}}])
                elif kind == "outlook":
                    graph.append({"user": f"u{n}@contoso.com", "event": {
                        "subject": f"Away {n}-{k}", "showAs": "oof",
                        "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                        "end": {"dateTime": end.replace(tzinfo=None).isoformat(), "timeZone": "UTC"}}})
                else:  # written into Radicale's storage folder, as another client's uploads would leave it
                    folder = collections / f"c{n}"
                    if k == 0:
                        folder.mkdir(parents=True, exist_ok=True)
                        (folder / ".Radicale.props").write_text(json.dumps({"tag": "VCALENDAR"}))
                    (folder / f"u{n}-e{k}.ics").write_text(vevent(f"u{n}-e{k}", start, end))
            if len(google) >= 4000 or (google and n == self.users - 1):
                made = self.google.control("add_events", items=google)["ids"]
                for (owner, _cal, _event), event_id in zip(google, made, strict=True):
                    self.google_ids.setdefault(int(owner[1:].split("@")[0]), event_id)
                google = []
            if len(graph) >= 4000 or (graph and n == self.users - 1):
                made = self.graph.control("add_events", events=graph)
                for item, event_id in zip(graph, made, strict=True):
                    self.graph_ids.setdefault(int(item["user"][1:].split("@")[0]), event_id)
                graph = []

    def config(self, name: str, *, poll_interval: str = "30m", extra: str = "") -> Path:
        sa = self.root / "google-sa.json"
        if not sa.exists():
            sa.write_text(json.dumps({
                "type": "service_account", "project_id": "bench", "private_key_id": "k",
                "private_key": private_key_pem(), "client_email": "syncd@bench.iam.gserviceaccount.com",
                "client_id": "1", "token_uri": self.google.token_uri}))
        lines = [
            f'[daemon]\ndatabase_url = "{self.url}"\nlog_level = "WARNING"\npoll_interval = "{poll_interval}"\n'
            'mass_delete_min = 1000000\n',
            extra,
            f'[api]\nlisten = "127.0.0.1:{free_port()}"\n',
            f'[[accounts]]\nname = "workspace"\nprovider = "google"\nservice_account_file = "{sa}"\n'
            f'api_endpoint = "{self.google.api_endpoint}"\nbatch_uri = "{self.google.batch_uri}"\n'
            'project_quota = 1000000\nuser_quota = 600\n',
            f'[[accounts]]\nname = "m365"\nprovider = "outlook"\ntenant_id = "{DEFAULT_TENANT_ID}"\n'
            f'client_id = "{DEFAULT_CLIENT_ID}"\nclient_secret = "{DEFAULT_CLIENT_SECRET}"\n'
            f'authority = "{self.graph.base_url}/{DEFAULT_TENANT_ID}"\ngraph_url = "{self.graph.base_url}/v1.0"\n'
            f'ca_bundle = "{self.graph.ca_bundle}"\n',
            f'[[accounts]]\nname = "dav"\nprovider = "caldav"\nurl = "{self.proxy.url}"\nusername = "alice"\n'
            'password = "alice-password"\nworkers = 8\n',
        ]
        for n in range(self.users):
            kind = provider_of(n)
            domain = "contoso.com" if kind == "outlook" else "example.com"
            calendar = {"google": '{ account = "workspace" }', "outlook": '{ account = "m365" }',
                        "caldav": f'{{ account = "dav", calendar = "/alice/c{n}/" }}'}[kind]
            lines.append(f'[[users]]\nid = "u{n}"\nemail = "u{n}@{domain}"\ntimezone = "{TZ}"\n'
                         f'calendars = [{calendar}]\n')
        path = self.root / f"{name}.toml"
        path.write_text("\n".join(lines))
        return path

    def set_latency(self, seconds: float) -> None:
        self.google.control("set_latency", seconds=seconds)
        self.graph.control("set_latency", seconds=seconds)
        # The proxy's latency is fixed when it starts: a new one on the same port.
        port = int(self.proxy.url.rsplit(":", 1)[1].strip("/"))
        self.proxy.close()
        ready = self.root / "proxy.ready"
        ready.unlink(missing_ok=True)
        self.proxy = LatencyProxy(port, _port(self.radicale.base_url), seconds, ready)

    def edit(self, share: float, round_: int, span: tuple[datetime, datetime] | None = None) -> int:
        """A share of the users move one OOO event, each in their own calendar (to ``span``, or
        to a day ahead)."""
        step = max(1, round(1 / share))
        changed = 0
        for n in range(round_ % step, self.users, step):
            if span is None:
                start = (self.now + timedelta(days=1, hours=round_ + 1)).replace(minute=0, second=0, microsecond=0)
                end = start + timedelta(hours=3)
            else:
                start, end = span
            kind = provider_of(n)
            if kind == "google":
                self.google.control("edit_event", user=f"u{n}@example.com", calendar="primary",
                                    event_id=self.google_ids[n], changes={
                                        "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
                                        "end": {"dateTime": end.isoformat(), "timeZone": "UTC"}})
            elif kind == "outlook":
                self.graph.control("edit_event", user=f"u{n}@contoso.com", event_id=self.graph_ids[n], changes={
                    "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                    "end": {"dateTime": end.replace(tzinfo=None).isoformat(), "timeZone": "UTC"}})
            else:
                response = httpx.put(f"{self.radicale.base_url}alice/c{n}/u{n}-e0.ics",
                                     content=vevent(f"u{n}-e0", start, end),
                                     headers={"Content-Type": "text/calendar"}, auth=("alice", "x"), timeout=30)
                response.raise_for_status()
            changed += 1
        return changed


@contextlib.contextmanager
def deployment(root: Path, url: str, users: int, events: int) -> Iterator[Deployment]:
    with serve_in_subprocess(0.0) as google, \
            ready_subprocess("tests.fakes.graph", ["--port", "0", "--latency", "0"]) as graph_ready, \
            radicale_server(root) as radicale:
        setup = Deployment(root, url, users, google, RemoteGraph(graph_ready[0], graph_ready[1]), radicale,
                           LatencyProxy(free_port(), _port(radicale.base_url), 0.0, root / "proxy.ready"),
                           datetime.now(UTC))
        try:
            print(f"seeding {users:,} users with {events} OOO events each "
                  f"({users * 2 // 5:,} Google, {users * 2 // 5:,} Graph, {users // 5:,} Radicale)", flush=True)
            setup.seed(events)
            yield setup
        finally:
            setup.proxy.close()


class Links:
    """Reads the links' progress from the shared database."""

    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.db.migrate()  # before the replicas start: they would race to create the schema

    def make_all_due(self) -> datetime:
        now = datetime.now(UTC)
        self.db.run(lambda s: s.execute(update(CalendarLinkRow).values(next_poll_at=now)))
        return now

    def synced_since(self, since: datetime) -> int:
        return int(self.db.read(lambda s: s.scalar(
            select(func.count()).select_from(CalendarLinkRow).where(CalendarLinkRow.last_success_at >= since))) or 0)

    def total(self) -> int:
        return int(self.db.read(lambda s: s.scalar(select(func.count()).select_from(CalendarLinkRow))) or 0)

    def database_mb(self) -> float:
        """The schema's tables, with their indexes and TOAST, in MB."""
        return round(int(self.db.read(lambda s: s.scalar(text(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )))) / 2**20, 1)

    def blocks(self) -> int:
        return int(self.db.read(lambda s: s.scalar(
            select(func.count()).select_from(BlockRow).where(BlockRow.deleted_at.is_(None)))) or 0)

    def failing(self) -> list[str]:
        return list(self.db.read(lambda s: s.scalars(
            select(CalendarLinkRow.last_error).where(CalendarLinkRow.last_error.is_not(None)).limit(3))))


def timed_cycle(links: Links, expected: int, timeout: float) -> float:
    """Make every link due now; seconds until each has been synced again."""
    since = links.make_all_due()
    started = time.monotonic()
    wait_for(lambda: links.synced_since(since) >= expected, timeout, f"all {expected:,} links to sync",
             step=0.1)
    return time.monotonic() - started


def start_replicas(dep: Deployment, names: list[str], **config: str) -> list[Popen[bytes]]:
    return [replica(dep.config(name, **config), dep.root / f"{name}.log") for name in names]


def measure(dep: Deployment, args: argparse.Namespace) -> dict[str, Any]:
    links = Links(dep.url)
    processes = start_replicas(dep, ["replica-a", "replica-b"])
    room = max(1.0, dep.users / 10_000)  # the waits below were sized for 10,000 users
    try:
        wait_for(lambda: links.total() >= dep.users, 120 * room, "the replicas to load the config")
        started = time.monotonic()
        wait_for(lambda: links.synced_since(datetime.fromtimestamp(0, UTC)) >= dep.users, 1800 * room,
                 "the first sync", step=0.5)
        first_sync = time.monotonic() - started
        blocks = links.blocks()
        print(f"first sync, 2 replicas, no latency: {first_sync:.1f} s; {blocks:,} blocks", flush=True)
        for n in range(2):
            print(f"warm-up cycle {n + 1}: {timed_cycle(links, dep.users, 600 * room):.1f} s", flush=True)

        dep.set_latency(args.latency)
        changed = dep.edit(args.changed, 0)
        dep.google.control("reset_counts")
        dep.graph.control("reset_counts")
        two = timed_cycle(links, dep.users, 600 * room)
        counts = {"google": dep.google.control("request_counts")["requests"],
                  "graph": dep.graph.control("request_counts")["graph_requests"]}
        print(f"cycle, 2 replicas, {changed} users changed, {args.latency * 1000:.0f} ms latency: {two:.2f} s "
              f"(Google {counts['google']} requests, Graph {counts['graph']})", flush=True)
        stats = [process_stats(p.pid) for p in processes]

        stop(processes[1])
        dep.set_latency(0.0)
        print(f"warm-up cycle, 1 replica: {timed_cycle(links, dep.users, 600 * room):.1f} s", flush=True)
        dep.set_latency(args.latency)
        dep.edit(args.changed, 1)
        one = timed_cycle(links, dep.users, 900 * room)
        print(f"cycle, 1 replica: {one:.2f} s", flush=True)
        stats[0] = process_stats(processes[0].pid)
        database_mb = links.database_mb()
        failing = links.failing()
        if failing:
            print(f"links with errors, e.g.: {failing[0]}", file=sys.stderr)
    finally:
        for name, process in zip(("replica-a", "replica-b"), processes, strict=True):
            if process.poll() is not None and process.returncode != 0:
                print(f"{name} exited with {process.returncode}; its log ends:\n"
                      f"{log_tail(dep.root / f'{name}.log')}", file=sys.stderr)
            stop(process)
    peaks = [s.peak_rss_mb for s in stats]
    print(f"peak RSS per replica: {', '.join(f'{p:.0f} MB' for p in peaks)}; database {database_mb:.0f} MB")
    return {
        "users": dep.users,
        "blocks": blocks,
        "latency_ms": round(args.latency * 1000),
        "changed_users": changed,
        "first_sync_s": round(first_sync, 1),
        "cycle_s_1_replica": round(one, 2),
        "cycle_s_2_replicas": round(two, 2),
        "google_requests": counts["google"],
        "graph_requests": counts["graph"],
        "peak_rss_mb": round(max(peaks), 1),
        "peak_rss_mb_1_replica": round(peaks[0], 1),
        "database_mb": database_mb,
    }


def sizes_for(args: argparse.Namespace) -> list[int]:
    """The scaling table's sizes: ``--sizes``, else powers of ten from 1,000 (100 with
    ``--quick``) up to ``--users``, which is always the last."""
    if args.sizes:
        return sorted({int(n) for n in args.sizes.split(",")})
    sizes, n = [], (100 if args.quick else 1000)
    while n < args.users:
        sizes.append(n)
        n *= 10
    return [*sizes, args.users]


def scaling(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The table (one row per size and replica count) and its two ratios."""
    rows = []
    for r in results:
        for replicas, cycle, peak in ((1, r["cycle_s_1_replica"], r["peak_rss_mb_1_replica"]),
                                      (2, r["cycle_s_2_replicas"], r["peak_rss_mb"])):
            rows.append({"users": r["users"], "replicas": replicas, "cycle_s": cycle,
                         "cycle_ms_per_user": round(cycle * 1000 / r["users"], 3), "peak_rss_mb": peak,
                         "database_mb": r["database_mb"], **({"earlier_run": True} if r.get("earlier_run") else {})})
    largest = results[-1]
    per_user = {r["users"]: r["cycle_s_1_replica"] / r["users"] for r in results}
    below = [n for n in per_user if n < largest["users"]]
    growth = round(per_user[largest["users"]] / per_user[max(below)], 2) if below else None
    return {"scaling": rows, "per_user_growth": growth,
            "replica_ratio": round(largest["cycle_s_2_replicas"] / largest["cycle_s_1_replica"], 2)}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def arguments(doc: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users")
    parser.add_argument("--users", type=int)
    parser.add_argument("--sizes", help="the scaling table's sizes, comma-separated (default: powers of ten "
                                        "from 1,000 up to --users)")
    parser.add_argument("--earlier", type=Path, help="the output of an earlier run: its sizes' figures join the "
                                                     "table (marked earlier_run) unless measured again here")
    parser.add_argument("--events", type=int, default=10, help="OOO events per user")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    parser.add_argument("--changed", type=float, default=0.01, help="share of users who edit an event per cycle")
    args = parser.parse_args(argv)
    args.users = args.users or (1000 if args.quick else 10_000)
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__ or "", argv)
    results = []
    for users in sizes_for(args):
        print(f"== {users:,} users", flush=True)
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, pg_schema() as url, \
                deployment(Path(tmp), url, users, args.events) as dep:
            results.append(measure(dep, args))
        print(f"figures for {users:,} users: {json.dumps(results[-1])}", flush=True)
    for line in args.earlier.read_text().splitlines() if args.earlier else ():
        if line.startswith("figures for "):  # rows of sizes measured by an earlier run
            earlier = json.loads(line.partition(": ")[2])
            if earlier["users"] not in {r["users"] for r in results}:
                results.append({**earlier, "earlier_run": True})
    results.sort(key=lambda r: r["users"])
    table = scaling(results)
    print("users    replicas  cycle s  ms/user  peak RSS MB  database MB")
    for row in table["scaling"]:
        print(f"{row['users']:>7,}  {row['replicas']:>8}  {row['cycle_s']:>7.2f}  {row['cycle_ms_per_user']:>7.3f}"
              f"  {row['peak_rss_mb']:>11.1f}  {row['database_mb']:>11.1f}")
    print(f"per-user growth {table['per_user_growth']}, 2 replicas / 1 replica {table['replica_ratio']}")
    print(json.dumps({**results[-1], **table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
