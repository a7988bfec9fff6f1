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

    def count(self) -> int:
        """How many requests were received so far: cheap enough to ask often during a burst."""
        return self.record.read_bytes().count(b"\n")

    def events(self) -> list[dict[str, Any]]:
        """Every event received so far: ``id``, ``user`` (id), ``status``, ``effective_at`` and
        ``received_at`` (Unix seconds)."""
        events = []
        for line in self.record.read_bytes().splitlines():
            received, _, body = line.partition(b" ")
            with contextlib.suppress(ValueError):  # a line still being written
                event = json.loads(body)
                events.append({"id": event["id"], "user": event["user"]["id"], "status": event["status"],
                               "effective_at": event["effective_at"], "received_at": float(received)})
        return events

    def close(self) -> None:
        stop(self.process, 5)


def _serve(port: int, record: Path) -> None:
    """A minimal HTTP/1.1 endpoint: an asyncio protocol with httptools parsing (as uvicorn does),
    answering 204 and writing each body with its arrival time. Quick enough that the receiver
    is not what a burst of thousands of events measures; the bodies are parsed afterwards."""
    import asyncio

    import httptools

    out: Any = None  # the record, opened once the port is: its existence says so

    class Endpoint(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            received = time.time()
            self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            out.write(b"%.6f %s\n" % (received, b"".join(self.body)))
            self.body = []

    async def flush() -> None:  # every 0.2 s: a write per event would slow the answers down
        while True:
            await asyncio.sleep(0.2)
            out.flush()

    async def main() -> None:
        nonlocal out
        server = await asyncio.get_running_loop().create_server(Endpoint, "127.0.0.1", port, backlog=1024)
        out = record.open("ab", buffering=1 << 20)
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
        try:
            await asyncio.sleep(latency)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except (OSError, asyncio.CancelledError):  # cancelled: the proxy is stopping
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
