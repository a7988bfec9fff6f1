"""How soon status changes are published when thousands of OOO blocks end in the same minute.

    python -m bench.boundaries [--quick] [--users N] [--blocks N] [--replicas N] [--lead S] [--keep DIR]

Seeds a fresh PostgreSQL schema with N helpdesk users (default 10,000), each with M blocks
(default 10: 100,000 in all). One block per user is under way and ends at the same instant,
a whole minute at least two minutes away; the others lie in the past and the future. Then
runs `syncd run` (``--replicas`` processes) with a webhook sink pointing at a receiver in its
own process, which notes when each event arrives. When the daemons have published everyone's
"away" (they start with the helpdesk assuming everybody available), the bench waits for the
boundary and for every "available" event whose ``effective_at`` is that instant.

Figures: ``transitions`` (users whose block ends then), ``published`` (distinct events for
that instant received), ``duplicates`` (repeats received, by event id), ``p50_lag_s``,
``p99_lag_s``, ``max_lag_s`` (arrival minus the boundary), ``peak_rss_mb`` (the largest
replica). The last line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import Receiver, percentile, pg_schema, process_stats, replica, seed_helpdesk_users, stop, wait_for
from syncd.core.time import format_utc
from tests.support import free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users")
    parser.add_argument("--users", type=int)
    parser.add_argument("--blocks", type=int, default=10, help="blocks per user")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--lead", type=float, default=150.0, help="least seconds from start to the boundary")
    parser.add_argument("--keep", type=Path, help="copy what was received and the replicas' logs to this folder")
    args = parser.parse_args(argv)
    users = args.users or (1000 if args.quick else 10_000)
    started = datetime.now(UTC)
    boundary = (started + timedelta(seconds=args.lead + 60)).replace(second=0, microsecond=0)
    ids = [f"u{n:05d}" for n in range(users)]
    blocks: dict[str, list[tuple[datetime, datetime]]] = {}
    for n, user in enumerate(ids):
        own = [(started - timedelta(hours=2 + n % 5), boundary)]  # under way, ends at the boundary
        for k in range(1, args.blocks):
            day = timedelta(days=3 * k - (15 if k % 2 else 0))  # some before, most after
            start = (boundary + day + timedelta(hours=1 + n % 7)).replace(minute=0)
            own.append((start, start + timedelta(hours=8)))
        blocks[user] = own

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, pg_schema() as url:
        root = Path(tmp)
        print(f"seeding {users:,} users and {users * args.blocks:,} blocks; boundary {format_utc(boundary)}",
              flush=True)
        seed_helpdesk_users(url, ids, blocks, started)
        receiver = Receiver(free_port(), root / "received.jsonl")
        configs = []
        for r in range(args.replicas):
            config = root / f"replica{r}.toml"
            config.write_text(
                f'[daemon]\ndatabase_url = "{url}"\nlog_level = "WARNING"\n\n'
                f'[api]\nlisten = "127.0.0.1:{free_port()}"\n\n'
                f'[[sinks]]\ntype = "webhook"\nname = "helpdesk"\nurl = "{receiver.url}"\n'
                'secret = "bench-webhook-secret-of-24-bytes"\n'
                'concurrency = 16\n')
            configs.append(config)
        processes = [replica(config, root / f"replica{r}.log") for r, config in enumerate(configs)]
        try:
            start_up = time.monotonic()
            wait_for(lambda: sum(e["status"] == "away" for e in receiver.events()) >= users, args.lead,
                     "everyone's 'away' to be published")
            print(f"start-up: every user away after {time.monotonic() - start_up:.1f} s", flush=True)
            before = receiver.count()  # every request so far: the "away" events
            wait_until = boundary.timestamp() - time.time()
            if wait_until < 5:
                raise SystemExit("start-up took too long for this boundary; raise --lead")
            print(f"waiting {wait_until:.0f} s for the boundary", flush=True)
            time.sleep(max(0.0, wait_until))
            at = format_utc(boundary)

            def ended() -> list[dict[str, object]]:
                return [e for e in receiver.events() if e["status"] == "available" and e["effective_at"] == at]

            def all_ended() -> bool:
                # Counting lines is cheap; the events are parsed only once they can be complete,
                # so that the bench does not take CPU from the replicas during the burst.
                return receiver.count() >= before + users and len({e["id"] for e in ended()}) >= users
            wait_for(all_ended, 120, "every transition")
            time.sleep(2)  # late repeats, if any
            stats = [process_stats(p.pid) for p in processes]
            events = ended()
        finally:
            for process in processes:
                stop(process)
            receiver.close()
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for kept in [root / "received.jsonl", *(root / f"replica{r}.log" for r in range(args.replicas))]:
                shutil.copy(kept, args.keep / kept.name)
        for r in range(args.replicas):
            errors = [line for line in (root / f"replica{r}.log").read_text().splitlines() if "ERROR" in line]
            if errors:
                print(f"replica {r}: {len(errors)} error line(s), first: {errors[0]}", file=sys.stderr)

    first: dict[str, float] = {}
    for event in events:
        first.setdefault(str(event["id"]), float(str(event["received_at"])))
    per_user = Counter(str(e["user"]) for e in events if first.get(str(e["id"])) == e["received_at"])
    lags = [when - boundary.timestamp() for when in first.values()]
    result = {
        "users": users,
        "blocks": users * args.blocks,
        "replicas": args.replicas,
        "transitions": users,
        "published": len(first),
        "users_published_once": sum(1 for count in per_user.values() if count == 1),
        "duplicates": len(events) - len(first),
        "p50_lag_s": round(statistics.median(lags), 3),
        "p99_lag_s": round(percentile(lags, 99), 3),
        "max_lag_s": round(max(lags), 3),
        "peak_rss_mb": round(max(s.peak_rss_mb for s in stats), 1),
    }
    print(f"published {result['published']:,} of {users:,} transitions; lag p50 {result['p50_lag_s']} s, "
          f"p99 {result['p99_lag_s']} s, max {result['max_lag_s']} s; peak RSS {result['peak_rss_mb']} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
