"""Microsoft 365 / Outlook: mailboxes' calendars through Microsoft Graph v1.0, signing in with msal.

Calendars
---------
A link's calendar is addressed as ``<user email>/<calendar id>`` (`address`); ``primary`` is
the mailbox's default calendar. App-only sign-in (client credentials: a secret or a
certificate) reaches every mailbox of the tenant; ``auth = "delegated"`` uses each user's own
refresh token instead (kept encrypted by syncd; Entra ID rotates it on every use, and the new
one is stored at once).

Modules
-------
- `options`: the account's keys in the config file and their checks;
- `connector`: `OutlookConnector`, composed of the parts below;
- `client`: msal sign-in, the HTTP sessions, one Graph request and its errors, the
  per-mailbox concurrency;
- `mapping`: Graph event JSON <-> OOO content;
- `listing`: delta listing with ``$batch``, the cursor (how Graph's changes are read);
- `writing`: reading one event, and writing syncd's events;
- `replies`: the mailbox's automatic replies as a read-only source;
- `watch`: change notification subscriptions;
- `push`: how its change notifications read;
- `consent`: an agent grants access in the browser (`syncd connect-link`).

What an operator needs to know is in ``README.md`` beside this file (the docs include it).
"""

from __future__ import annotations

from connectors.base import AccountSettings, CalendarConnector, ConsentFlow, Provider
from connectors.outlook import options
from connectors.outlook.push import GraphPush

__all__ = ["PROVIDER"]


def _build(account: AccountSettings) -> CalendarConnector:
    from connectors.outlook.connector import OutlookConnector  # msal and requests: only when used

    settings = options.outlook_options(account.name, account.options, max_occurrences=account.max_occurrences)
    return OutlookConnector(settings, refresh_tokens=account.refresh_tokens)


def _consent() -> ConsentFlow:
    from connectors.outlook.consent import OutlookConsent  # msal: only when used

    return OutlookConsent()


PROVIDER = Provider("outlook", _build, options=options.OPTIONS, check=options.check, default_calendar="primary",
                    push=GraphPush(), check_calendar=options.check_calendar, title="Microsoft 365",
                    consent=_consent)
