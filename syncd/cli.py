"""The `syncd` command line.

Commands that change blocks or status record the change and its outbox entry; the daemon
(or the next `sync --once`) delivers it, so each sink hears it from one place.

Exit codes: 0 done; 1 some calendar link failed (sync) or a transient failure; 2 bad
config or bad input; 3 "set available" while out of office needs --end-ooo-early.
Errors an operator can fix are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from syncd import __version__
from syncd.config import Config, find_config_path, load_config
from syncd.core.errors import Bug, ConfigError, ConfirmationRequired, RetryLater, SyncdError, UserInputError
from syncd.core.ooo import all_day_content, timed_content
from syncd.core.time import format_utc, parse_instant
from syncd.memory import few_malloc_arenas

__all__ = ["main"]

log = logging.getLogger("syncd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Out-of-office calendar sync and availability.")
    parser.add_argument("-c", "--config", help="config file (default: $SYNCD_CONFIG, then ./syncd.toml)")
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon")

    sync = sub.add_parser("sync", help="one pass over every enabled link, then due transitions and delivery")
    sync.add_argument("--once", action="store_true", required=True, help="run once and exit (required)")
    sync.add_argument("--user", action="append", default=[], metavar="ID", help="only this user (repeatable)")

    status = sub.add_parser("status", help="users' Available/Away status")
    status.add_argument("users", nargs="*", metavar="USER")
    status.add_argument("--at", metavar="ISO8601", help="the status at this instant (with an offset)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--links", action="store_true",
                        help="the users' calendar links instead: state, last success, lag, owner replica, last error")

    setst = sub.add_parser("set-status", help="set a user's status manually")
    setst.add_argument("user", metavar="USER")
    setst.add_argument("status", choices=["available", "away"])
    setst.add_argument("--end-ooo-early", action="store_true",
                       help="confirm ending the OOO block(s) covering now when setting available")

    ooo = sub.add_parser("ooo", help="out-of-office blocks").add_subparsers(dest="ooo", required=True,
                                                                           metavar="ACTION")
    add = ooo.add_parser("add", help="add a block (timed with --start/--end, all-day with --date)")
    add.add_argument("user", metavar="USER")
    add.add_argument("--start", metavar="ISO8601")
    add.add_argument("--end", metavar="ISO8601")
    add.add_argument("--date", metavar="YYYY-MM-DD", help="first day off, in the user's time zone")
    add.add_argument("--to-date", metavar="YYYY-MM-DD", help="last day off (inclusive; default: --date)")
    add.add_argument("--title")
    lst = ooo.add_parser("list", help="a user's live blocks")
    lst.add_argument("user", metavar="USER")
    lst.add_argument("--json", action="store_true")
    for name, text in (("delete", "delete a block"), ("end", "end a block now (end it early)")):
        p = ooo.add_parser(name, help=text)
        p.add_argument("block_id", metavar="BLOCK_ID")

    sub.add_parser("check-config", help="check the config file; exit 0 or 2 with the error")

    links = sub.add_parser("links", help="calendar links and their sync state")
    links.add_argument("--json", action="store_true")
    links_sub = links.add_subparsers(dest="links_action", metavar="ACTION")
    release = links_sub.add_parser("release-deletions", help="apply deletions held by the safety valve")
    release.add_argument("link", type=int, metavar="LINK")

    creds = sub.add_parser("credentials", help="per-user OAuth refresh tokens (kept encrypted)").add_subparsers(
        dest="credentials", required=True, metavar="ACTION")
    cset = creds.add_parser("set", help="store USER's refresh token for ACCOUNT, read from standard input")
    cset.add_argument("account")
    cset.add_argument("user", help="user id or email")
    crm = creds.add_parser("remove", help="forget USER's refresh token for ACCOUNT")
    crm.add_argument("account")
    crm.add_argument("user", help="user id or email")
    clist = creds.add_parser("list", help="whose tokens are stored (never the tokens)")
    clist.add_argument("account", nargs="?")
    creds.add_parser("new-key", help="print a new random token_key")

    secrets_cmd = sub.add_parser("secrets", help="the keys stored secrets are encrypted with").add_subparsers(
        dest="secrets", required=True, metavar="ACTION")
    secrets_cmd.add_parser("rotate", help="re-encrypt every stored secret with each account's first token_key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "credentials" and args.credentials == "new-key":
        from syncd.secrets import new_key
        print(new_key())  # needs no config: it is what goes into one
        return 0
    try:
        config = load_config(find_config_path(args.config, os.environ))
        logging.basicConfig(level=config.daemon.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)
        # A tick skipped because the previous one still runs is by design (coalescing), not news.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        if args.command == "check-config":
            return _check_config(config)
        return _dispatch(args, config)
    except ConfirmationRequired as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return 3
    except (ConfigError, UserInputError) as exc:
        print(f"syncd: {exc}", file=sys.stderr)
        return 2
    except (RetryLater, SyncdError) as exc:
        if isinstance(exc, Bug):
            raise
        print(f"syncd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _require_supported_providers(config: Config) -> None:
    from connectors.registry import Connectors
    registry = Connectors(config.accounts)
    for name, account in config.accounts.items():
        if not registry.supports(account.provider):
            raise ConfigError(f"{config.path.name}: accounts.{name}.provider: {account.provider!r} is not "
                              "available in this version of syncd")


def _check_config(config: Config) -> int:
    _require_supported_providers(config)
    links = sum(len(u.calendars) for u in config.users)
    print(f"{config.path}: ok ({len(config.users)} users, {len(config.accounts)} accounts, {links} calendar "
          f"links, {len(config.sinks)} sinks)")
    return 0


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    from syncd.daemon import Daemon, build_runtime

    _require_supported_providers(config)
    if args.command == "run":
        few_malloc_arenas()  # before any thread starts
    rt = build_runtime(config)
    if args.command == "run":
        Daemon(rt).run_forever()
        return 0
    try:
        rt.service.prepare()
        match args.command:
            case "sync":
                return _sync_once(rt, args.user)
            case "status":
                return _status(rt, args)
            case "set-status":
                info = rt.service.set_status(args.user, args.status, end_ooo_early=args.end_ooo_early, by="cli")
                _print_status([info.as_json()], as_json=False)
                return 0
            case "ooo":
                return _ooo(rt, args)
            case "links":
                return _links(rt, args)
            case "credentials":
                return _credentials(rt, args)
            case "secrets":
                count = rt.vault.rotate()
                print(f"re-encrypted {count} stored secret(s) with each account's first token_key; "
                      "the old keys can now be removed from the config")
                return 0
        raise Bug(f"unhandled command {args.command}")
    finally:
        rt.close()


def _sync_once(rt: Any, users: list[str]) -> int:
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
          f"changes applied; {report.delivered} status events delivered")
    return 1 if failed else 0


def _status(rt: Any, args: argparse.Namespace) -> int:
    if args.links:
        if args.at:
            raise UserInputError("--links shows the links as they are now; leave out --at")
        wanted = set(args.users)
        for user in wanted:
            rt.service.user_timezone(user)  # an unknown user is an error, not an empty list
        _print_links([r for r in rt.service.links() if not wanted or r["user"] in wanted], as_json=args.json)
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


def _ooo(rt: Any, args: argparse.Namespace) -> int:
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
            block = service.add_block(args.user, content)
            print(block.id)
        case "list":
            blocks = [b.as_json() for b in service.list_blocks(args.user)]
            if args.json:
                print(json.dumps([{k: b[k] for k in ("id", "start", "end", "all_day", "title", "source")}
                                  for b in blocks], indent=2))
            else:
                for b in blocks:
                    kind = "all-day" if b["all_day"] else "timed"
                    print(f"{b['id']}  {b['start']}  {b['end']}  {kind:<7}  {b['source']:<24}  {b['title']}")
        case "delete":
            block = service.delete_block(args.block_id)
            print(f"deleted {block.id}")
        case "end":
            block = service.end_block_early(args.block_id)
            print(f"ended {block.id} at {format_utc(block.end)}")
    return 0


def _links(rt: Any, args: argparse.Namespace) -> int:
    if args.links_action == "release-deletions":
        name = rt.syncer.release_deletions(args.link)
        print(f"link {args.link} ({name}): held deletions will be applied on its next sync")
        return 0
    _print_links(rt.service.links(), as_json=args.json)
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
        print(line)


def _credentials(rt: Any, args: argparse.Namespace) -> int:
    vault = rt.vault
    if args.credentials == "list":
        for account, subject, stored in vault.subjects(args.account):
            print(f"{account}  {subject}  stored {format_utc(stored)}")
        return 0
    account = rt.config.accounts.get(args.account)
    if account is None:
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
