"""Where a CalDAV account may send requests: its own origin (scheme, host and port) and, for a
link's calendar, under the path of the account's ``url``.

A link's calendar is a display name (looked up by `discovery`), a path on the account's server,
or a URL; `collection_url` turns the last two into the collection's URL, or refuses them: another
origin, another scheme or port, a path outside the account's (also through ``..`` or encoded dot
segments and slashes), a scheme-relative ``//host/...``, credentials in the URL, a query or
fragment, control characters. The config check (`options.check_calendar`) and the connector
share it. `same_origin` is the rule for everything else the connector requests: hrefs a server
answers with, redirects, the principal and the calendar home set.

Pure functions over strings: no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["Refused", "collection_url", "describe", "has_control", "origin", "same_origin"]

DEFAULT_PORTS = {"http": 80, "https": 443}
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class Refused(ValueError):
    """A calendar the account must not be aimed at; the message is one line, the reason."""


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL or C1: CR and LF among them)."""
    return any(unicodedata.category(char) == "Cc" for char in text)


def origin(url: str, *, credentials_ok: bool = False) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute ``http(s)`` URL, the port filled in; None for anything
    else (a path, another scheme, no host, a bad port, control characters, and credentials in it
    unless ``credentials_ok``: the account's own URL may carry them)."""
    if has_control(url) or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or ("@" in parts.netloc and not credentials_ok):
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def same_origin(url: str, account_url: str) -> bool:
    """Whether ``url`` (absolute) is on the account's server: same scheme, host and port."""
    mine = origin(account_url, credentials_ok=True)
    return mine is not None and origin(url) == mine


def describe(url: str) -> str:
    """``scheme://host:port`` of ``url`` for a message (never its path, query or credentials)."""
    found = origin(url, credentials_ok=True)
    if found is None:
        return "a URL that is not plain http(s)"
    scheme, host, port = found
    return f"{scheme}://{host}:{port}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986, 5.2.4: ``/a/b/../c/./d`` -> ``/a/c/d``, as an HTTP client normalises it."""
    out: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    normal = "/".join(out)
    return normal if normal.startswith("/") else "/" + normal


def _account_path(account_url: str) -> str:
    path = _remove_dot_segments(urlsplit(account_url).path or "/")
    return path if path.endswith("/") else path + "/"


def collection_url(account_url: str, calendar: str) -> str | None:
    """The collection URL (ending in ``/``) that a link's ``calendar`` names, on the account's
    server and under its path; None when ``calendar`` is a display name, for `discovery` to find.

    Raises `Refused` with the reason otherwise."""
    if not calendar.strip():
        raise Refused("empty: give a calendar's display name, its path or its URL")
    if has_control(calendar):
        raise Refused("it holds control characters")
    if calendar.startswith(("//", "\\\\", "/\\", "\\/")):
        raise Refused("a scheme-relative URL (//host/...) leads to another server; give the path or the full URL")
    mine = origin(account_url, credentials_ok=True)
    if mine is None:
        raise Refused("the account's url is not a plain http:// or https:// URL")
    if _ABSOLUTE.match(calendar):
        scheme = calendar.split(":", 1)[0].lower()
        if scheme not in DEFAULT_PORTS:
            raise Refused(f"only http:// and https:// URLs are calendars, not {scheme}://")
        if "@" in calendar.split("://", 1)[1].split("/", 1)[0]:
            raise Refused("a URL with a user name or password in it; the account's username and password are used")
        theirs = origin(calendar)
        if theirs is None:
            raise Refused("not a valid URL")
        if theirs != mine:
            raise Refused(f"not on the account's server ({describe(account_url)}); a link's calendar stays on "
                          "its account's server")
    elif not calendar.startswith("/"):
        return None  # a display name: only ever compared with the names the server lists
    parts = urlsplit(calendar)
    if parts.query or parts.fragment or "?" in calendar or "#" in calendar:
        raise Refused("a calendar's URL has no query (?) or fragment (#)")
    if "\\" in parts.path:
        raise Refused("a backslash in the path")
    path = _remove_dot_segments(parts.path or "/")
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", "..") or "/" in decoded or "\\" in decoded:
            raise Refused("an encoded slash, backslash or dot segment in the path")
    if not path.endswith("/"):
        path += "/"
    base = _account_path(account_url)
    if not path.startswith(base):
        raise Refused(f"not under the account's URL path {base}")
    account = urlsplit(account_url)
    return urlunsplit((account.scheme.lower(), account.netloc, path, "", ""))  # the account's own netloc
