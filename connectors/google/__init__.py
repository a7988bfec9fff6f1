"""Google Calendar: every linked user's calendar through the Calendar API v3.

- `options`: the account's keys in the config file and their checks;
- `connector`: `GoogleConnector`, composed from one mixin per concern over `base` (the
  shared state): `client` (credentials, requests, errors; over `transport`), `listing`
  (sync tokens, batches, the cursor), `writing` (one event at a time) and `watch` (push
  channels), with the plain functions of `mapping` (event JSON <-> OOO content, ids) and
  `series` (recurring events);
- `push`: how its push notifications read;
- `consent`: an agent grants access in the browser (`syncd connect-link`).

What an operator needs to know is in ``README.md`` beside this file (the docs include it).
"""

from __future__ import annotations

from connectors.base import AccountSettings, CalendarConnector, ConsentFlow, Provider
from connectors.google import options
from connectors.google.push import GooglePush

__all__ = ["PROVIDER"]


def _build(account: AccountSettings) -> CalendarConnector:
    from connectors.google.connector import GoogleConnector  # the API client is heavy: only when used

    settings = options.google_options(account.name, account.options, max_occurrences=account.max_occurrences)
    return GoogleConnector(settings, refresh_tokens=account.refresh_tokens)


def _consent() -> ConsentFlow:
    from connectors.google.consent import GoogleConsent  # google-auth-oauthlib: only when used

    return GoogleConsent()


PROVIDER = Provider("google", _build, options=options.OPTIONS, check=options.check, default_calendar="primary",
                    push=GooglePush(), check_calendar=options.check_calendar, title="Google Calendar",
                    consent=_consent)
