"""A Google account's keys in the config file, their checks, and the settings a connector gets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectors.segments import segment_problem
from syncd.core.errors import ConfigError
from syncd.core.options import Option, OptionError
from syncd.core.text import first_line

__all__ = ["DEFAULT_API_ENDPOINT", "DEFAULT_AUTH_URI", "DEFAULT_BATCH_URI", "DEFAULT_CERTS_URI", "DEFAULT_TOKEN_URI",
           "OPTIONS", "GoogleOptions", "check", "check_calendar", "google_options"]

DEFAULT_API_ENDPOINT = "https://www.googleapis.com/calendar/v3/"
DEFAULT_BATCH_URI = "https://www.googleapis.com/batch/calendar/v3"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_AUTH_URI = "https://accounts.google.com/o/oauth2/v2/auth"
DEFAULT_CERTS_URI = "https://www.googleapis.com/oauth2/v1/certs"  # the keys that sign Google's ID tokens
AUTO_DECLINE = ("declineNone", "declineAllConflictingInvitations", "declineOnlyNewConflictingInvitations")

OPTIONS = (
    Option("service_account_file", file=True),
    Option("api_endpoint", url=True),
    Option("batch_uri", url=True),
    Option("credentials_file", file=True),
    Option("client_id"),
    Option("client_secret", secret=True),
    Option("subject_domain"),
    Option("token_key", secret=True),
    Option("token_uri", url=True),
    Option("auth_uri", url=True),
    Option("certs_uri", url=True),
    Option("ca_bundle", file=True),
    Option("batch_size", int, limits=(1, 1000)),  # Google takes up to 1000 calls per batch request
    Option("workers", int, limits=(1, 64)),
    Option("project_quota", int, limits=(1, 10**9)),
    Option("user_quota", int, limits=(1, 10**9)),
    Option("summary"),
    Option("auto_decline", choices=AUTO_DECLINE),
    Option("decline_message"),
    Option("push_url", url=True),
    Option("push_poll_interval", timedelta),
    Option("channel_ttl", timedelta),
)


def check(options: Mapping[str, Any]) -> None:
    if not (options.get("service_account_file") or options.get("credentials_file")
            or (options.get("client_id") and options.get("client_secret"))):
        raise OptionError("service_account_file", "missing: give a service account key (domain-wide delegation), "
                                                  "or client_id and client_secret for per-user refresh tokens")


def check_calendar(options: Mapping[str, Any], calendar: str) -> None:
    """A link's calendar is ``primary`` or a calendar id: one segment of the API's URL paths."""
    problem = segment_problem(calendar)
    if problem is not None:
        raise OptionError("calendar", f"not a Google calendar id ({problem})")


@dataclass(frozen=True, slots=True)
class GoogleOptions:
    """An account's settings, as read from the config file."""

    account: str = "google"
    api_endpoint: str = DEFAULT_API_ENDPOINT
    batch_uri: str = DEFAULT_BATCH_URI
    service_account_file: str | None = None  # domain-wide delegation
    subject_domain: str | None = None  # only impersonate users of this domain
    client_id: str | None = None  # per-user refresh tokens (with client_secret)
    client_secret: str | None = field(default=None, repr=False)  # a secret: never in logs or tracebacks
    token_uri: str = DEFAULT_TOKEN_URI
    auth_uri: str = DEFAULT_AUTH_URI  # where a browser consents (`syncd connect-link`)
    certs_uri: str = DEFAULT_CERTS_URI
    ca_bundle: str | None = None
    timeout: float = 30.0
    # Calls per batch request (Google allows 1000). 500 by measurement (`bench.google_poll`, 10,000
    # users): two batch requests per 1,000 links listed together, side by side on the workers.
    batch_size: int = 500
    workers: int = 4  # batch requests in flight at once
    project_quota: int = 10_000  # requests a minute for the whole project
    user_quota: int = 600  # requests a minute per user
    summary: str = "Out of office"  # the title of blocks that have none
    # declineNone | declineAllConflictingInvitations | declineOnlyNewConflictingInvitations
    auto_decline: str = "declineNone"
    decline_message: str = ""
    max_occurrences: int = 1000


def google_options(account: str, options: Mapping[str, Any], *, max_occurrences: int = 1000) -> GoogleOptions:
    """`GoogleOptions` from an account's config table (already type-checked by syncd.config)."""
    known = {f for f in GoogleOptions.__dataclass_fields__ if f != "account"}
    values = {k: v for k, v in options.items() if k in known and v not in (None, "")}
    client_file = options.get("credentials_file")
    if client_file:
        try:
            with open(client_file, encoding="utf-8") as fh:
                raw = json.load(fh)
            client = raw.get("installed") or raw.get("web") or raw
            values.setdefault("client_id", str(client["client_id"]))
            values.setdefault("client_secret", str(client["client_secret"]))
            for key in ("token_uri", "auth_uri"):
                if client.get(key):
                    values.setdefault(key, str(client[key]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            why = first_line(exc)
            raise ConfigError(f"accounts.{account}: credentials_file: not an OAuth client file with client_id and "
                              f"client_secret ({why})") from exc
    return GoogleOptions(account=account, max_occurrences=max_occurrences, **values)
