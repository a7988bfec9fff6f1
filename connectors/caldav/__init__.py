"""CalDAV: any CalDAV server (Nextcloud, Fastmail, iCloud, SOGo, Radicale, Xandikos ...).

- `options`: the account's keys in the config file and their checks;
- `connector`: `CalDAVConnector`, composed from one mixin module per concern: `client`
  (HTTP, credentials, errors), `objects` (one object: GET, ETag, parsing), `discovery`
  (calendar names), `lookup` (`get`, `find_by_block_id`), `listing` (sync-collection
  (RFC 6578) or ctag/ETag listing, multiget, the cursor) and `writing` (PUT and DELETE with
  If-Match), over the shared state in `base`; what the objects mean is `connectors.ical`.

What an operator needs to know is in ``README.md`` beside this file (the docs include it).
"""

from __future__ import annotations

from connectors.base import AccountSettings, CalendarConnector, Provider
from connectors.caldav import options

__all__ = ["PROVIDER"]


def _build(account: AccountSettings) -> CalendarConnector:
    from connectors.caldav.connector import CalDAVConnector

    settings = account.options
    return CalDAVConnector(settings["url"], settings.get("username") or None, settings.get("password") or None,
                           ca_bundle=settings.get("ca_bundle") or None, rules=account.ooo_rules,
                           max_occurrences=account.max_occurrences, account=account.name,
                           workers=settings.get("workers") or 8)


PROVIDER = Provider("caldav", _build, options=options.OPTIONS, check=options.check, ooo_rules=True,
                    check_calendar=options.check_calendar)
