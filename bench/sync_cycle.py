"""How long a sync cycle takes with the local connector, and what it costs in memory.

    python -m bench.sync_cycle [--quick] [--users N] [--events N]

Builds N users, each with a two-way calendar folder holding M OOO events (one of them a
weekly recurring series) and a second, push-only calendar the blocks are mirrored to, on a
fresh SQLite database. Then measures:

- ``first_sync_s``: the first `sync --once` pass (every event becomes a block, every block is
  written to the mirror calendar);
- ``idle_cycle_s``: a pass when nothing changed (the cost of polling);
- ``one_change_cycle_s``: a pass after one event in one calendar was edited;
- ``status_eval_per_s``: users brought up to date per second by the status sweep;
- ``peak_rss_mb``: the process's peak resident memory.

Prints progress as it goes and one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.config import load_config
from syncd.daemon.runtime import build_runtime


def _event(uid: str, start: datetime, hours: int, extra: str = "") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
            f"DTEND:{start + timedelta(hours=hours):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Away {uid}\r\n{extra}"
            "X-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def build(root: Path, users: int, events: int, now: datetime) -> Path:
    lines = [f'[daemon]\ndatabase_url = "sqlite:///{root}/syncd.db"\nmass_delete_min = 1000000\n',
             f'[[accounts]]\nname = "folder"\nprovider = "local"\nroot = "{root}/calendars"\n']
    for u in range(users):
        work, home = root / "calendars" / f"u{u}", root / "calendars" / f"u{u}-home"
        work.mkdir(parents=True)
        home.mkdir(parents=True)
        for e in range(events - 1):
            start = (now + timedelta(days=e * 3 - 20, hours=u % 24)).replace(minute=0, second=0, microsecond=0)
            (work / f"e{e}.ics").write_text(_event(f"u{u}-e{e}", start, 8), newline="")
        weekly = now.replace(hour=6, minute=0, second=0, microsecond=0)
        (work / "weekly.ics").write_text(_event(f"u{u}-weekly", weekly, 2, "RRULE:FREQ=WEEKLY;COUNT=20\r\n"),
                                         newline="")
        lines.append(f'[[users]]\nid = "u{u}"\nemail = "u{u}@example.com"\ntimezone = "Europe/Stockholm"\n'
                     f'calendars = [{{ account = "folder", calendar = "u{u}" }}, '
                     f'{{ account = "folder", calendar = "u{u}-home", direction = "push" }}]\n')
    config = root / "syncd.toml"
    config.write_text("\n".join(lines))
    return config


def timed(label: str, work: object) -> float:
    started = time.perf_counter()
    result = work() if callable(work) else None
    elapsed = time.perf_counter() - started
    print(f"{label}: {elapsed:.3f} s" + (f" ({result})" if result is not None else ""), flush=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run that finishes in seconds")
    parser.add_argument("--users", type=int)
    parser.add_argument("--events", type=int, help="OOO events per user (one is a weekly series of 20)")
    args = parser.parse_args(argv)
    users = args.users or (20 if args.quick else 200)
    events = args.events or (10 if args.quick else 25)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        root = Path(tmp)
        config = load_config(build(root, users, events, now))
        print(f"{users} users x {events} OOO events (+ a weekly series of 20), two links each", flush=True)
        rt = build_runtime(config)
        rt.service.prepare()

        def cycle() -> str:
            outcomes = rt.syncer.sync_once()
            failed = [o for o in outcomes if not o.ok]
            if failed:
                raise SystemExit(f"bench: {failed[0].name}: {failed[0].error}")
            return f"{sum(o.actions for o in outcomes)} actions"

        first = timed("first sync", cycle)
        blocks = sum(len(rt.service.list_blocks(f"u{u}")) for u in range(users))
        mirrored = sum(len(list((root / "calendars" / f"u{u}-home").glob("*.ics"))) for u in range(users))
        print(f"blocks: {blocks}, events in mirror calendars: {mirrored}", flush=True)
        idle = min(timed(f"idle cycle {i + 1}", cycle) for i in range(3))
        edited = root / "calendars" / "u0" / "e1.ics"
        edited.write_text(edited.read_text().replace("SUMMARY:Away", "SUMMARY:Moved"), newline="")
        one = timed("one-change cycle", cycle)
        sweep = timed("status sweep", rt.service.advance_all)
        rt.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "users": users, "events_per_user": events, "blocks": blocks,
        "first_sync_s": round(first, 3), "idle_cycle_s": round(idle, 3), "one_change_cycle_s": round(one, 3),
        "idle_cycle_ms_per_link": round(idle * 1000 / (2 * users), 3),
        "status_eval_per_s": round(users / sweep, 1), "peak_rss_mb": round(rss_mb, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
