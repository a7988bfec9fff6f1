"""`LocalConnector`, composed from the per-concern mixins of this package.

- `base`: the account's root folder, rules, limits, and the state the concerns share;
- `files`: folders, listing, reading, atomic writes, the etag, bad files logged once;
- `parsing`: what each file says (cached per version), the UID index;
- `lookup`: finding an event by id or block id, `get`, `find_by_block_id`;
- `listing`: `changes` and the cursor (racy files re-read);
- `writing`: `create`, `update`, `delete`.
"""

from __future__ import annotations

from connectors.local.listing import ListingMixin
from connectors.local.writing import WritingMixin

__all__ = ["LocalConnector"]


class LocalConnector(WritingMixin, ListingMixin):
    """A local iCalendar folder ("vdir", as vdirsyncer and khal keep it) as a calendar.

    Thread-safe: every call holds the connector's lock."""

    provider = "local"
