"""`GoogleConnector`: Google Calendar (API v3) through google-api-python-client and google-auth,
composed from one mixin per concern, as Radicale composes its storage.

- `base`: the account's settings, the API client and the state the concerns share;
- `transport`: the HTTP transport (requests under httplib2's interface);
- `client`: credentials per user, request execution with quota, and error translation;
- `mapping`: Google event JSON <-> OOO content and remote events, and event ids;
- `series`: recurring series as iCalendar and their occurrences in the window;
- `listing`: `changes_many` (sync tokens, batches, the cursor);
- `writing`: `get`, `find_by_block_id`, `create`, `update`, `delete`;
- `watch`: push channels (`watch`, `stop_watch`).

The names other code imports from here are re-exported.
"""

from __future__ import annotations

from connectors.google.base import SCOPES
from connectors.google.client import translate
from connectors.google.listing import MAX_PAGES, PAGE_SIZE, ListingMixin
from connectors.google.mapping import BLOCK_PROPERTY, OOO, event_content, event_id_for_block, split_instance_id
from connectors.google.series import expand_series, series_calendar
from connectors.google.watch import WatchMixin
from connectors.google.writing import WritingMixin

__all__ = ["BLOCK_PROPERTY", "MAX_PAGES", "OOO", "PAGE_SIZE", "SCOPES", "GoogleConnector", "event_content",
           "event_id_for_block", "expand_series", "series_calendar", "split_instance_id", "translate"]


class GoogleConnector(ListingMixin, WritingMixin, WatchMixin):
    """Thread-safe: the daemon's poll workers share one instance per account."""
