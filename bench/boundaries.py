"""How soon status changes are published when thousands of OOO blocks end in the same minute.

    python -m bench.boundaries [--quick] [--users N] [--blocks N] [--replicas N] [--lead S] [--keep DIR]

First, before any replica runs, the floor: one signed "available" event per user, sent by the
webhook sink alone to a fresh receiver of the same kind. The sink is built from the replicas'
config as the daemon builds it (same secret, ``concurrency = 16``); the events are encoded and
signed ahead and sent a publisher page (500) at a time, one queue per user, as the daemon
sends a boundary's. As in the daemon, everyone's "away" goes out first over the same
connections, untimed. ``sink_floor_s`` is the time from the first send until the receiver has
them all, the best of three such bursts.

Then a boundary run: seeds a fresh PostgreSQL schema with N helpdesk users (default 10,000),
each with M blocks (default 10: 100,000 in all). One block per user is under way and ends at
the same instant, a whole minute at least two minutes away; the others lie in the past and the
future. Then runs `syncd run` (``--replicas`` processes) with a webhook sink pointing at a
receiver in its own process, which notes when each event arrives. When the daemons have
published everyone's "away" (they start with the helpdesk assuming everybody available), the
bench waits for the boundary and for every "available" event whose ``effective_at`` is that
instant. With ``--replicas`` 2 or more, a 1-replica run comes first, on its own schema
(seeded the same way) and with its own boundary.

Figures, of the ``--replicas`` run: ``transitions`` (users whose block ends then),
``published`` (distinct events for that instant received), ``duplicates`` (repeats received,
by event id), ``p50_lag_s``, ``p99_lag_s``, ``max_lag_s`` (arrival minus the boundary),
``peak_rss_mb`` (the largest replica); ``sink_floor_s`` and ``p99_vs_floor`` (``p99_lag_s``
over it: how far the daemon is from what delivery alone can do). With 2 replicas or more,
``p99_lag_s_1_replica`` (the 1-replica run's) and ``replica_speedup`` (``p99_lag_s`` over it:
below 1, the replicas publish sooner than one); with 1 replica both are null. The last line
printed is one JSON object with them.

``--keep DIR`` copies each run's received events and replica logs to ``DIR/replicas-K/``, and
the floor's received events to ``DIR/sink-floor/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    PG_URL,
    Receiver,
    percentile,
    pg_schema,
    process_stats,
    replica,
    seed_helpdesk_users,
    stop,
    wait_for,
)
from syncd.config import load_config
from syncd.core.availability import Period, Reason, Status, StatusChange
from syncd.core.events import status_event
from syncd.core.time import format_utc
from syncd.publish import Sink, build_sink
from syncd.publish.publisher import PAGE
from tests.support import free_port

FLOOR_BURSTS = 3  # a floor is the least delivery takes: the best of a few, as noise only adds


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

    # Before the replicas: nothing else is running while the floor is measured.
    floor = sink_floor(users, args.keep / "sink-floor" if args.keep else None)
    print(f"sink floor: {users:,} events delivered in {floor:.3f} s", flush=True)
    one = None
    if args.replicas >= 2:
        one = boundary_run(users, args.blocks, 1, args.lead, args.keep / "replicas-1" if args.keep else None)
    result = boundary_run(users, args.blocks, args.replicas, args.lead,
                          args.keep / f"replicas-{args.replicas}" if args.keep else None)
    result["sink_floor_s"] = round(floor, 3)
    result["p99_vs_floor"] = round(result["p99_lag_s"] / floor, 2)
    result["p99_lag_s_1_replica"] = None if one is None else one["p99_lag_s"]
    result["replica_speedup"] = None if one is None else round(result["p99_lag_s"] / one["p99_lag_s"], 2)
    print(json.dumps(result))
    return 0


def user_ids(users: int) -> list[str]:
    return [f"u{n:05d}" for n in range(users)]


def replica_config(database_url: str, hook: str) -> str:
    """A replica's config file: the helpdesk webhook sink is the floor's too."""
    return (f'[daemon]\ndatabase_url = "{database_url}"\nlog_level = "WARNING"\n\n'
            f'[api]\nlisten = "127.0.0.1:{free_port()}"\n\n'
            f'[[sinks]]\ntype = "webhook"\nname = "helpdesk"\nurl = "{hook}"\n'
            'secret = "bench-webhook-secret-of-24-bytes"\n'
            'concurrency = 16\n')


def sink_floor(users: int, keep: Path | None) -> float:
    """Seconds from the first send until a fresh receiver has one "available" event per user,
    sent by the replicas' webhook sink with nothing else running: what delivery alone can do.
    The best of `FLOOR_BURSTS`, after everyone's "away" has gone out untimed, as the daemon's
    sink sends it before the boundary over the same kept-alive connections."""
    with tempfile.TemporaryDirectory(prefix="syncd-bench-floor-") as tmp:
        root = Path(tmp)
        receiver = Receiver(free_port(), root / "received.jsonl")
        config = root / "floor.toml"
        config.write_text(replica_config(PG_URL, receiver.url))
        [sink_config] = load_config(config).sinks
        sink = build_sink(sink_config)
        try:
            burst(sink, receiver, users, "away")
            floor = min(burst(sink, receiver, users, "available") for _ in range(FLOOR_BURSTS))
        finally:
            sink.close()
            receiver.close()
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "received.jsonl", keep / "received.jsonl")
    return floor


def burst(sink: Sink, receiver: Receiver, users: int, status: Status) -> float:
    """One event per user to ``status``, sent as the publisher sends a boundary's: encoded and
    signed beforehand, then a page at a time with one queue per user. Returns the seconds from
    the first send until the receiver had the last."""
    at = datetime.now(UTC).replace(microsecond=0)
    was: Status = "available" if status == "away" else "away"
    reason: Reason = "ooo_started" if status == "away" else "ooo_ended"
    start, end = (at, at + timedelta(hours=8)) if status == "away" else (at - timedelta(hours=8), at)
    events = [status_event(uuid.uuid4().hex, user, f"{user}@example.com",
                           StatusChange(status, was, reason, at, f"{user}-b0"), Period(f"{user}-b0", start, end))
              for user in user_ids(users)]
    sink.prepare(events, at.timestamp())
    before = receiver.count()  # the previous bursts were received whole
    first_send = time.time()
    for page in range(0, users, PAGE):
        sent = sink.deliver_all([[event] for event in events[page:page + PAGE]])
        failures = [failure for _count, failure in sent if failure is not None]
        if failures:
            raise SystemExit(f"sink floor: {len(failures)} event(s) not delivered, first: {failures[0]}")
    wait_for(lambda: receiver.count() >= before + users, 60, "the sink floor's events")
    ids = {event["id"] for event in events}
    arrivals = [float(e["received_at"]) for e in receiver.events() if e["id"] in ids]
    if len(arrivals) != users:
        raise SystemExit(f"sink floor: {len(arrivals):,} of {users:,} events received")
    return max(arrivals) - first_send


def boundary_run(users: int, blocks_per_user: int, replicas: int, lead: float, keep: Path | None) -> dict[str, Any]:
    """One run on a fresh schema with a boundary of its own: the figures of today's JSON line."""
    started = datetime.now(UTC)
    boundary = (started + timedelta(seconds=lead + 60)).replace(second=0, microsecond=0)
    ids = user_ids(users)
    blocks: dict[str, list[tuple[datetime, datetime]]] = {}
    for n, user in enumerate(ids):
        own = [(started - timedelta(hours=2 + n % 5), boundary)]  # under way, ends at the boundary
        for k in range(1, blocks_per_user):
            day = timedelta(days=3 * k - (15 if k % 2 else 0))  # some before, most after
            start = (boundary + day + timedelta(hours=1 + n % 7)).replace(minute=0)
            own.append((start, start + timedelta(hours=8)))
        blocks[user] = own

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, pg_schema() as url:
        root = Path(tmp)
        print(f"{replicas} replica(s): seeding {users:,} users and {users * blocks_per_user:,} blocks; "
              f"boundary {format_utc(boundary)}", flush=True)
        seed_helpdesk_users(url, ids, blocks, started)
        receiver = Receiver(free_port(), root / "received.jsonl")
        configs = []
        for r in range(replicas):
            config = root / f"replica{r}.toml"
            config.write_text(replica_config(url, receiver.url))
            configs.append(config)
        processes = [replica(config, root / f"replica{r}.log") for r, config in enumerate(configs)]
        try:
            start_up = time.monotonic()
            wait_for(lambda: sum(e["status"] == "away" for e in receiver.events()) >= users, lead,
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
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            for kept in [root / "received.jsonl", *(root / f"replica{r}.log" for r in range(replicas))]:
                shutil.copy(kept, keep / kept.name)
        for r in range(replicas):
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
        "blocks": users * blocks_per_user,
        "replicas": replicas,
        "transitions": users,
        "published": len(first),
        "users_published_once": sum(1 for count in per_user.values() if count == 1),
        "duplicates": len(events) - len(first),
        "p50_lag_s": round(statistics.median(lags), 3),
        "p99_lag_s": round(percentile(lags, 99), 3),
        "max_lag_s": round(max(lags), 3),
        "peak_rss_mb": round(max(s.peak_rss_mb for s in stats), 1),
    }
    print(f"{replicas} replica(s): published {result['published']:,} of {users:,} transitions; "
          f"lag p50 {result['p50_lag_s']} s, p99 {result['p99_lag_s']} s, max {result['max_lag_s']} s; "
          f"peak RSS {result['peak_rss_mb']} MB", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
