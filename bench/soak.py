"""A long run at full size: does a replica's memory, open files or threads grow?

    python -m bench.soak [--quick] [--minutes N] [--users N] [--events N]

The deployment of `bench.scale` (N users on fake Google, fake Graph and Radicale, M OOO
events each: by default 10,000 users and 100,000 events), two `syncd run` replicas on one
PostgreSQL schema, each link polled every two minutes, and a webhook sink. After the first
sync and a five-minute warm-up, for ``--minutes`` (default 30): every 20 s a share of the
users (0.5 %) move an OOO event so that it covers now and ends a few minutes later (blocks
come and go, statuses change and are published, calendars are written), and every 30 s
each replica's resident memory, open file descriptors and threads are read from /proc.

Figures: ``minutes``, ``rss_growth_pct`` (the larger growth of the two replicas, from the
first sample after the warm-up to the mean of the last three), ``fd_growth`` and
``thread_growth`` (the same, as counts), ``rss_mb_start``/``rss_mb_end``, ``events_published``,
``edits``. The last line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import ProcessStats, Receiver, pg_schema, process_stats, stop, wait_for
from bench.scale import Links, deployment, start_replicas
from tests.support import free_port

SAMPLE_EVERY = 30.0
EDIT_EVERY = 20.0
EDIT_SHARE = 0.005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users for 3 minutes, 1 minute of warm-up")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--warm-up", type=float, help="minutes before the first sample (default 5)")
    parser.add_argument("--users", type=int)
    parser.add_argument("--events", type=int, default=10)
    args = parser.parse_args(argv)
    users = args.users or (1000 if args.quick else 10_000)
    minutes = args.minutes or (3.0 if args.quick else 30.0)
    warm_up = args.warm_up if args.warm_up is not None else (1.0 if args.quick else 5.0)

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, pg_schema() as url, \
            deployment(Path(tmp), url, users, args.events) as dep:
        receiver = Receiver(free_port(), Path(tmp) / "received.jsonl")
        sink = f'[[sinks]]\ntype = "webhook"\nname = "helpdesk"\nurl = "{receiver.url}"\nconcurrency = 8\n'
        links = Links(url)
        processes = start_replicas(dep, ["replica-a", "replica-b"], poll_interval="2m", extra=sink)
        edits = 0
        try:
            wait_for(lambda: links.total() >= users, 120, "the replicas to load the config")
            started = time.monotonic()
            wait_for(lambda: links.synced_since(datetime.fromtimestamp(0, UTC)) >= users, 1800, "the first sync",
                     step=1.0)
            print(f"first sync: {time.monotonic() - started:.0f} s; warming up for {warm_up:g} min", flush=True)

            samples: list[list[ProcessStats]] = []
            round_ = 0
            begin = time.monotonic()
            sample_from = begin + warm_up * 60
            end = sample_from + minutes * 60
            next_edit = next_sample = begin
            while time.monotonic() < end:
                now = time.monotonic()
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a replica exited; see its log in the bench folder")
                if now >= next_edit:
                    wall = datetime.now(UTC)
                    edits += dep.edit(EDIT_SHARE, round_, (wall - timedelta(hours=1),
                                                          wall + timedelta(minutes=2 + round_ % 4)))
                    round_ += 1
                    next_edit = now + EDIT_EVERY
                if now >= sample_from and now >= next_sample:
                    stats = [process_stats(p.pid) for p in processes]
                    samples.append(stats)
                    print(f"{(now - sample_from) / 60:5.1f} min: " + "; ".join(
                        f"RSS {s.rss_mb:.0f} MB, {s.fds} fds, {s.threads} threads" for s in stats), flush=True)
                    next_sample = now + SAMPLE_EVERY
                time.sleep(0.5)
            failing = links.failing()
            if failing:
                print(f"links with errors at the end, e.g.: {failing[0]}", file=sys.stderr)
            published = len(receiver.events())
        finally:
            for process in processes:
                stop(process)
            receiver.close()

    def growth(replica: int, field: str) -> float:
        first = getattr(samples[0][replica], field)
        last = statistics.mean(getattr(s[replica], field) for s in samples[-3:])
        return float(last - first)

    rss = [100 * growth(r, "rss_mb") / samples[0][r].rss_mb for r in range(len(processes))]
    result = {
        "users": users,
        "minutes": minutes,
        "samples": len(samples),
        "rss_mb_start": round(max(s.rss_mb for s in samples[0]), 1),
        "rss_mb_end": round(max(s.rss_mb for s in samples[-1]), 1),
        "rss_growth_pct": round(max(rss), 2),
        "fd_growth": round(max(growth(r, "fds") for r in range(len(processes))), 1),
        "thread_growth": round(max(growth(r, "threads") for r in range(len(processes))), 1),
        "edits": edits,
        "events_published": published,
    }
    print(f"RSS growth {result['rss_growth_pct']} %, fd growth {result['fd_growth']}, "
          f"thread growth {result['thread_growth']} over {minutes:g} min")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
