"""The poll-cycle measurement `bench.google_poll` and `bench.outlook_poll` share.

A provider module supplies its fake (in another process, driven through ``control``), how
to seed it, how a person edits an event, and the config; `measure` then runs the same steps
for both: a first full sync without latency, one batched incremental cycle with latency and
a share of the users changed, the floor of that cycle, and the same cycle with batching off.

The floor (`floor`) is the network work of the batched cycle with nothing to process: right
after the cycle every link's cursor is current, so the same listings, sent through the same
connector (its transport, its token cache, its worker pool, the same batch size) as the same
number of batch requests with the same parts, come back as empty change lists. Nothing is
read from or written to the store while it is timed. ``floor_ratio = cycle_s / floor_s`` is
how far syncd's cycle is from what the network and the API client alone cost.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from syncd.config import load_config
from syncd.core.calendars import PollRequest
from syncd.daemon.heap import few_malloc_arenas
from syncd.daemon.runtime import Runtime, build_runtime


class Fake(Protocol):
    def control(self, command: str, **args: Any) -> Any: ...


@dataclass
class Provider:
    fake: Fake
    account: str  # the account name in the config
    people: str  # "users", "mailboxes"
    requests_key: str  # top-level HTTP requests in the fake's request_counts
    first_sync_note: str  # said about the first sync
    seed: Callable[[int, datetime], list[Any]]  # users, now -> what edit needs per user
    edit: Callable[[list[Any], float, int, datetime], int]  # ids, share, round, now -> users changed
    write_config: Callable[[Path, int], Path]  # folder, users -> config file
    counts_detail: Callable[[dict[str, int]], str]  # "(N batch parts)" after the request count
    batch_size: Callable[[Any], int]  # connector -> parts per batch request it sends
    # Measured last, after the unbatched cycle (batching restored): runtime, link ids, what
    # ``edit`` needs, arguments, now -> more figures
    more: Callable[[Runtime, list[int], list[Any], argparse.Namespace, datetime], dict[str, Any]] | None = None


def arguments(doc: str, argv: list[str] | None, what: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"1,000 {what}: finishes in about a minute")
    parser.add_argument("--users", type=int)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every HTTP request")
    parser.add_argument("--changed", type=float, default=0.01, help="share of users who edit an event")
    args = parser.parse_args(argv)
    args.users = args.users or (1000 if args.quick else 10_000)
    return args


def cycle(rt: Runtime, fake: Fake, link_ids: list[int]) -> tuple[float, dict[str, int], int]:
    fake.control("reset_counts")
    started = time.perf_counter()
    outcomes = rt.syncer.sync_many(link_ids)
    elapsed = time.perf_counter() - started
    failed = [o for o in outcomes if not o.ok]
    if failed:
        print(f"  {len(failed)} link(s) failed, e.g. {failed[0].name}: {failed[0].error}", file=sys.stderr)
    return elapsed, fake.control("request_counts"), sum(o.actions for o in outcomes)


def floor(rt: Runtime, provider: Provider, link_ids: list[int]) -> tuple[float, dict[str, int]]:
    """The batched cycle's first pages sent again with current cursors: (seconds, the fake's
    request counts). The listings are prepared before the clock starts; every answer must be
    an empty change list, or the floor would not be the same work with nothing to process."""
    connector: Any = rt.connectors.for_account(provider.account)
    syncer = rt.syncer
    snaps = syncer.listing.snapshots(link_ids)
    requests = [PollRequest(connector.address(s.email, s.calendar), s.cursor, syncer.window(s.timezone))
                for s in snaps.values()]
    listings = [(i, connector._start(request)) for i, request in enumerate(requests)]
    size = provider.batch_size(connector)
    batches = [listings[k:k + size] for k in range(0, len(listings), size)]
    provider.fake.control("reset_counts")
    started = time.perf_counter()
    failed = [outcome for done in connector._map(connector._first_pages, batches) for outcome in done]
    elapsed = time.perf_counter() - started
    counts = provider.fake.control("request_counts")
    if failed:
        raise SystemExit(f"floor: {len(failed)} listing(s) failed, e.g. {failed[0][1]}")
    busy = [lst for _, lst in listings if lst.items or not _complete(lst)]
    if busy:
        raise SystemExit(f"floor: {len(busy)} listing(s) were not one empty page, e.g. {busy[0].request.calendar}")
    return elapsed, counts


def _complete(listing: Any) -> bool:
    """Whether a listing's first page was its last (Google: ``done``; Graph: a delta link)."""
    return bool(getattr(listing, "done", False) or getattr(listing, "delta", None))


def measure(provider: Provider, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    users, fake, key = args.users, provider.fake, provider.requests_key
    few_malloc_arenas()  # as `syncd run` does before its threads start: peak RSS is the daemon's
    now = datetime.now(UTC)
    print(f"seeding {users} {provider.people} with 2 OOO events each", flush=True)
    ids = provider.seed(users, now)
    rt = build_runtime(load_config(provider.write_config(root, users)))
    try:
        rt.service.prepare()
        link_ids = rt.syncer.link_ids()
        started = time.perf_counter()
        outcomes = rt.syncer.sync_many(link_ids)
        first_sync = time.perf_counter() - started
        assert all(o.ok for o in outcomes), next(o.error for o in outcomes if not o.ok)
        print(f"first sync ({provider.first_sync_note}): {first_sync:.1f} s", flush=True)

        fake.control("set_latency", seconds=args.latency)
        changed = provider.edit(ids, args.changed, 0, now)
        cycle_s, counts, actions = cycle(rt, fake, link_ids)
        print(f"batched cycle, {changed} {provider.people} changed, {args.latency * 1000:.0f} ms latency: "
              f"{cycle_s:.2f} s, {counts[key]} HTTP requests {provider.counts_detail(counts)}, {actions} changes "
              "applied", flush=True)
        floor_s, floor_counts = floor(rt, provider, link_ids)
        print(f"floor: the same {floor_counts[key]} HTTP requests ({floor_counts['batch_parts']} batch parts) "
              f"answered with empty change lists: {floor_s:.2f} s; cycle / floor = {cycle_s / floor_s:.2f}",
              flush=True)

        connector: Any = rt.connectors.for_account(provider.account)
        batched = connector.options
        connector.options = replace(batched, batch_size=1)
        provider.edit(ids, args.changed, 1, now)
        unbatched_s, unbatched, _ = cycle(rt, fake, link_ids)
        print(f"unbatched cycle: {unbatched_s:.2f} s, {unbatched[key]} HTTP requests", flush=True)
        connector.options = batched
        more = provider.more(rt, link_ids, ids, args, now) if provider.more is not None else {}
    finally:
        rt.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.1f} MB")
    return {
        "users": users,
        "changed_users": changed,
        "latency_ms": round(args.latency * 1000),
        "first_sync_s": round(first_sync, 2),
        "cycle_s": round(cycle_s, 3),
        "requests": counts[key],
        "batch_parts": counts["batch_parts"],
        "requests_per_user": round(counts[key] / users, 4),
        "unbatched_cycle_s": round(unbatched_s, 2),
        "unbatched_requests": unbatched[key],
        "peak_rss_mb": round(peak, 1),
        "floor_s": round(floor_s, 3),
        "floor_requests": floor_counts[key],
        "floor_ratio": round(cycle_s / floor_s, 2),
        "first_sync_per_user_ms": round(first_sync * 1000 / users, 2),
        **more,
    }


def report(figures: dict[str, Any]) -> int:
    print(json.dumps(figures))
    return 0
