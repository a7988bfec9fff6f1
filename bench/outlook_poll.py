"""An incremental poll cycle over many Microsoft 365 mailboxes, batched and not.

    python -m bench.outlook_poll [--quick] [--users N] [--latency S] [--changed SHARE]

Starts the fake Microsoft identity platform + Graph server (HTTPS, a test CA) in its own
process, with N mailboxes (default 10,000) each holding two OOO events, and syncd on a fresh
SQLite database with one two-way Outlook link per mailbox, signing in app-only (client
credentials) through msal. After a first full sync (with the fake answering at once; not
what is measured), the fake adds ``--latency`` (default 50 ms) to every HTTP request, a
share of the users (default 1 %) edit an OOO event, and one poll cycle over every link is
timed: the `LinkSyncer.sync_many` pass the daemon's poll job runs. Then the same again with
batching off (``batch_size = 1``: one delta request per mailbox, from the same workers).

Figures: ``cycle_s``, ``requests`` and ``requests_per_user`` (top-level HTTP requests in the
cycle; a $batch is one), ``batch_parts``, ``unbatched_cycle_s``, ``unbatched_requests``,
``first_sync_s``, ``peak_rss_mb``. The last line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.outlook import OutlookConnector
from syncd.config import load_config
from syncd.daemon import Runtime, build_runtime
from tests.fakes.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from tests.fakes.http_support import call_control, ready_subprocess


class Remote:
    """The fake in another process, driven through its control namespace."""

    def __init__(self, base_url: str, ca_bundle: str) -> None:
        self.base_url = base_url
        self.ca_bundle = ca_bundle
        self.context = ssl.create_default_context(cafile=ca_bundle)

    def control(self, command: str, **args: Any) -> Any:
        return call_control(self.base_url, command, args, context=self.context)["result"]


def _event(n: int, k: int, now: datetime) -> dict[str, Any]:
    start = (now + timedelta(days=3 + 7 * k + n % 7, hours=n % 9)).replace(minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=8)
    return {"subject": f"Away {n}-{k}", "showAs": "oof",
            "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": end.replace(tzinfo=None).isoformat(), "timeZone": "UTC"}}


def seed(fake: Remote, users: int, now: datetime) -> list[str]:
    first_ids: list[str] = []
    chunk: list[dict[str, Any]] = []
    for n in range(users):
        chunk += [{"user": f"u{n}@contoso.com", "event": _event(n, k, now)} for k in range(2)]
        if len(chunk) >= 4000 or n == users - 1:
            made = fake.control("add_events", events=chunk)
            first_ids += made[0::2]
            chunk = []
    return first_ids


def write_config(root: Path, fake: Remote, users: int) -> Path:
    lines = [f'[daemon]\ndatabase_url = "sqlite:///{root}/syncd.db"\nlog_level = "WARNING"\n',
             f'[[accounts]]\nname = "m365"\nprovider = "outlook"\ntenant_id = "{DEFAULT_TENANT_ID}"\n'
             f'client_id = "{DEFAULT_CLIENT_ID}"\nclient_secret = "{DEFAULT_CLIENT_SECRET}"\n'
             f'authority = "{fake.base_url}/{DEFAULT_TENANT_ID}"\ngraph_url = "{fake.base_url}/v1.0"\n'
             f'ca_bundle = "{fake.ca_bundle}"\n']
    for n in range(users):
        lines.append(f'[[users]]\nid = "u{n}"\nemail = "u{n}@contoso.com"\ntimezone = "Europe/Stockholm"\n'
                     'calendars = [{ account = "m365" }]\n')
    path = root / "syncd.toml"
    path.write_text("\n".join(lines))
    return path


def cycle(rt: Runtime, fake: Remote, link_ids: list[int]) -> tuple[float, dict[str, int], int]:
    fake.control("reset_counts")
    started = time.perf_counter()
    outcomes = rt.syncer.sync_many(link_ids)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        print(f"  {len(failed)} link(s) failed, e.g. {failed[0].name}: {failed[0].error}", file=sys.stderr)
    return elapsed, fake.control("request_counts"), sum(o.actions for o in outcomes)


def edit_some(fake: Remote, ids: list[str], share: float, round_: int, now: datetime) -> int:
    step = max(1, round(1 / share))
    changed = 0
    for n in range(round_, len(ids), step):
        start = (now + timedelta(days=2, hours=round_ + 1)).replace(minute=0, second=0, microsecond=0, tzinfo=None)
        fake.control("edit_event", user=f"u{n}@contoso.com", event_id=ids[n], changes={
            "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=3)).isoformat(), "timeZone": "UTC"}})
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 mailboxes: finishes in about a minute")
    parser.add_argument("--users", type=int)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--changed", type=float, default=0.01, help="share of users who edit an event")
    args = parser.parse_args(argv)
    users = args.users or (1000 if args.quick else 10_000)
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, \
            ready_subprocess("tests.fakes.graph", ["--port", "0", "--latency", "0"]) as ready:
        fake = Remote(ready[0], ready[1])
        root = Path(tmp)
        print(f"seeding {users} mailboxes with 2 OOO events each", flush=True)
        ids = seed(fake, users, now)
        rt = build_runtime(load_config(write_config(root, fake, users)))
        try:
            rt.service.prepare()
            link_ids = rt.syncer.link_ids()
            started = time.perf_counter()
            outcomes = rt.syncer.sync_many(link_ids)
            first_sync = time.perf_counter() - started
            assert all(o.ok for o in outcomes), next(o.error for o in outcomes if not o.ok)
            print(f"first sync (no latency): {first_sync:.1f} s", flush=True)

            fake.control("set_latency", seconds=args.latency)
            changed = edit_some(fake, ids, args.changed, 0, now)
            cycle_s, counts, actions = cycle(rt, fake, link_ids)
            print(f"batched cycle, {changed} mailboxes changed, {args.latency * 1000:.0f} ms latency: {cycle_s:.2f} s, "
                  f"{counts['graph_requests']} HTTP requests ({counts['batch_parts']} batch parts, "
                  f"{counts['token_requests']} token requests), {actions} changes applied", flush=True)

            connector = rt.connectors.for_account("m365")
            assert isinstance(connector, OutlookConnector)
            connector.options = replace(connector.options, batch_size=1)
            edit_some(fake, ids, args.changed, 1, now)
            unbatched_s, unbatched, _ = cycle(rt, fake, link_ids)
            print(f"unbatched cycle: {unbatched_s:.2f} s, {unbatched['graph_requests']} HTTP requests", flush=True)
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
        "requests": counts["graph_requests"],
        "batch_parts": counts["batch_parts"],
        "requests_per_user": round(counts["graph_requests"] / users, 4),
        "unbatched_cycle_s": round(unbatched_s, 2),
        "unbatched_requests": unbatched["graph_requests"],
        "peak_rss_mb": round(peak, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
