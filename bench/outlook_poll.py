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

Last, change notifications: a Graph subscription is opened for every mailbox (`PushChannels`,
without latency; the fake's validation handshakes and notifications reach it through a
loopback hook, `tests.support.PushHook`, which reads them as the API's hook route does),
and every link is polled once more by the daemon's poll job, as when each comes due after its
subscription opened (a change made before it is never notified). Then, with latency, the
same share of the mailboxes edit an event; once their notifications are in, the daemon's poll job runs
(`syncd.daemon.Daemon`'s loop: claim up to ``POLL_CLAIM`` due links, `sync_many` them,
until none is due). Only the notified mailboxes are due: the others wait for
``push_poll_interval``.

Figures: ``cycle_s``, ``requests`` and ``requests_per_user`` (top-level HTTP requests in the
cycle; a $batch is one), ``batch_parts``, ``floor_s`` (the same ``$batch`` requests of 20 with
the same parts, answered with empty delta pages, through the same client, nothing processed;
see `bench.pollbench`), ``floor_requests``, ``floor_ratio`` (``cycle_s / floor_s``),
``unbatched_cycle_s``, ``unbatched_requests``, ``first_sync_s``, ``first_sync_per_user_ms``,
``peak_rss_mb``; for change notifications ``push_changed`` (mailboxes edited and notified),
``push_cycle_links`` (links the poll job synced), ``push_cycle_requests`` (its HTTP requests,
a $batch counting one, token requests included), ``push_cycle_s``. The last line printed is
one JSON object with them.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.pollbench import Provider, arguments, measure, report
from connectors.outlook.options import MAX_BATCH
from store import links
from syncd.daemon import POLL_CLAIM
from syncd.daemon.runtime import Runtime
from tests.fakes.graph import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from tests.fakes.http_support import call_control, ready_subprocess
from tests.support import PushHook


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


def write_config(root: Path, fake: Remote, users: int, hook: str) -> Path:
    lines = [f'[daemon]\ndatabase_url = "sqlite:///{root}/syncd.db"\nlog_level = "WARNING"\n',
             f'[[accounts]]\nname = "m365"\nprovider = "outlook"\ntenant_id = "{DEFAULT_TENANT_ID}"\n'
             f'client_id = "{DEFAULT_CLIENT_ID}"\nclient_secret = "{DEFAULT_CLIENT_SECRET}"\n'
             f'authority = "{fake.base_url}/{DEFAULT_TENANT_ID}"\ngraph_url = "{fake.base_url}/v1.0"\n'
             f'ca_bundle = "{fake.ca_bundle}"\npush_url = "{hook}"\n']
    for n in range(users):
        lines.append(f'[[users]]\nid = "u{n}"\nemail = "u{n}@contoso.com"\ntimezone = "Europe/Stockholm"\n'
                     'calendars = [{ account = "m365" }]\n')
    path = root / "syncd.toml"
    path.write_text("\n".join(lines))
    return path


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


def poll_job(rt: Runtime) -> int:
    """What the daemon's poll job does when woken: claim due links, sync them, until none is
    due. Returns how many links it synced."""
    synced = 0
    while links := rt.syncer.claim_due(limit=POLL_CLAIM):
        outcomes = rt.syncer.sync_many(links)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            print(f"  {len(failed)} link(s) failed, e.g. {failed[0].name}: {failed[0].error}", file=sys.stderr)
        synced += len(links)
    return synced


def push_cycle(fake: Remote, hook: PushHook, rt: Runtime, link_ids: list[int], ids: list[str],
               args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    fake.control("set_latency", seconds=0)
    hook.push = rt.push
    started = time.perf_counter()
    opened = 0
    while batch := rt.push.refresh():
        opened += batch
    print(f"push: {opened} subscriptions opened in {time.perf_counter() - started:.1f} s (no latency)", flush=True)
    # The daemon polls each link once more when it comes due after its subscription opened (a
    # change made before that is never notified); from then on it waits for push_poll_interval.
    # Every link is made due now and the poll job run, as the daemon would at those times.
    rt.db.run(lambda s: links.due_soon(s, "m365", [f"u{n}" for n in range(len(ids))], rt.service.clock()))
    caught_up = poll_job(rt)
    print(f"push: the poll after the subscriptions opened: {caught_up} links", flush=True)
    fake.control("set_latency", seconds=args.latency)
    before = hook.received
    changed = edit_some(fake, ids, args.changed, 2, now)
    deadline = time.monotonic() + 120
    while hook.received < before + changed:
        if time.monotonic() > deadline:
            raise SystemExit(f"push: {hook.received - before} of {changed} notifications arrived within 120 s")
        time.sleep(0.05)
    fake.control("reset_counts")
    started = time.perf_counter()
    synced = poll_job(rt)
    took = time.perf_counter() - started
    counts = fake.control("request_counts")
    print(f"push cycle, {changed} mailboxes changed and notified, {args.latency * 1000:.0f} ms latency: "
          f"{took:.2f} s, {synced} links synced, {counts['graph_requests']} HTTP requests "
          f"({counts['batch_parts']} batch parts, {counts['token_requests']} token requests)", flush=True)
    return {"push_changed": changed, "push_cycle_links": synced,
            "push_cycle_requests": counts["graph_requests"] + counts["token_requests"], "push_cycle_s": round(took, 3)}


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__ or "", argv, "mailboxes")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, \
            ready_subprocess("tests.fakes.graph", ["--port", "0", "--latency", "0"]) as ready, \
            PushHook("outlook") as hook:
        fake = Remote(ready[0], ready[1])
        provider = Provider(
            fake=fake, account="m365", people="mailboxes", requests_key="graph_requests",
            first_sync_note="no latency",
            seed=lambda users, now: seed(fake, users, now),
            edit=lambda ids, share, round_, now: edit_some(fake, ids, share, round_, now),
            write_config=lambda root, users: write_config(root, fake, users, hook.url),
            counts_detail=lambda counts: f"({counts['batch_parts']} batch parts, {counts['token_requests']} "
                                         "token requests)",
            batch_size=lambda connector: min(int(connector.options.batch_size), MAX_BATCH),
            more=lambda rt, link_ids, ids, args, now: push_cycle(fake, hook, rt, link_ids, ids, args, now))
        return report(measure(provider, Path(tmp), args))


if __name__ == "__main__":
    sys.exit(main())
