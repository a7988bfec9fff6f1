"""Throughput and latency of the HTTP API as the helpdesk uses it.

    python -m bench.api [--quick] [--users N] [--blocks-per-user N] [--seconds S]

Seeds a SQLite database with N users (default 10,000) holding 10 OOO blocks each (100,000),
starts the real daemon (`syncd run`, API included) in its own process, and drives it from
this process over keep-alive HTTP/1.1 connections on loopback:

- ``status``: ``GET /v1/users/{id}/status`` for random users from 10 connections;
- ``healthz``: the same load (10 connections, the same token header) on ``GET /healthz``: the
  server's floor for a request (routing, the HTTP stack, no database), measured in the same
  run; ``status_vs_healthz = status_rps / healthz_rps``;
- ``assign``: ``POST /v1/rotations/{id}/assign`` with fresh idempotency keys from 16
  concurrent clients, then every key is replayed once and the store is checked: each key
  must have exactly one assignment, and replays must name the same member
  (``double_assignments`` counts any violation).

The read loads come from Debian's ``wrk`` (one thread, written in C: it costs the shared cores
far less than the server) when it is on PATH, otherwise from the small asyncio client below;
``load_generator`` says which. The writes always come from the asyncio client, which keeps
each answer to check it.

Prints progress and, as its last line, one JSON object with ``status_rps``,
``status_p50_ms``, ``status_p99_ms``, ``healthz_rps``, ``healthz_p50_ms``,
``healthz_p99_ms``, ``status_vs_healthz``, ``assign_rps``, ``assign_p99_ms``,
``double_assignments`` and the set-up figures.
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
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from store.db import Database
from syncd.config import load_config
from syncd.core import availability as av
from syncd.service import Syncd

TOKEN = secrets.token_urlsafe(24)  # a fresh token per run, as long as the API requires
STATUS_CLIENTS = 10  # concurrent status readers: a helpdesk front end polling agents


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, port: int) -> Path:
    config = root / "syncd.toml"
    config.write_text(f"""
[daemon]
database_url = "sqlite:///{root}/syncd.db"
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
    db.dispose()
    path = config.daemon.database_url.split("///", 1)[1]
    rng = random.Random(1)
    con = sqlite3.connect(path)
    stamp = now.replace(tzinfo=None).isoformat(sep=" ")
    user_rows, block_rows, status_rows = [], [], []
    for u in range(users):
        uid = f"agent{u:05d}"
        user_rows.append((uid, f"{uid}@example.com", f"{uid}@example.com", "Europe/Stockholm", "{}", "api", stamp))
        periods = []
        for _ in range(blocks_per_user):
            start = now + timedelta(hours=rng.randint(-24 * 30, 24 * 300))
            end = start + timedelta(hours=rng.choice((2, 8, 24, 72, 240)))
            bid = uuid.uuid4().hex
            periods.append(av.Period(bid, start, end))
            block_rows.append((bid, uid, start.replace(tzinfo=None).isoformat(sep=" "),
                               end.replace(tzinfo=None).isoformat(sep=" "), 0, "Out of office", "helpdesk", 1,
                               stamp, stamp))
        policy = av.StatusPolicy("Europe/Stockholm")
        state = av.initial_state(periods, policy, now)
        nxt = av.next_boundary(periods, policy, now)
        status_rows.append((uid, state.auto, state.auto_reason, state.effective, state.reason, stamp, stamp,
                            state.block_id, nxt.replace(tzinfo=None).isoformat(sep=" ") if nxt else None))
    with con:
        con.executemany("INSERT INTO users (id, email, email_key, timezone, working_hours, origin, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", user_rows)
        con.executemany("INSERT INTO ooo_blocks (id, user_id, start, \"end\", all_day, title, source, revision, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", block_rows)
        con.executemany("INSERT INTO user_status (user_id, auto, auto_reason, effective, reason, since, "
                        "evaluated_at, block_id, next_boundary_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", status_rows)
    con.close()
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


async def load(port: int, clients: int, seconds: float, make: Any) -> tuple[list[float], int, list[Any]]:
    """Run `clients` loops for `seconds`; each loop sends what `make(i)` returns and times it."""
    latencies: list[float] = []
    errors = 0
    results: list[Any] = []
    deadline = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        conn = Connection(port)
        i = 0
        try:
            while time.perf_counter() < deadline:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users and 3-second runs")
    parser.add_argument("--users", type=int)
    parser.add_argument("--blocks-per-user", type=int, default=10)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    users = args.users or (1_000 if args.quick else 10_000)
    seconds = args.seconds or (3.0 if args.quick else 15.0)
    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-api-") as tmp:
        root = Path(tmp)
        port = free_port()
        config = write_config(root, port)
        started = time.perf_counter()
        blocks = seed(config, users, args.blocks_per_user, now)
        print(f"seeded {users} users and {blocks} blocks in {time.perf_counter() - started:.1f} s", flush=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        daemon = subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            result = asyncio.run(drive(port, users, seconds))
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
        result.update({"users": users, "blocks": blocks, "seconds_per_run": seconds})
        print(json.dumps(result))
    return 0


async def drive(port: int, users: int, seconds: float) -> dict[str, Any]:
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
    await load(port, 8, 1.0, status_request)  # warm-up
    await load(port, 8, 1.0, healthz_request)
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

    a_lat, a_errors, assigned = await load(port, 16, seconds, assign_request)
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
    return {
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
    }


if __name__ == "__main__":
    sys.exit(main())
