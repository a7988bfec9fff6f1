"""Local iCalendar folders: one sub-folder of ``.ics`` files per calendar (the vdir layout
that vdirsyncer and khal use).

- `options`: the account's keys in the config file and their checks;
- `connector`: `LocalConnector`, composed from one mixin module per concern: `files`
  (listing, reading, atomic writes, bad files logged once), `parsing` (what each file says,
  cached; the UID index), `lookup` (`get`, `find_by_block_id`), `listing` (`changes`, the
  cursor) and `writing` (`create`, `update`, `delete`), over the shared state in `base`;
  what the bytes mean is `connectors.ical`.

What an operator needs to know is in ``README.md`` beside this file (the docs include it).
"""

from __future__ import annotations

from pathlib import Path

from connectors.base import AccountSettings, CalendarConnector, Provider
from connectors.local import options

__all__ = ["PROVIDER"]


def _build(account: AccountSettings) -> CalendarConnector:
    from connectors.local.connector import LocalConnector

    return LocalConnector(Path(account.options["root"]), account.ooo_rules, max_occurrences=account.max_occurrences)


PROVIDER = Provider("local", _build, options=options.OPTIONS, check=options.check, ooo_rules=True)
