"""Microsoft 365 / Outlook: mailboxes' calendars through Microsoft Graph, signing in with msal.

- `options`: the account's keys in the config file and their checks;
- `connector`: sign-in, delta listing with ``$batch``, event mapping and writing, the
  mailbox's automatic replies;
- `push`: how its change notifications read.

What an operator needs to know is in ``README.md`` beside this file (the docs include it).
"""

from __future__ import annotations

from connectors.base import AccountSettings, CalendarConnector, Provider
from connectors.outlook import options
from connectors.outlook.push import GraphPush

__all__ = ["PROVIDER"]


def _build(account: AccountSettings) -> CalendarConnector:
    from connectors.outlook.connector import OutlookConnector  # msal and requests: only when used

    settings = options.outlook_options(account.name, account.options, max_occurrences=account.max_occurrences)
    return OutlookConnector(settings, refresh_tokens=account.refresh_tokens)


PROVIDER = Provider("outlook", _build, options=options.OPTIONS, check=options.check, default_calendar="primary",
                    push=GraphPush())
