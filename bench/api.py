"""Throughput and latency of the HTTP API as the helpdesk uses it.

    python -m bench.api [--quick] [--users N] [--blocks-per-user N] [--seconds S]
                        [--postgresql-url URL | --no-postgresql]

Seeds a database with N users (default 10,000) holding 10 OOO blocks each (100,000), starts
the real daemon (`syncd run`, API included) in its own process, and drives it from this
process over keep-alive HTTP/1.1 connections on loopback. It does so on SQLite (the default
database: the unprefixed keys, also given as ``sqlite_*``) and then on PostgreSQL (the
``postgresql_*`` keys; a fresh schema at ``--postgresql-url``, default
``$SYNCD_BENCH_DATABASE_URL`` or the local server; skipped with a note if unreachable):

- ``status_first_pass``: every user's status asked once, in random order, from 10
  connections: the answers no read has kept yet (``status_first_pass_rps``);
- ``status``: then ``GET /v1/users/{id}/status`` for random users from 10 connections, as a
  helpdesk front end polling its agents does;
- ``healthz``: the same load (10 connections, the same token header) on ``GET /healthz``: the
  server's floor for a request (routing, the HTTP stack, no database), measured in the same
  run; ``status_vs_healthz = status_rps / healthz_rps``;
- ``assign``: ``POST /v1/rotations/{id}/assign`` with fresh idempotency keys from 16
  concurrent clients, then every key is replayed once and the store is checked: each key
  must have exactly one assignment, and replays must name the same member
  (``double_assignments`` counts any violation);
- ``write_floor``: the database alone doing the assignment's essential write transaction
  (lock the rotation row, insert one assignment) in a tight loop from 16 threads of this
  process, through the store's own transactions (`Database.run`), on a rotation of its own;
  ``assign_vs_floor = assign_rps / write_floor_tps``.

The read loads come from Debian's ``wrk`` (one thread, written in C: it costs the shared cores
far less than the server) when it is on PATH, otherwise from the small asyncio client below;
``load_generator`` says which. The writes always come from the asyncio client, which keeps
each answer to check it.

Prints progress and, as its last line, one JSON object with ``status_rps``,
``status_p50_ms``, ``status_p99_ms``, ``healthz_rps``, ``healthz_p50_ms``,
``healthz_p99_ms``, ``status_vs_healthz``, ``assign_rps``, ``assign_p99_ms``,
``double_assignments``, ``write_floor_tps``, ``assign_vs_floor``, the same with ``sqlite_`` and
``postgresql_`` before them, and the set-up figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select

from store.db import Database
from store.models import AssignmentRow, BlockRow, RotationRow, UserRow, UserStatusRow
from syncd.config import load_config
from syncd.core import availability as av
from syncd.service import Syncd

TOKEN = secrets.token_urlsafe(24)  # a fresh token per run, as long as the API requires
STATUS_CLIENTS = 10  # concurrent status readers: a helpdesk front end polling agents
ASSIGN_CLIENTS = 16  # concurrent assigners, and the write floor's threads
PG_DEFAULT = "postgresql+psycopg://root@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, port: int, database_url: str | None = None) -> Path:
    config = root / "syncd.toml"
    config.write_text(f"""
[daemon]
database_url = "{database_url or f'sqlite:///{root}/syncd.db'}"
log_level = "WARNING"
sweep_interval = "1h"

[api]
listen = "127.0.0.1:{port}"
tokens = [{{ name = "bench", token = "{TOKEN}", scopes = ["admin"] }}]
""")
    return config


def seed(config_path: Path, users: int, blocks_per_user: int, now: datetime) -> int:
    """Bulk-load users, blocks and their status rows (the rows the daemon would write)."""
    config = load_config(config_path)
    db = Database(config.daemon.database_url)
    Syncd(config, db).prepare()
    rng = random.Random(1)
    user_rows, block_rows, status_rows = [], [], []
    for u in range(users):
        uid = f"agent{u:05d}"
        user_rows.append({"id": uid, "email": f"{uid}@example.com", "email_key": f"{uid}@example.com",
                          "timezone": "Europe/Stockholm", "working_hours": {}, "origin": "api", "created_at": now})
        periods = []
        for _ in range(blocks_per_user):
            start = now + timedelta(hours=rng.randint(-24 * 30, 24 * 300))
            end = start + timedelta(hours=rng.choice((2, 8, 24, 72, 240)))
            bid = uuid.uuid4().hex
            periods.append(av.Period(bid, start, end))
            block_rows.append({"id": bid, "user_id": uid, "start": start, "end": end, "all_day": False,
                               "title": "Out of office", "source": "helpdesk", "revision": 1, "created_at": now,
                               "updated_at": now})
        policy = av.StatusPolicy("Europe/Stockholm")
        state = av.initial_state(periods, policy, now)
        status_rows.append({"user_id": uid, "auto": state.auto, "auto_reason": state.auto_reason,
                            "effective": state.effective, "reason": state.reason, "since": now,
                            "evaluated_at": now, "block_id": state.block_id,
                            "next_boundary_at": av.next_boundary(periods, policy, now)})
    with db.engine.begin() as conn:
        for model, rows in ((UserRow, user_rows), (BlockRow, block_rows), (UserStatusRow, status_rows)):
            for first in range(0, len(rows), 10_000):
                conn.execute(insert(cast(Table, model.__table__)), rows[first:first + 10_000])
    db.dispose()
    return len(block_rows)


class Connection:
    """A minimal keep-alive HTTP/1.1 client: the load generator must cost less than the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = (f"{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        self.writer.write(head.encode() + payload)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(port: int, clients: int, seconds: float, make: Any, *, limit: int | None = None
               ) -> tuple[list[float], int, list[Any]]:
    """Run `clients` loops for `seconds` (or until `limit` requests in all); each loop sends
    what `make(n, i)` returns and times it."""
    latencies: list[float] = []
    errors = 0
    results: list[Any] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        conn = Connection(port)
        i = 0
        try:
            while time.perf_counter() < deadline and (limit is None or n + clients * i < limit):
                method, path, body, keep = make(n, i)
                started = time.perf_counter()
                status, payload = await conn.request(method, path, body)
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    errors += 1
                elif keep:
                    results.append((body, json.loads(payload)))
                i += 1
        finally:
            conn.close()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return latencies, errors, results


WRK_SCRIPT = """
math.randomseed(2)
local users = %(users)d
local path = "%(path)s"
request = function()
  if path ~= "" then return wrk.format("GET", path) end
  return wrk.format("GET", string.format("/v1/users/agent%%05d/status", math.random(0, users - 1)))
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('\\n{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def wrk_load(port: int, users: int, seconds: float, path: str = "") -> tuple[float, float, float, int]:
    """(requests a second, p50 s, p99 s, errors) of ``STATUS_CLIENTS`` connections from wrk
    asking ``path``, or random users' status when it is empty."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="syncd-bench-") as script:
        script.write(WRK_SCRIPT % {"users": users, "path": path})
        script.flush()
        done = subprocess.run(["wrk", "-t1", f"-c{STATUS_CLIENTS}", f"-d{max(1, round(seconds))}s", "--latency",
                               "-H", f"Authorization: Bearer {TOKEN}", "-s", script.name,
                               f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    rps = figures["requests"] / (figures["duration_us"] / 1e6)
    return rps, figures["p50_us"] / 1e6, figures["p99_us"] / 1e6, int(figures["errors"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


PER_DATABASE = ("status_first_pass_rps", "status_rps", "status_p50_ms", "status_p99_ms", "status_errors",
                "healthz_rps", "healthz_p50_ms", "healthz_p99_ms", "healthz_errors", "status_vs_healthz",
                "assign_rps", "assign_p99_ms", "assign_errors", "double_assignments", "write_floor_tps",
                "assign_vs_floor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users and 3-second runs")
    parser.add_argument("--users", type=int)
    parser.add_argument("--blocks-per-user", type=int, default=10)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--postgresql-url", default=os.environ.get("SYNCD_BENCH_DATABASE_URL", PG_DEFAULT),
                        help="a PostgreSQL server to run the same on, in a schema of its own")
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    users = args.users or (1_000 if args.quick else 10_000)
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    print("-- SQLite", flush=True)
    result, blocks = run_on(None, users, args.blocks_per_user, seconds)
    result.update({f"sqlite_{key}": result[key] for key in PER_DATABASE})
    if not args.no_postgresql:
        with postgresql_schema(args.postgresql_url) as (url, problem):
            if url is None:
                print(f"-- PostgreSQL skipped: {problem}", flush=True)
                result["postgresql_skipped"] = problem
            else:
                print("-- PostgreSQL", flush=True)
                on_pg, _ = run_on(url, users, args.blocks_per_user, seconds)
                result.update({f"postgresql_{key}": on_pg[key] for key in PER_DATABASE})
    result.update({"users": users, "blocks": blocks, "seconds_per_run": seconds})
    print(json.dumps(result))
    return 0


@contextmanager
def postgresql_schema(url: str) -> Iterator[tuple[str | None, str | None]]:
    """A URL whose connections use a fresh schema (dropped afterwards), or None and why not."""
    schema = f"bench_api_{uuid.uuid4().hex[:10]}"
    admin = Database(url)
    try:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:  # noqa: BLE001 - any failure means "no PostgreSQL here"
        admin.dispose()
        yield None, str(exc).strip().splitlines()[0]
        return
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}", None
    finally:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def run_on(database_url: str | None, users: int, blocks_per_user: int, seconds: float
           ) -> tuple[dict[str, Any], int]:
    """Seed the database (SQLite in a temporary folder when ``database_url`` is None), start
    the daemon on it, and measure; the figures and the number of blocks seeded."""
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-api-") as tmp:
        root = Path(tmp)
        port = free_port()
        config = write_config(root, port, database_url)
        started = time.perf_counter()
        blocks = seed(config, users, blocks_per_user, now)
        print(f"seeded {users} users and {blocks} blocks in {time.perf_counter() - started:.1f} s", flush=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        daemon = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            result = asyncio.run(drive(port, users, seconds, load_config(config).daemon.database_url))
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
            if daemon.stderr:
                problems = [line for line in daemon.stderr.read().splitlines() if "ERROR" in line]
                for line in problems[:5]:
                    print(f"daemon: {line}", flush=True)
                daemon.stderr.close()
    return result, blocks


def write_floor(database_url: str, rotation_id: str, user_id: str, seconds: float) -> float:
    """Transactions a second of the database alone doing an assignment's essential write
    (lock the rotation row, insert one assignment) from `ASSIGN_CLIENTS` threads."""
    db = Database(database_url)
    lock = select(RotationRow.id).where(RotationRow.id == rotation_id)
    if db.dialect == "postgresql":
        lock = lock.with_for_update()
    table = cast(Table, AssignmentRow.__table__)
    done = [0] * ASSIGN_CLIENTS
    go = threading.Barrier(ASSIGN_CLIENTS + 1)
    deadline = [0.0]

    def loop(n: int) -> None:
        go.wait()
        i = 0
        while time.perf_counter() < deadline[0]:
            def txn(session: Any, key: str = f"floor-{n}-{i}") -> None:
                session.execute(lock).one()
                session.execute(insert(table), {"id": uuid.uuid4().hex, "rotation_id": rotation_id,
                                                "user_id": user_id, "idempotency_key": key, "start": None,
                                                "end": None, "created_at": datetime.now(UTC)})
            db.run(txn, what="write floor")
            i += 1
        done[n] = i

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(ASSIGN_CLIENTS)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    go.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    db.dispose()
    return sum(done) / elapsed


async def drive(port: int, users: int, seconds: float, database_url: str) -> dict[str, Any]:
    probe = Connection(port)
    for _ in range(200):
        try:
            status, _ = await probe.request("GET", "/healthz")
            if status == 200:
                break
        except OSError:
            probe = Connection(port)
            await asyncio.sleep(0.1)
    probe.close()

    rng = random.Random(2)

    def status_request(_n: int, _i: int) -> tuple[str, str, None, bool]:
        return "GET", f"/v1/users/agent{rng.randrange(users):05d}/status", None, False

    def healthz_request(_n: int, _i: int) -> tuple[str, str, None, bool]:
        return "GET", "/healthz", None, False

    async def read_load(path: str) -> tuple[float, float, float, int]:
        """(requests a second, p50 s, p99 s, errors) of the read load on ``path`` ("" = status)."""
        if shutil.which("wrk"):
            return await asyncio.to_thread(wrk_load, port, users, seconds, path)
        latencies, errors, _ = await load(port, STATUS_CLIENTS, seconds, healthz_request if path else status_request)
        return len(latencies) / seconds, percentile(latencies, 0.5), percentile(latencies, 0.99), errors

    generator = "wrk" if shutil.which("wrk") else "asyncio"
    await load(port, 8, 1.0, healthz_request)  # warm-up
    # Every user once, in random order: the answers no earlier read has kept.
    order = list(range(users))
    random.Random(3).shuffle(order)

    def first_pass_request(n: int, i: int) -> tuple[str, str, None, bool]:
        index = n + STATUS_CLIENTS * i
        return "GET", f"/v1/users/agent{order[index % users]:05d}/status", None, False

    started = time.perf_counter()
    first_latencies, _, _ = await load(port, STATUS_CLIENTS, 3600.0, first_pass_request, limit=users)
    first_pass_rps = len(first_latencies) / (time.perf_counter() - started)
    print(f"status, first pass over every user ({STATUS_CLIENTS} connections): {first_pass_rps:.0f}/s, "
          f"p99 {percentile(first_latencies, 0.99) * 1000:.1f} ms", flush=True)
    status_rps, status_p50, status_p99, errors = await read_load("")
    print(f"status ({generator}): {status_rps:.0f}/s, p50 {status_p50 * 1000:.1f} ms, "
          f"p99 {status_p99 * 1000:.1f} ms, errors {errors}", flush=True)
    healthz_rps, healthz_p50, healthz_p99, healthz_errors = await read_load("/healthz")
    print(f"healthz ({generator}): {healthz_rps:.0f}/s, p50 {healthz_p50 * 1000:.1f} ms, "
          f"p99 {healthz_p99 * 1000:.1f} ms, errors {healthz_errors}; status / healthz = "
          f"{status_rps / healthz_rps:.2f}", flush=True)

    conn = Connection(port)
    members = [f"agent{i:05d}" for i in range(16)]
    _, created = await conn.request("POST", "/v1/rotations", {"name": "bench", "members": members})
    rotation = json.loads(created)["id"]
    conn.close()

    def assign_request(n: int, i: int) -> tuple[str, str, dict[str, str], bool]:
        return "POST", f"/v1/rotations/{rotation}/assign", {"idempotency_key": f"c{n}-{i}"}, True

    a_lat, a_errors, assigned = await load(port, ASSIGN_CLIENTS, seconds, assign_request)
    assign_rps = len(a_lat) / seconds
    print(f"assign: {len(a_lat)} requests in {seconds:.0f} s = {assign_rps:.0f}/s, "
          f"p99 {percentile(a_lat, 0.99) * 1000:.1f} ms, errors {a_errors}", flush=True)

    # Replay every key: the same member must come back, and each key must exist once.
    first = {body["idempotency_key"]: out["member"] for body, out in assigned}
    keys = list(first)
    replays: list[Any] = []

    def replay_request(n: int, i: int) -> tuple[str, str, dict[str, str], bool]:
        index = n + 16 * i
        key = keys[index] if index < len(keys) else keys[index % len(keys)]
        return "POST", f"/v1/rotations/{rotation}/assign", {"idempotency_key": key}, True

    _, r_errors, replays = await load(port, 16, max(1.0, seconds / 3), replay_request)
    mismatched = sum(1 for body, out in replays if first[body["idempotency_key"]] != out["member"]
                     or not out["replayed"])
    conn = Connection(port)
    _, shown = await conn.request("GET", f"/v1/rotations/{rotation}")
    conn.close()
    counts = [m["assignments"] for m in json.loads(shown)["members"]]
    stored = sum(counts)
    double = mismatched + int(stored - len(first)) + r_errors
    print(f"assign check: {len(first)} keys, {stored:.0f} assignments stored, {len(replays)} replays, "
          f"{mismatched} mismatched; per-member counts {min(counts):.0f}..{max(counts):.0f}", flush=True)

    conn = Connection(port)
    _, created = await conn.request("POST", "/v1/rotations", {"name": "floor", "members": members[:1]})
    conn.close()
    floor_tps = await asyncio.to_thread(write_floor, database_url, json.loads(created)["id"], members[0], seconds)
    print(f"write floor ({ASSIGN_CLIENTS} threads: lock the rotation, insert one assignment): {floor_tps:.0f}/s; "
          f"assign / floor = {assign_rps / floor_tps:.2f}", flush=True)
    return {
        "status_first_pass_rps": round(first_pass_rps, 1),
        "status_rps": round(status_rps, 1),
        "status_p50_ms": round(status_p50 * 1000, 2),
        "status_p99_ms": round(status_p99 * 1000, 2),
        "status_errors": errors,
        "healthz_rps": round(healthz_rps, 1),
        "healthz_p50_ms": round(healthz_p50 * 1000, 2),
        "healthz_p99_ms": round(healthz_p99 * 1000, 2),
        "healthz_errors": healthz_errors,
        "status_vs_healthz": round(status_rps / healthz_rps, 2),
        "load_generator": generator,
        "assign_rps": round(assign_rps, 1),
        "assign_p99_ms": round(percentile(a_lat, 0.99) * 1000, 2),
        "assign_errors": a_errors,
        "double_assignments": double,
        "write_floor_tps": round(floor_tps, 1),
        "assign_vs_floor": round(assign_rps / floor_tps, 2),
    }


if __name__ == "__main__":
    sys.exit(main())
