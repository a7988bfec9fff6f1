"""The database goes away while the daemon runs (a PostgreSQL restart, a network cut): the
daemon waits, logs it once, resumes when it is back, and loses nothing."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from store.db import Database
from syncd.config import load_config
from syncd.core.ooo import timed_content
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from syncd.service import Syncd
from tests.conftest import PG_URL, pg_url_for
from tests.system.chaos.driver import Receiver


class Proxy:
    """A TCP forwarder to the database that a test can cut (every connection dropped, new ones
    refused) and restore, as a server restart or a network failure would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = threading.Event()
        self.open.set()
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()
        self.thread.join(5)


def _ics(uid: str, start: datetime, hours: int) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{start + timedelta(hours=hours):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Away {uid}\r\n"
            "X-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def _config(root: Path, database_url: str, extra: str = "") -> Path:
    """One user whose calendar is a local folder, polled every second."""
    config = root / "syncd.toml"
    config.write_text(f"""
[daemon]
database_url = "{database_url}"
poll_interval = "1s"
[[accounts]]
name = "folder"
provider = "local"
root = "{root / 'calendars'}"
[[users]]
id = "alice"
email = "alice@example.com"
timezone = "UTC"
calendars = [{{ account = "folder", calendar = "alice" }}]
{extra}""")
    return config


def _wait(condition: object, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


@pytest.mark.postgres
def test_postgresql_away_and_back_loses_nothing(pg_schema: str, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    target = urlsplit(PG_URL.replace("postgresql+psycopg", "postgresql"))
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    receiver = Receiver()
    folder = tmp_path / "calendars" / "alice"
    folder.mkdir(parents=True)
    via_proxy = f"postgresql+psycopg://{target.username or 'root'}@127.0.0.1:{proxy.port}{target.path}"
    config = _config(tmp_path, pg_url_for(pg_schema, via_proxy) + "&connect_timeout=2",
                     f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url}"\n')
    direct = Syncd(load_config(config), Database(PG_URL, connect_args={"options": f"-csearch_path={pg_schema}"}))
    rt = build_runtime(load_config(config))
    daemon = Daemon(rt, serve_api=False)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    try:
        daemon.start()
        (folder / "before.ics").write_text(_ics("before", now + timedelta(days=2), 5), newline="")
        assert _wait(lambda: len(direct.list_blocks("alice")) == 1)
        with caplog.at_level(logging.DEBUG, logger="syncd"):
            proxy.cut()  # the database is gone: restarting, or the network is down
            (folder / "during.ics").write_text(_ics("during", now + timedelta(days=3), 5), newline="")
            time.sleep(4)
            proxy.restore()
            helpdesk = direct.add_block("alice", timed_content(now + timedelta(days=6), now + timedelta(days=7)))
            assert _wait(lambda: len(direct.list_blocks("alice")) == 3), "the daemon did not resume"
            assert _wait(lambda: any(helpdesk.id in p.name for p in folder.iterdir())), "nothing pushed after"
        assert daemon.scheduler.running
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("syncd")]
        # one line for the database, one per scheduler job at most: an episode, not a flood
        assert len(warnings) <= 5, [r.getMessage() for r in warnings]
    finally:
        daemon.stop()
        direct.db.dispose()
        receiver.close()
        proxy.close()


def test_sqlite_locked_by_another_process_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import subprocess
    import sys

    folder = tmp_path / "calendars" / "alice"
    folder.mkdir(parents=True)
    db_path = tmp_path / "syncd.db"
    config = _config(tmp_path, f"sqlite:///{db_path}")
    rt = build_runtime(load_config(config))
    daemon = Daemon(rt, serve_api=False)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hold = ("import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(4); c.execute('COMMIT')\n")
    try:
        daemon.start()
        (folder / "before.ics").write_text(_ics("before", now + timedelta(days=2), 5), newline="")
        assert _wait(lambda: len(rt.service.list_blocks("alice")) == 1)
        with caplog.at_level(logging.INFO, logger="syncd"):
            holder = subprocess.Popen([sys.executable, "-c", hold, str(db_path)], stdout=subprocess.PIPE, text=True)
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            (folder / "during.ics").write_text(_ics("during", now + timedelta(days=3), 5), newline="")
            assert holder.wait(30) == 0
            holder.stdout.close()
            assert _wait(lambda: len(rt.service.list_blocks("alice")) == 2), "the daemon did not resume"
        assert daemon.scheduler.running
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("syncd")]
        assert len(warnings) <= 5, [r.getMessage() for r in warnings]
    finally:
        daemon.stop()


class PrivateCluster:
    """A PostgreSQL cluster of this test's own (initdb in a temporary folder, run by the
    ``postgres`` system user), so that the test can really stop and start the server without
    touching the shared one."""

    def __init__(self) -> None:
        import pwd
        import shutil
        import subprocess
        import tempfile

        self.subprocess = subprocess
        initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
        if initdb is None:
            pytest.skip("PostgreSQL's initdb is not installed; install the server package to run this test")
        self.bin = Path(initdb).resolve().parent
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' system user to run a private PostgreSQL cluster as")
        # Not under pytest's folder: the postgres user cannot enter root's private one.
        self.root = Path(tempfile.mkdtemp(prefix="syncd-pg-"))
        self.data = self.root / "pgdata"
        self.data.mkdir()
        shutil.chown(self.root, "postgres")
        shutil.chown(self.data, "postgres")
        self.port = _free_port()
        self._as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "root",
                           "--no-sync"])

    def _as_postgres(self, command: list[str], check: bool = True) -> None:
        runner = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]
        done = self.subprocess.run(runner + command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 or not check, done.stdout + done.stderr

    def start(self) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "log"),
                           "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
                           "start"])

    def stop(self, check: bool = True) -> None:
        self._as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop"], check)

    def remove(self) -> None:
        import shutil
        self.stop(check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://root@127.0.0.1:{self.port}/postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.postgres
def test_postgresql_restarted_during_a_run_loses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server itself stops (fast shutdown: every session is ended) and starts again."""
    if os.geteuid() != 0 and os.environ.get("USER") != "postgres":
        pytest.skip("runs a private PostgreSQL cluster as the 'postgres' user: needs root (as in CI)")
    cluster = PrivateCluster()
    cluster.start()
    receiver = Receiver()
    folder = tmp_path / "calendars" / "alice"
    folder.mkdir(parents=True)
    config = _config(tmp_path, cluster.url + "?connect_timeout=2",
                     f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url}"\n')
    rt = build_runtime(load_config(config))
    daemon = Daemon(rt, serve_api=False)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    direct: Syncd | None = None
    try:
        daemon.start()
        direct = Syncd(load_config(config), Database(cluster.url))
        (folder / "before.ics").write_text(_ics("before", now + timedelta(days=2), 5), newline="")
        assert _wait(lambda: len(direct.list_blocks("alice")) == 1)
        started = now - timedelta(hours=1)
        with caplog.at_level(logging.DEBUG, logger="syncd"):
            cluster.stop()
            (folder / "during.ics").write_text(_ics("during", started, 3), newline="")  # covers now: away
            time.sleep(3)
            cluster.start()
            assert _wait(lambda: len(direct.list_blocks("alice")) == 2, 60), "the daemon did not resume"
            helpdesk = direct.add_block("alice", timed_content(now + timedelta(days=6), now + timedelta(days=7)))
            assert _wait(lambda: any(helpdesk.id in p.name for p in folder.iterdir())), "nothing pushed after"
            assert _wait(lambda: [e["status"] for e in receiver.events] == ["away"]), receiver.events
        assert daemon.scheduler.running
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("syncd")]
        assert len(warnings) <= 5, [r.getMessage() for r in warnings]
    finally:
        daemon.stop()
        if direct is not None:
            direct.db.dispose()
        receiver.close()
        cluster.remove()
