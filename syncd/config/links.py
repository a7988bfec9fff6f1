"""Whether a user's calendar link may be made: the account's domains allow the user's email,
and the provider accepts the calendar (a CalDAV URL on the account's own server, a calendar
id that is one path segment). The config loader and the HTTP API both ask, before anything
is fetched with the account's credentials."""

from __future__ import annotations

from connectors.registry import PROVIDERS
from syncd.config.model import AccountConfig
from syncd.core.options import OptionError

__all__ = ["link_problem"]


def link_problem(account: AccountConfig, email: str, calendar: str) -> tuple[str, str] | None:
    """(the key at fault, a one-line reason), or None when the link may be made."""
    domain = email.rpartition("@")[2].lower()
    if account.domains and domain not in account.domains:
        return "account", (f"{email} is outside accounts.{account.name}.domains ({', '.join(account.domains)}); "
                           "syncd acts through this account only for those domains")
    provider = PROVIDERS.get(account.provider)
    if provider is None:  # the loader has already said so, about the account
        return None
    try:
        provider.check_calendar(account.options, calendar)
    except OptionError as exc:
        return exc.key, exc.message
    return None
