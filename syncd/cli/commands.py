"""What each command does, given the parsed arguments and a loaded config.

Commands that change blocks or status record the change and its outbox entry; the daemon
(or the next `sync --once`) delivers it, so each sink hears it from one place.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from typing import Any

from syncd.config import Config
from syncd.core.errors import Bug, ConfigError, UserInputError
from syncd.core.hours import DAYS
from syncd.core.ooo import all_day_content, timed_content
from syncd.core.time import format_utc, parse_duration, parse_instant
from syncd.daemon import Daemon
from syncd.daemon.heap import few_malloc_arenas
from syncd.daemon.runtime import Runtime, build_runtime
from syncd.service.coverage import CoverageWatch
from syncd.service.feeds import TeamFeeds
from syncd.service.rotations import RotationEngine

__all__ = ["dispatch"]


def dispatch(args: argparse.Namespace, config: Config) -> int:
    if args.command == "run":
        few_malloc_arenas()  # before any thread starts
    rt = build_runtime(config)
    if args.command == "run":
        daemon = Daemon(rt, adopt_config=args.adopt_config)
        daemon.run_forever()
        return daemon.exit_code
    try:
        rt.prepare()
        match args.command:
            case "sync":
                return _sync_once(rt, args.user)
            case "status":
                return _status(rt, args)
            case "route":
                return _route(rt, args)
            case "availability":
                return _availability(rt, args)
            case "set-status":
                info = rt.service.set_status(args.user, args.status, end_ooo_early=args.end_ooo_early, by="cli")
                _print_status([info.as_json()], as_json=False)
                return 0
            case "ooo":
                return _ooo(rt, args)
            case "links":
                return _links(rt, args)
            case "users":
                return _users(rt, args)
            case "credentials":
                return _credentials(rt, args)
            case "connect-link":
                return _connect_link(rt, args)
            case "rotation":
                return _rotation(rt, args)
            case "feed":
                return _feed(rt, args)
            case "coverage":
                return _coverage(rt, args)
            case "secrets":
                count = rt.vault.rotate()
                print(f"re-encrypted {count} stored secret(s) with each account's first token_key; "
                      "the old keys can now be removed from the config")
                return 0
        raise Bug(f"unhandled command {args.command}")
    finally:
        rt.close()


def _sync_once(rt: Runtime, users: list[str]) -> int:
    for user in users:
        if user not in rt.service.user_ids():
            raise UserInputError(f"no user {user!r} in the config or the database")
    rt.service.advance_all()
    outcomes = rt.syncer.sync_once(users or None)
    rt.service.advance_all()
    report = rt.publisher.drain()
    failed = [o for o in outcomes if not o.ok]
    for outcome in failed:
        print(f"{outcome.name}: {outcome.error}", file=sys.stderr)
    held = [o for o in outcomes if o.held_deletions]
    for outcome in held:
        print(f"{outcome.name}: {outcome.held_deletions} deletions held; "
              f"confirm with `syncd links release-deletions {outcome.link_id}`", file=sys.stderr)
    print(f"synced {len(outcomes) - len(failed)}/{len(outcomes)} links; {sum(o.actions for o in outcomes)} "
          f"changes applied; {report.delivered} event(s) delivered")
    return 1 if failed else 0


def _status(rt: Runtime, args: argparse.Namespace) -> int:
    if args.links:
        if args.at:
            raise UserInputError("--links shows the links as they are now; leave out --at")
        wanted = set(args.users)
        for user in wanted:
            rt.service.user_timezone(user)  # an unknown user is an error, not an empty list
        _print_links(_with_connect_urls(rt, [r for r in rt.service.links() if not wanted or r["user"] in wanted]),
                     as_json=args.json)
        return 0
    at = parse_instant(args.at, "--at") if args.at else None
    users = args.users or rt.service.user_ids()
    rows = [rt.service.status(u, at).as_json() for u in users]
    _print_status(rows, as_json=args.json)
    if not args.json and not args.users:
        # What needs an operator: undeliverable events, links that cannot sync.
        dead = rt.service.dead_letters()
        if dead:
            print(f"{dead} status event(s) could not be delivered and were dead-lettered", file=sys.stderr)
        for link in rt.service.links():
            if link["enabled"] and link["state"] != "ok":
                print(f"link {link['id']} {link['user']}/{link['account']}/{link['calendar']}: {link['state']}: "
                      f"{link['last_error'] or ''}".rstrip(": "), file=sys.stderr)
    return 0


def _availability(rt: Runtime, args: argparse.Namespace) -> int:
    start, end = parse_instant(args.start, "--from"), parse_instant(args.end, "--to")
    intervals = [i.as_json() for i in rt.service.availability(args.user, start, end)]
    if args.json:
        print(json.dumps({"user": args.user, "from": format_utc(start), "to": format_utc(end),
                          "intervals": intervals}, indent=2, ensure_ascii=False))
        return 0
    for row in intervals:
        parts = [row["start"], row["end"], f"{row['status']:<9}", f"{row['reason'] or '-':<13}"]
        if "block" in row:
            parts.append(f"block {row['block']}")
        if "holiday" in row:
            parts.append(row["holiday"])
        print("  ".join(parts).rstrip())
    return 0


def _print_status(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        parts = [f"{row['user']:<12}", f"{row['status']:<9}", f"{row['reason']:<15}"]
        if row["since"]:
            parts.append(f"since {row['since']}")
        if row["until"]:
            parts.append(f"until {row['until']}")
        if row["blocks"]:
            parts.append("blocks " + ",".join(row["blocks"]))
        print("  ".join(parts).rstrip())


def _route(rt: Runtime, args: argparse.Namespace) -> int:
    at = parse_instant(args.at, "--at") if args.at else None
    route = rt.service.route(args.user, at)
    if args.json:
        print(json.dumps(route.as_json(), indent=2))
        return 0
    via = f"  via {' -> '.join(route.chain)}" if route.chain else ""
    print(f"{route.user:<12}  {route.status:<9}  route to {route.route_to or 'nobody'}  ({route.reason}){via}")
    return 0


def _ooo(rt: Runtime, args: argparse.Namespace) -> int:
    service = rt.service
    match args.ooo:
        case "add":
            if args.date:
                if args.start or args.end:
                    raise UserInputError("give either --date [--to-date] (all-day) or --start and --end, not both")
                first = _date(args.date, "--date")
                last = _date(args.to_date, "--to-date") if args.to_date else first
                user = service.user_timezone(args.user)
                content = all_day_content(first, last + timedelta(days=1), user, args.title)
            else:
                if not (args.start and args.end):
                    raise UserInputError("give --start and --end (ISO 8601 with an offset), or --date for all-day")
                content = timed_content(parse_instant(args.start, "--start"), parse_instant(args.end, "--end"),
                                        args.title)
            block = service.add_block(args.user, content, replacement=args.replacement)
            print(block.id)
            _warn_coverage(CoverageWatch(service).warnings(block.id))
        case "list":
            blocks = [b.as_json() for b in service.list_blocks(args.user)]
            if args.json:
                print(json.dumps([{k: b[k] for k in ("id", "start", "end", "all_day", "title", "source",
                                                     "replacement")}
                                  for b in blocks], indent=2))
            else:
                for b in blocks:
                    kind = "all-day" if b["all_day"] else "timed"
                    replacement = f"  (replacement {b['replacement']})" if b["replacement"] else ""
                    print(f"{b['id']}  {b['start']}  {b['end']}  {kind:<7}  {b['source']:<24}  {b['title']}"
                          f"{replacement}")
        case "delete":
            block = service.delete_block(args.block_id)
            print(f"deleted {block.id}")
        case "end":
            block = service.end_block_early(args.block_id)
            print(f"ended {block.id} at {format_utc(block.end)}")
    return 0


def _warn_coverage(warnings: list[dict[str, Any]]) -> None:
    """On standard error: standard output keeps only the block id, for scripts."""
    for w in warnings:
        print(f"warning: team {w['team']} has {w['available']} of its minimum {w['min_available']} available "
              f"from {w['from']} to {w['to']} (the block is added)", file=sys.stderr)


def _coverage(rt: Runtime, args: argparse.Namespace) -> int:
    watch = rt.coverage or CoverageWatch(rt.service)
    found = watch.coverage(args.team, parse_instant(args.start, "--from"), parse_instant(args.end, "--to"))
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
        return 0
    print(f"team {found.team}, minimum {found.min_available or 'none'}")
    for i in found.intervals:
        below = "  below minimum" if i.below_min else ""
        names = ", ".join(i.members_available) or "nobody"
        print(f"{format_utc(i.start)}  {format_utc(i.end)}  {i.available:>3} available: {names}{below}")
    return 0


def _links(rt: Runtime, args: argparse.Namespace) -> int:
    if args.links_action == "release-deletions":
        name = rt.syncer.release_deletions(args.link)
        print(f"link {args.link} ({name}): held deletions will be applied on its next sync")
        return 0
    _print_links(_with_connect_urls(rt, rt.service.links()), as_json=args.json)
    return 0


def _with_connect_urls(rt: Runtime, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rt.onboarding.with_connect_urls(rows) if rt.onboarding else rows


def _connect_link(rt: Runtime, args: argparse.Namespace) -> int:
    if rt.onboarding is None:
        raise Bug("the runtime has no onboarding")
    try:
        expires = parse_duration(args.expires) if args.expires is not None else None
    except ConfigError as exc:
        raise UserInputError(f"--expires: {exc}") from exc
    link = rt.onboarding.create(args.account, args.user, expires)
    if args.json:
        print(json.dumps(link.as_json(), indent=2))
    else:
        print(link.url)
        print(f"for {link.email} ({link.account}); works once, until {format_utc(link.expires_at)}", file=sys.stderr)
    return 0


def _rotation(rt: Runtime, args: argparse.Namespace) -> int:
    engine = RotationEngine(rt.service, recent_window=rt.config.daemon.rotation_recent_window)
    if args.rotation_action == "list":
        rows = [engine.get(rid) for rid in engine.ids()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for row in rows:
            window = f"  caps per {row['cap_window']}" if row["cap_window"] else ""
            print(f"{row['id']}  {row['name']}  {row['policy']}  {len(row['members'])} member(s){window}  "
                  f"next {row['next'] or 'nobody'}")
        return 0
    if args.rotation_action == "show":
        shown = engine.get(args.rotation)
    elif args.rotation_action == "cap-window":
        try:
            span = None if args.window.lower() == "none" else parse_duration(args.window)
        except ConfigError as exc:
            raise UserInputError(f"cap window: {exc}") from None
        shown = engine.set_cap_window(args.rotation, span)
    else:
        changes: dict[str, Any] = {}
        if args.weight is not None:
            changes["weight"] = args.weight
        if args.cap is not None or args.no_cap:
            changes["cap"] = None if args.no_cap else args.cap
        if args.available is not None:
            changes["available"] = args.available
        if not changes:
            raise UserInputError("give --weight, --cap, --no-cap, --available or --unavailable")
        shown = engine.update_member(args.rotation, args.user, changes)
    _print_rotation(shown, as_json=args.json if args.rotation_action == "show" else False)
    return 0


def _print_rotation(rotation: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rotation, indent=2))
        return
    window = f", caps per {rotation['cap_window']}" if rotation["cap_window"] else ""
    print(f"{rotation['name']} ({rotation['policy']}{window}); next: {rotation['next'] or 'nobody'}")
    for m in rotation["members"]:
        cap = f"cap {m['cap']}" if m["cap"] is not None else "no cap"
        why = "eligible" if m["eligible"] else f"{m['reason']}" + (
            f" until {m['available_at']}" if m["available_at"] else "")
        print(f"  {m['user']:<12} {m['assignments']:>7g} assignments  weight {m['weight']:<5g} {cap:<8} {why}")


def _feed(rt: Runtime, args: argparse.Namespace) -> int:
    feeds = TeamFeeds(rt.service)
    if args.feed == "revoke":
        feeds.revoke(args.team, args.feed_id)
        print(f"revoked feed {args.feed_id} of team {args.team}; its URL no longer works")
        return 0
    if args.feed == "add":
        made = feeds.create(args.team, show_titles=args.show_titles)
        if args.json:
            print(json.dumps(made, indent=2))
        else:
            print(made["url"])
            print(f"feed {made['id']} of team {args.team}; anyone with this URL can read the team's absences "
                  "(keep it secret; it is not shown again)", file=sys.stderr)
        return 0
    rows = feeds.list(args.team)
    if args.json:
        print(json.dumps(rows, indent=2))
    for row in rows if not args.json else ():
        print(f"{row['id']}  created {row['created_at']}  titles {'shown' if row['show_titles'] else 'hidden'}")
    return 0


def _print_links(rows: list[dict[str, Any]], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    width = max((len(f"{r['user']}/{r['account']}/{r['calendar']}") for r in rows), default=0)
    for row in rows:
        name = f"{row['user']}/{row['account']}/{row['calendar']}"
        line = (f"{row['id']:>4}  {name:<{width}}  {row['direction']:<7}  {row['state']:<15}  "
                f"last success {row['last_success'] or 'never'}")
        if row["lag_s"] is not None:
            line += f"  lag {row['lag_s']:.0f}s"
        if row["owner"]:
            line += f"  {'syncing on' if row['syncing'] else 'last synced by'} {row['owner']}"
        if row["last_error"]:
            line += f"  error: {row['last_error']}"
        if row.get("connect_url"):
            line += f"  connect: {row['connect_url']}"
        hours = row.get("working_hours") or {}
        if hours.get("problem"):
            line += f"  {hours['problem']}"
        print(line)


def _users(rt: Runtime, args: argparse.Namespace) -> int:
    rows = rt.service.users_with_hours(args.users)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max((len(r["id"]) for r in rows), default=0)
    for row in rows:
        hours = row["hours"]
        print(f"{row['id']:<{width}}  {row['email']}  {row['timezone']}  working hours {describe_hours(hours)}")
    return 0


def describe_hours(hours: dict[str, Any]) -> str:
    """``mon-fri 08:00-16:00 Europe/Berlin (from outlook:m365)``: runs of days with the same hours joined."""
    week = hours["working_hours"]
    runs: list[tuple[list[str], list[str]]] = []
    for day in DAYS:
        ranges = week.get(day)
        if not ranges:
            continue
        if runs and runs[-1][1] == ranges and DAYS.index(runs[-1][0][-1]) == DAYS.index(day) - 1:
            runs[-1][0].append(day)
        else:
            runs.append(([day], ranges))
    shown = "; ".join(f"{days[0] if len(days) == 1 else days[0] + '-' + days[-1]} {','.join(ranges)}"
                      for days, ranges in runs) or "none"
    return f"{shown} {hours['timezone']} (from {hours['source']})"


def _credentials(rt: Runtime, args: argparse.Namespace) -> int:
    vault = rt.vault
    if args.credentials == "list":
        for account, subject, stored in vault.subjects(args.account):
            print(f"{account}  {subject}  stored {format_utc(stored)}")
        return 0
    if args.account not in rt.config.accounts:
        raise UserInputError(f"no account {args.account!r} in the config file")
    if args.credentials == "remove":
        found = vault.remove(args.account, args.user)
        print(f"{'removed' if found else 'no token stored for'} {args.user} ({args.account})")
        return 0
    if sys.stdin.isatty():
        print("paste the refresh token and press Enter:", file=sys.stderr)
    token = sys.stdin.readline()
    email = vault.store(args.account, args.user, token)
    print(f"stored a refresh token for {email} ({args.account}); their calendars sync on the next poll")
    return 0


def _date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UserInputError(f"{what} {text!r} is not a date like 2026-12-24") from None
