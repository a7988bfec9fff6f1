"""The command line's grammar: every command and its options."""

from __future__ import annotations

import argparse
from typing import Any

from syncd import __version__

__all__ = ["parser"]

Commands = Any  # argparse's sub-parser action (a private class)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncd", description="Out-of-office calendar sync and availability.")
    parser.add_argument("-c", "--config", help="config file (default: $SYNCD_CONFIG, then ./syncd.toml)")
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--adopt-config", action="store_true",
                     help="make this config the one replicas agree on, even while replicas with another one run "
                          "(they stop)")
    sync = sub.add_parser("sync", help="one pass over every enabled link, then due transitions and delivery")
    sync.add_argument("--once", action="store_true", required=True, help="run once and exit (required)")
    sync.add_argument("--user", action="append", default=[], metavar="ID", help="only this user (repeatable)")
    _status(sub)
    _ooo(sub)
    sub.add_parser("check-config", help="check the config file; exit 0 or 2 with the error")
    links = sub.add_parser("links", help="calendar links and their sync state")
    links.add_argument("--json", action="store_true")
    links_sub = links.add_subparsers(dest="links_action", metavar="ACTION")
    release = links_sub.add_parser("release-deletions", help="apply deletions held by the safety valve")
    release.add_argument("link", type=int, metavar="LINK")
    users = sub.add_parser("users", help="users with their effective working hours and where those come from")
    users.add_argument("users", nargs="*", metavar="USER")
    users.add_argument("--json", action="store_true")
    _credentials(sub)
    coverage = sub.add_parser("coverage", help="how many of TEAM's members are available, interval by interval")
    coverage.add_argument("team", metavar="TEAM")
    coverage.add_argument("--from", dest="start", metavar="ISO8601", required=True, help="with an offset")
    coverage.add_argument("--to", dest="end", metavar="ISO8601", required=True, help="at most 90 days after --from")
    coverage.add_argument("--json", action="store_true")
    connect = sub.add_parser("connect-link", help="a one-time link with which USER connects their calendar on "
                                                  "ACCOUNT in the browser")
    connect.add_argument("account", metavar="ACCOUNT")
    connect.add_argument("user", metavar="USER", help="a user id or email")
    connect.add_argument("--expires", metavar="DURATION", help="how long it works (5m to 30d; default 7d)")
    connect.add_argument("--json", action="store_true")
    _rotations(sub)
    _feeds(sub)
    return parser


def _rotations(sub: Commands) -> None:
    rotation = sub.add_parser("rotation", help="rotations: members' weights, caps and eligibility").add_subparsers(
        dest="rotation_action", required=True, metavar="ACTION")
    lst = rotation.add_parser("list", help="every rotation")
    lst.add_argument("--json", action="store_true")
    show = rotation.add_parser("show", help="a rotation's members: assignments, weight, cap, eligible or why not")
    show.add_argument("rotation", metavar="ROTATION")
    show.add_argument("--json", action="store_true")
    member = rotation.add_parser("member", help="change a member's weight, cap or availability toggle")
    member.add_argument("rotation", metavar="ROTATION")
    member.add_argument("user", metavar="USER")
    member.add_argument("--weight", type=float, help="share relative to the others (e.g. 2: twice the share)")
    cap = member.add_mutually_exclusive_group()
    cap.add_argument("--cap", type=int, help="most assignments per the rotation's cap window")
    cap.add_argument("--no-cap", action="store_true", help="remove the member's cap")
    toggle = member.add_mutually_exclusive_group()
    toggle.add_argument("--available", dest="available", action="store_const", const=True)
    toggle.add_argument("--unavailable", dest="available", action="store_const", const=False)
    window = rotation.add_parser("cap-window", help="the window members' caps count in (e.g. 1d; none: no window)")
    window.add_argument("rotation", metavar="ROTATION")
    window.add_argument("window", metavar="DURATION")


def _feeds(sub: Commands) -> None:
    feeds = sub.add_parser("feed", help="teams' absence calendars people subscribe to").add_subparsers(
        dest="feed", required=True, metavar="ACTION")
    add = feeds.add_parser("add", help="a new secret feed URL for TEAM (shown only now)")
    add.add_argument("team", metavar="TEAM")
    add.add_argument("--show-titles", action="store_true", help="put the blocks' titles in the feed")
    add.add_argument("--json", action="store_true")
    lst = feeds.add_parser("list", help="TEAM's feeds (never their URLs)")
    lst.add_argument("team", metavar="TEAM")
    lst.add_argument("--json", action="store_true")
    revoke = feeds.add_parser("revoke", help="stop a feed at once")
    revoke.add_argument("team", metavar="TEAM")
    revoke.add_argument("feed_id", metavar="FEED_ID")


def _status(sub: Commands) -> None:
    status = sub.add_parser("status", help="users' Available/Away status")
    status.add_argument("users", nargs="*", metavar="USER")
    status.add_argument("--at", metavar="ISO8601", help="the status at this instant (with an offset)")
    status.add_argument("--json", action="store_true")
    status.add_argument("--links", action="store_true",
                        help="the users' calendar links instead: state, last success, lag, owner replica, last error")
    route = sub.add_parser("route", help="who takes USER's work: themselves, a replacement, or nobody")
    route.add_argument("user", metavar="USER")
    route.add_argument("--at", metavar="ISO8601", help="the route at this instant (with an offset)")
    route.add_argument("--json", action="store_true")
    timeline = sub.add_parser("availability", help="a user's timeline: Available/Away from..to, as intervals")
    timeline.add_argument("user", metavar="USER")
    timeline.add_argument("--from", dest="start", required=True, metavar="ISO8601",
                          help="start (with an offset)")
    timeline.add_argument("--to", dest="end", required=True, metavar="ISO8601",
                          help="end (with an offset; at most 90 days after --from)")
    timeline.add_argument("--json", action="store_true")
    setst = sub.add_parser("set-status", help="set a user's status manually")
    setst.add_argument("user", metavar="USER")
    setst.add_argument("status", choices=["available", "away"])
    setst.add_argument("--end-ooo-early", action="store_true",
                       help="confirm ending the OOO block(s) covering now when setting available")


def _ooo(sub: Commands) -> None:
    ooo = sub.add_parser("ooo", help="out-of-office blocks").add_subparsers(dest="ooo", required=True,
                                                                           metavar="ACTION")
    add = ooo.add_parser("add", help="add a block (timed with --start/--end, all-day with --date)")
    add.add_argument("user", metavar="USER")
    add.add_argument("--start", metavar="ISO8601")
    add.add_argument("--end", metavar="ISO8601")
    add.add_argument("--date", metavar="YYYY-MM-DD", help="first day off, in the user's time zone")
    add.add_argument("--to-date", metavar="YYYY-MM-DD", help="last day off (inclusive; default: --date)")
    add.add_argument("--title")
    add.add_argument("--replacement", metavar="USER", help="who takes USER's work while this block covers")
    lst = ooo.add_parser("list", help="a user's live blocks")
    lst.add_argument("user", metavar="USER")
    lst.add_argument("--json", action="store_true")
    for name, text in (("delete", "delete a block"), ("end", "end a block now (end it early)")):
        p = ooo.add_parser(name, help=text)
        p.add_argument("block_id", metavar="BLOCK_ID")


def _credentials(sub: Commands) -> None:
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
