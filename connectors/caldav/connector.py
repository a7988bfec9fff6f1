"""`CalDAVConnector`, composed from the per-concern mixins of this package.

- `base`: the account's settings and the state the concerns share;
- `client`: HTTP sessions with the credentials, requests, size limits, errors translated;
- `objects`: one object: its href, GET, its ETag, parsing it, bad objects logged once;
- `discovery`: a link's calendar -> collection URL (display names through the principal);
- `lookup`: finding an event by UID or block id, `get`, `find_by_block_id`;
- `listing`: `changes` (sync-collection or ctag/ETag listing, multiget) and the cursor;
- `writing`: `create`, `update`, `delete` with If-None-Match / If-Match;
- `hours`: the working hours of ``calendar-availability`` (`working_hours_many`).
"""

from __future__ import annotations

from connectors.caldav.hours import HoursMixin
from connectors.caldav.listing import ListingMixin
from connectors.caldav.writing import WritingMixin

__all__ = ["CalDAVConnector"]


class CalDAVConnector(WritingMixin, ListingMixin, HoursMixin):
    """CalDAV calendars (Nextcloud, Fastmail, iCloud, SOGo, Zimbra, Radicale, Xandikos, ...).

    Thread-safe: one lock per connector; the daemon's poll workers share an instance.
    Many collections are listed side by side, ``workers`` at a time (one request each)."""

    provider = "caldav"

    def close(self) -> None:
        self._close_pool()
        self._close_sessions()
