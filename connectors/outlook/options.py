"""A Microsoft 365 account's keys in the config file, their checks, and the settings a connector gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from connectors.segments import segment_problem
from syncd.core.options import Option, OptionError

__all__ = ["DEFAULT_GRAPH", "DEFAULT_SCOPE", "MAX_BATCH", "OPTIONS", "OutlookOptions", "check", "check_calendar",
           "outlook_options"]

DEFAULT_GRAPH = "https://graph.microsoft.com/v1.0"
DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
MAX_BATCH = 20  # Graph's limit per $batch

OPTIONS = (
    Option("tenant_id"),
    Option("client_id"),
    Option("client_secret", secret=True),
    Option("authority", url=True),
    Option("graph_url", url=True),
    Option("ca_bundle", file=True),
    Option("certificate_file", file=True),
    Option("token_key", secret=True),
    Option("automatic_replies", bool),
    Option("scope"),
    Option("auth", choices=("app", "delegated")),
    Option("batch_size", int, limits=(1, MAX_BATCH)),
    Option("workers", int, limits=(1, 64)),
    Option("summary"),
    Option("push_url", url=True),
    Option("push_poll_interval", timedelta),
    Option("channel_ttl", timedelta),
)


def check(options: Mapping[str, Any]) -> None:
    for key in ("tenant_id", "client_id"):
        if not options.get(key) and not (key == "tenant_id" and options.get("authority")):
            raise OptionError(key, "missing (from the app registration in Microsoft Entra ID)")
    if options.get("auth", "app") == "app" and not (options.get("client_secret") or options.get("certificate_file")):
        raise OptionError("client_secret", "missing: give client_secret (or client_secret_env) or certificate_file "
                                           "for app-only sign-in, or set auth = \"delegated\"")


def check_calendar(options: Mapping[str, Any], calendar: str) -> None:
    """A link's calendar is ``primary`` or a Graph calendar id: one segment of Graph's URL paths."""
    problem = segment_problem(calendar)
    if problem is not None:
        raise OptionError("calendar", f"not a Microsoft Graph calendar id ({problem})")


@dataclass(frozen=True, slots=True)
class OutlookOptions:
    account: str = "outlook"
    tenant_id: str = ""
    client_id: str = ""
    client_secret: str | None = field(default=None, repr=False)  # a secret: never in logs or tracebacks
    certificate_file: str | None = None  # PEM with the private key and the certificate
    authority: str | None = None  # default: https://login.microsoftonline.com/<tenant_id>
    graph_url: str = DEFAULT_GRAPH
    scope: str = DEFAULT_SCOPE
    auth: str = "app"  # app | delegated
    ca_bundle: str | None = None
    timeout: float = 30.0
    batch_size: int = MAX_BATCH
    workers: int = 8
    summary: str = "Out of office"
    automatic_replies: bool = False
    max_occurrences: int = 1000


def outlook_options(account: str, options: Mapping[str, Any], *, max_occurrences: int = 1000) -> OutlookOptions:
    known = {f for f in OutlookOptions.__dataclass_fields__ if f != "account"}
    values = {k: v for k, v in options.items() if k in known and v not in (None, "")}
    return OutlookOptions(account=account, max_occurrences=max_occurrences, **values)
