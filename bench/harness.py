"""What the scale-out benchmarks share: a PostgreSQL schema of their own, bulk seeding of users
and blocks, daemon replicas as separate processes, a webhook receiver in its own process, and
reading a process's memory, threads and open files from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from store.db import Database
from store.models import BlockRow, UserRow

PG_URL = os.environ.get("SYNCD_BENCH_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1:5432/test")


@contextlib.contextmanager
def pg_schema(url: str = PG_URL) -> Iterator[str]:
    """A fresh schema; yields a database URL whose connections use it. Dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = Database(url)
    try:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:
        raise SystemExit(f"cannot reach PostgreSQL at {url} ({type(exc).__name__}); "
                         "set SYNCD_BENCH_DATABASE_URL") from None
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def seed_helpdesk_users(url: str, users: Sequence[str], blocks: dict[str, list[tuple[datetime, datetime]]],
                        now: datetime, timezone: str = "Europe/Stockholm") -> None:
    """Users created in the helpdesk (origin ``api``) and their blocks, in bulk statements: the
    set-up is not what is measured. ``blocks`` maps a user to (start, end) pairs."""
    db = Database(url)
    db.migrate()
    with db.engine.begin() as conn:
        conn.execute(insert(UserRow), [{"id": u, "email": f"{u}@example.com", "timezone": timezone,
                                        "working_hours": {}, "origin": "api", "created_at": now} for u in users])
        rows = [{"id": f"{u}-b{n}", "user_id": u, "start": start, "end": end, "all_day": False,
                 "title": "Out of office", "source": "helpdesk", "revision": 1, "created_at": now,
                 "updated_at": now} for u in users for n, (start, end) in enumerate(blocks.get(u, ()))]
        for chunk in range(0, len(rows), 20_000):
            conn.execute(insert(BlockRow), rows[chunk:chunk + 20_000])
    db.dispose()


def replica(config: Path, log: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`syncd run` in a process of its own, logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "syncd", "-c", str(config), "run"],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def log_tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Any, timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


@dataclass
class ProcessStats:
    rss_mb: float
    peak_rss_mb: float
    threads: int
    fds: int


def process_stats(pid: int) -> ProcessStats:
    """Raises SystemExit if the process has exited."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    if "VmRSS" not in fields:
        raise SystemExit(f"process {pid} has exited")
    return ProcessStats(
        rss_mb=int(fields["VmRSS"].split()[0]) / 1024,
        peak_rss_mb=int(fields["VmHWM"].split()[0]) / 1024,
        threads=int(fields["Threads"]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
    )


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# -- webhook receiver -----------------------------------------------------------------------------


class Receiver:
    """A webhook endpoint in its own process that notes when each event arrived."""

    def __init__(self, port: int, record: Path) -> None:
        self.url = f"http://127.0.0.1:{port}/hook"
        self.record = record
        self.process = subprocess.Popen([sys.executable, "-m", "bench.harness", "receive", str(port), str(record)])
        wait_for(lambda: record.exists(), 20, "the webhook receiver")

    def events(self) -> list[dict[str, Any]]:
        """Every event received so far, each with ``received_at`` (Unix seconds)."""
        lines = self.record.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def close(self) -> None:
        stop(self.process, 5)


def _serve(port: int, record: Path) -> None:
    """A minimal HTTP/1.1 endpoint on asyncio (keep-alive, Content-Length bodies): quick enough
    that the receiver is not what a burst of thousands of events measures."""
    import asyncio

    out = None

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                received = time.time()
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                event = json.loads(body)
                assert out is not None
                out.write(json.dumps({"id": event["id"], "user": event["user"]["id"], "status": event["status"],
                                      "effective_at": event["effective_at"], "received_at": received}) + "\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def flush() -> None:  # every 0.2 s: a write per event would slow the answers down
        while True:
            await asyncio.sleep(0.2)
            if out is not None:
                out.flush()

    async def main() -> None:
        nonlocal out
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        out = record.open("a", buffering=1 << 20)  # its existence says the port is open
        flusher = asyncio.create_task(flush())
        await _until_terminated()
        flusher.cancel()
        server.close()
        out.close()

    asyncio.run(main())


# -- latency in front of a real server --------------------------------------------------------------


class LatencyProxy:
    """A TCP proxy in its own process that holds each new connection ``latency`` seconds before
    passing it on: for a server that answers one request per connection (Radicale speaks
    HTTP/1.0), that is the same latency per request as the fakes add."""

    def __init__(self, port: int, upstream_port: int, latency: float, ready: Path) -> None:
        self.url = f"http://127.0.0.1:{port}/"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.harness", "delay", str(port),
                                         str(upstream_port), str(latency), str(ready)])
        wait_for(lambda: ready.exists(), 20, "the latency proxy")

    def close(self) -> None:
        stop(self.process, 5)


def _delay(port: int, upstream_port: int, latency: float, ready: Path) -> None:
    import asyncio

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(latency)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        ready.write_text("ready")
        await _until_terminated()
        server.close()

    asyncio.run(main())


async def _until_terminated() -> None:
    import asyncio

    stopped = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    await stopped.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["receive"]:
    _serve(int(sys.argv[2]), Path(sys.argv[3]))
if __name__ == "__main__" and sys.argv[1:2] == ["delay"]:
    _delay(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]))
