"""syncd's CalDAV sync against vdirsyncer's, side by side on one Radicale calendar.

    python -m bench.caldav_vs_vdirsyncer [--quick] [--events N] [--runs N]

Starts a real Radicale server on loopback and seeds one calendar with N OOO events (default
2,000) in one PUT. Then, in the same run, medians of ``--runs`` (default 5):

- ``vdirsyncer sync`` of a pair between that calendar and a local folder
  (``conflict_resolution = "a wins"``): the initial sync (fresh status and folder), a sync after
  10 events changed, a sync with nothing changed — each timed as the command's wall time;
- syncd's warm daemon cycle (`LinkSyncer.sync_once` in this process, imports loaded, as in
  ``syncd run``) for the same three cases: the initial sync of the N events into the store
  (fresh database), after 10 changes, with nothing changed; and ``syncd sync --once`` as a
  command (interpreter start-up included) for the initial and the no-change case;
- the floor: one raw ``calendar-query`` REPORT returning all N bodies, timed with curl;
- the no-change floor: one ``sync-collection`` REPORT with the current sync token (the same
  body syncd sends), timed alone over a warm keep-alive connection of a requests session (the
  transport syncd's CalDAV client uses), nothing parsed. syncd's no-change cycle over it is
  ``nochange_vs_floor``.

The 10 changed events are the same for both tools in each round. Ratios are syncd's warm
cycle divided by vdirsyncer's wall time. The last line printed is one JSON object with
``events``, ``initial_ratio``, ``incremental_ratio``, ``nochange_s``, ``floor_s``,
``floor_nochange_s``, ``nochange_vs_floor``, ``peak_rss_mb`` and the figures behind them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import requests

import connectors.caldav.connector  # noqa: F401 - a warm daemon has it loaded
from syncd.config import load_config
from syncd.daemon.runtime import Runtime, build_runtime
from tests.connectors.caldav.servers import CalDAVServer, radicale_server, vcalendar, vevent

QUERY_ALL = ('<?xml version="1.0" encoding="utf-8"?>'
             '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
             '<d:prop><d:getetag/><c:calendar-data/></d:prop>'
             '<c:filter><c:comp-filter name="VCALENDAR"/></c:filter></c:calendar-query>')


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def _event(n: int, now: datetime, shift: int = 0) -> str:
    start = (now + timedelta(days=n % 300 - 20, hours=n % 24 + shift)).replace(minute=0, second=0, microsecond=0)
    return vevent(f"bench-{n}", start, start + timedelta(hours=8), summary=f"Away {n}")


class Vdirsyncer:
    def __init__(self, root: Path, server: CalDAVServer, calendar: str) -> None:
        self.root = root
        self.config = root / "vdirsyncer.conf"
        self.config.write_text(f"""[general]
status_path = "{root}/vdir-status/"

[pair bench]
a = "bench_remote"
b = "bench_local"
collections = null
conflict_resolution = "a wins"

[storage bench_remote]
type = "caldav"
url = "{calendar}"
username = "{server.username}"
password = "{server.password}"

[storage bench_local]
type = "filesystem"
path = "{root}/vdir/"
fileext = ".ics"
""")
        self.binary = str(Path(sys.executable).with_name("vdirsyncer"))

    def _run(self, *args: str) -> None:
        done = subprocess.run([self.binary, "-c", str(self.config), *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise SystemExit(f"vdirsyncer {' '.join(args)} failed: {done.stderr[-2000:]}")

    def fresh(self) -> None:
        shutil.rmtree(self.root / "vdir-status", ignore_errors=True)
        shutil.rmtree(self.root / "vdir", ignore_errors=True)
        (self.root / "vdir").mkdir()
        self._run("discover", "bench")

    def sync(self) -> float:
        return timed(lambda: self._run("sync"))

    def count(self) -> int:
        return len(list((self.root / "vdir").glob("*.ics")))


class Syncd:
    def __init__(self, root: Path, server: CalDAVServer, calendar: str) -> None:
        self.root = root
        self.config = root / "syncd.toml"
        self.config.write_text(f"""[daemon]
database_url = "sqlite:///{root}/syncd.db"
log_level = "WARNING"
mass_delete_min = 1000000

[[accounts]]
name = "dav"
provider = "caldav"
url = "{server.base_url}"
username = "{server.username}"
password = "{server.password}"

[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"
calendars = [{{ account = "dav", calendar = "{calendar}" }}]
""")
        self.rt: Runtime | None = None

    def fresh(self) -> None:
        self.close()
        for path in self.root.glob("syncd.db*"):
            path.unlink()
        self.rt = build_runtime(load_config(self.config))
        self.rt.service.prepare()

    def sync(self) -> float:
        assert self.rt is not None
        rt = self.rt
        outcomes: list[object] = []
        took = timed(lambda: outcomes.extend(rt.syncer.sync_once()))
        failed = [o for o in outcomes if not getattr(o, "ok", False)]
        if failed:
            raise SystemExit(f"syncd sync failed: {failed}")
        return took

    def command(self) -> float:
        return timed(lambda: subprocess.run([sys.executable, "-m", "syncd", "-c", str(self.config), "sync", "--once"],
                                            capture_output=True, check=True, stdin=subprocess.DEVNULL))

    def blocks(self) -> int:
        assert self.rt is not None
        return len(self.rt.service.list_blocks("alice"))

    def close(self) -> None:
        if self.rt is not None:
            self.rt.close()
            self.rt = None


def floor(server: CalDAVServer, calendar: str) -> float:
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "-u",
                           f"{server.username}:{server.password}", "-X", "REPORT", "-H", "Depth: 1",
                           "-H", "Content-Type: application/xml; charset=utf-8", "--data", QUERY_ALL, calendar],
                          capture_output=True, text=True, check=True)
    return float(done.stdout)


def sync_report(token: str) -> str:
    """The sync-collection REPORT body syncd's CalDAV listing sends."""
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<d:sync-collection xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            f'<d:sync-token>{escape(token)}</d:sync-token><d:sync-level>1</d:sync-level>'
            '<d:prop><d:getetag/><c:calendar-data/></d:prop></d:sync-collection>')


def floor_nochange(server: CalDAVServer, calendar: str, runs: int) -> float:
    """Median time of one sync-collection REPORT with the current token, alone, on a warm
    connection: what a no-change sync cannot do without."""
    headers = {"Content-Type": "application/xml; charset=utf-8", "Depth": "0"}
    with requests.Session() as session:
        session.auth = (server.username, server.password)
        first = session.request("REPORT", calendar, data=sync_report("").encode(), headers=headers)
        token = ElementTree.fromstring(first.content).findtext("{DAV:}sync-token") or ""
        if first.status_code != 207 or not token:
            raise SystemExit(f"floor: the initial sync-collection REPORT gave HTTP {first.status_code}, no token")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            answer = session.request("REPORT", calendar, data=sync_report(token).encode(), headers=headers)
            body = answer.content
            times.append(time.perf_counter() - started)
            if answer.status_code != 207 or ElementTree.fromstring(body).find("{DAV:}response") is not None:
                raise SystemExit(f"floor: the no-change REPORT gave HTTP {answer.status_code} or reported changes")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 events, 3 runs")
    parser.add_argument("--events", type=int)
    parser.add_argument("--runs", type=int)
    args = parser.parse_args(argv)
    events = args.events or (500 if args.quick else 2000)
    runs = args.runs or (3 if args.quick else 5)
    now = datetime.now(UTC)
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, radicale_server(Path(tmp)) as server:
        root = Path(tmp)
        calendar = server.make_calendar("bench")
        server.seed(calendar, vcalendar([_event(n, now) for n in range(events)]))
        print(f"Radicale calendar with {events} OOO events; {runs} runs each", flush=True)
        vdir, syncd = Vdirsyncer(root, server, calendar), Syncd(root, server, calendar)
        try:
            v_initial, s_initial, s_cli_initial = [], [], []
            for _ in range(runs):
                vdir.fresh()
                v_initial.append(vdir.sync())
                syncd.fresh()
                s_initial.append(syncd.sync())
            assert vdir.count() == events and syncd.blocks() == events, (vdir.count(), syncd.blocks())
            print(f"initial: vdirsyncer {med(v_initial):.3f} s, syncd {med(s_initial):.3f} s", flush=True)

            v_changed, s_changed = [], []
            for round_ in range(runs):
                for n in range(round_ * 10, round_ * 10 + 10):
                    server.put_event(calendar, f"bench-{n}", _event(n, now, shift=round_ + 1))
                v_changed.append(vdir.sync())
                s_changed.append(syncd.sync())
            print(f"10 changed: vdirsyncer {med(v_changed):.3f} s, syncd {med(s_changed):.3f} s", flush=True)

            v_none = [vdir.sync() for _ in range(runs)]
            s_none = [syncd.sync() for _ in range(runs)]
            print(f"nothing changed: vdirsyncer {med(v_none):.3f} s, syncd {med(s_none):.3f} s", flush=True)
            nochange_floor = floor_nochange(server, calendar, runs)
            print(f"no-change floor (one sync-collection REPORT with the current token, alone): "
                  f"{nochange_floor:.3f} s; syncd / floor = {med(s_none) / nochange_floor:.2f}", flush=True)

            syncd.close()
            s_cli_none = [syncd.command() for _ in range(runs)]
            for _ in range(runs):
                for path in root.glob("syncd.db*"):
                    path.unlink()
                s_cli_initial.append(syncd.command())
            print(f"`syncd sync --once` (with interpreter start-up): initial {med(s_cli_initial):.3f} s, "
                  f"nothing changed {med(s_cli_none):.3f} s", flush=True)
            floors = [floor(server, calendar) for _ in range(runs)]
            print(f"floor (one calendar-query REPORT with all {events} bodies, curl): {med(floors):.3f} s", flush=True)
        finally:
            syncd.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.1f} MB")
    print(json.dumps({
        "events": events,
        "runs": runs,
        "vdirsyncer_initial_s": round(med(v_initial), 3),
        "syncd_initial_s": round(med(s_initial), 3),
        "initial_ratio": round(med(s_initial) / med(v_initial), 3),
        "vdirsyncer_incremental_s": round(med(v_changed), 3),
        "syncd_incremental_s": round(med(s_changed), 3),
        "incremental_ratio": round(med(s_changed) / med(v_changed), 3),
        "vdirsyncer_nochange_s": round(med(v_none), 3),
        "nochange_s": round(med(s_none), 3),
        "cli_initial_s": round(med(s_cli_initial), 3),
        "cli_nochange_s": round(med(s_cli_none), 3),
        "floor_s": round(med(floors), 3),
        "floor_nochange_s": round(nochange_floor, 4),
        "nochange_vs_floor": round(med(s_none) / nochange_floor, 2),
        "peak_rss_mb": round(peak, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
