"""An incremental poll cycle over many Google Calendar users, batched and not.

    python -m bench.google_poll [--quick] [--users N] [--latency S] [--changed SHARE]

Starts the fake Google Calendar server in its own process (so its CPU is not ours), with N
users (default 10,000) each holding two OOO events, and syncd on a fresh SQLite database
with one two-way Google link per user, signing in through a service account. After a first
full sync (with the fake answering at once, to save time; it is not what is measured), the
fake adds ``--latency`` (default 50 ms) to every HTTP request, a share of the users
(default 1 %) edit an OOO event, and one poll cycle over every link is timed: the same
`LinkSyncer.sync_many` pass the daemon's poll job runs. Then the same again with batching
off (``batch_size = 1``: one HTTP request per calendar, from the same worker pool).

The fake enforces no quota; the account's request budget is raised to 1,000,000 a minute,
as a 10,000-user deployment would have Google raise it (the default, 10,000 a minute, is
used up by the first full sync of 10,000 users).

Figures: ``cycle_s`` (wall time of the batched cycle), ``requests`` and
``requests_per_user`` (top-level HTTP requests in that cycle; a batch is one), ``batch_parts``,
``unbatched_cycle_s``, ``unbatched_requests``, ``first_sync_s``, ``peak_rss_mb``.
The last line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.google import GoogleConnector
from syncd.config import load_config
from syncd.daemon import Runtime, build_runtime
from tests.fakes.google_calendar import RemoteFakeGoogleCalendar, serve_in_subprocess
from tests.google_support import private_key_pem

TZ = "Europe/Stockholm"


def _event(n: int, k: int, now: datetime) -> dict[str, Any]:
    start = (now + timedelta(days=3 + 7 * k + n % 7, hours=n % 9)).replace(minute=0, second=0, microsecond=0)
    return {"summary": f"Away {n}-{k}", "eventType": "outOfOffice",
            "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=8)).isoformat(), "timeZone": "UTC"}}


def seed(fake: RemoteFakeGoogleCalendar, users: int, now: datetime) -> list[list[str]]:
    ids: list[list[str]] = []
    chunk: list[list[Any]] = []
    for n in range(users):
        chunk += [[f"u{n}@example.com", "primary", _event(n, k, now)] for k in range(2)]
        if len(chunk) >= 4000 or n == users - 1:
            made = fake.control("add_events", items=chunk)["ids"]
            ids += [made[i:i + 2] for i in range(0, len(made), 2)]
            chunk = []
    return ids


def write_config(root: Path, fake: RemoteFakeGoogleCalendar, users: int) -> Path:
    sa = root / "google-sa.json"
    sa.write_text(json.dumps({"type": "service_account", "project_id": "bench", "private_key_id": "k",
                              "private_key": private_key_pem(), "client_email": "syncd@bench.iam.gserviceaccount.com",
                              "client_id": "1", "token_uri": fake.token_uri}))
    lines = [f'[daemon]\ndatabase_url = "sqlite:///{root}/syncd.db"\nlog_level = "WARNING"\n',
             f'[[accounts]]\nname = "workspace"\nprovider = "google"\nservice_account_file = "{sa}"\n'
             f'api_endpoint = "{fake.api_endpoint}"\nbatch_uri = "{fake.batch_uri}"\n'
             'project_quota = 1000000\nuser_quota = 600\n']
    for n in range(users):
        lines.append(f'[[users]]\nid = "u{n}"\nemail = "u{n}@example.com"\ntimezone = "{TZ}"\n'
                     'calendars = [{ account = "workspace" }]\n')
    path = root / "syncd.toml"
    path.write_text("\n".join(lines))
    return path


def cycle(rt: Runtime, fake: RemoteFakeGoogleCalendar, link_ids: list[int]) -> tuple[float, dict[str, int], int]:
    fake.control("reset_counts")
    started = time.perf_counter()
    outcomes = rt.syncer.sync_many(link_ids)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        print(f"  {len(failed)} link(s) failed, e.g. {failed[0].name}: {failed[0].error}", file=sys.stderr)
    return elapsed, fake.control("request_counts"), sum(o.actions for o in outcomes)


def edit_some(fake: RemoteFakeGoogleCalendar, ids: list[list[str]], share: float, round_: int,
              now: datetime) -> int:
    step = max(1, round(1 / share))
    changed = 0
    for n in range(round_, len(ids), step):
        start = (now + timedelta(days=2, hours=round_ + 1)).replace(minute=0, second=0, microsecond=0)
        fake.control("edit_event", user=f"u{n}@example.com", calendar="primary", event_id=ids[n][0],
                     changes={"start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
                              "end": {"dateTime": (start + timedelta(hours=3)).isoformat(), "timeZone": "UTC"}})
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 users: finishes in about a minute")
    parser.add_argument("--users", type=int)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--changed", type=float, default=0.01, help="share of users who edit an event")
    args = parser.parse_args(argv)
    users = args.users or (1000 if args.quick else 10_000)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, serve_in_subprocess(0.0) as fake:
        root = Path(tmp)
        print(f"seeding {users} users with 2 OOO events each", flush=True)
        ids = seed(fake, users, now)
        rt = build_runtime(load_config(write_config(root, fake, users)))
        try:
            rt.service.prepare()
            link_ids = rt.syncer.link_ids()
            started = time.perf_counter()
            outcomes = rt.syncer.sync_many(link_ids)
            first_sync = time.perf_counter() - started
            assert all(o.ok for o in outcomes), next(o.error for o in outcomes if not o.ok)
            print(f"first sync (no latency, {users} service-account sign-ins): {first_sync:.1f} s", flush=True)

            fake.control("set_latency", seconds=args.latency)
            changed = edit_some(fake, ids, args.changed, 0, now)
            cycle_s, counts, actions = cycle(rt, fake, link_ids)
            print(f"batched cycle, {changed} users changed, {args.latency * 1000:.0f} ms latency: {cycle_s:.2f} s, "
                  f"{counts['requests']} HTTP requests ({counts['batch_parts']} batch parts), {actions} changes "
                  "applied", flush=True)

            connector = rt.connectors.for_account("workspace")
            assert isinstance(connector, GoogleConnector)
            connector.options = replace(connector.options, batch_size=1)
            edit_some(fake, ids, args.changed, 1, now)
            unbatched_s, unbatched, _ = cycle(rt, fake, link_ids)
            print(f"unbatched cycle: {unbatched_s:.2f} s, {unbatched['requests']} HTTP requests", flush=True)
        finally:
            rt.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.1f} MB")
    print(json.dumps({
        "users": users,
        "changed_users": changed,
        "latency_ms": round(args.latency * 1000),
        "first_sync_s": round(first_sync, 2),
        "cycle_s": round(cycle_s, 3),
        "requests": counts["requests"],
        "batch_parts": counts["batch_parts"],
        "requests_per_user": round(counts["requests"] / users, 4),
        "unbatched_cycle_s": round(unbatched_s, 2),
        "unbatched_requests": unbatched["requests"],
        "peak_rss_mb": round(peak, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
