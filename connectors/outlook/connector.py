"""`OutlookConnector`: the Microsoft 365 connector, composed of one part per concern.

Each part is a mixin in its own module, built on `client.GraphClient`:

- `client`: msal sign-in (app-only and delegated), the HTTP sessions, one Graph request,
  throttling and errors translated into `syncd.core.errors`, the per-mailbox concurrency gate;
- `mapping`: Graph event JSON <-> `OooContent` and `RemoteEvent` (no I/O);
- `replies`: the mailbox's automatic replies as a read-only source;
- `listing`: ``calendarView/delta`` with ``$batch`` (`changes_many`) and the cursor;
- `writing`: `get`, `find_by_block_id`, `create`, `update`, `delete`;
- `watch`: change notification subscriptions (`watch`, `stop_watch`);
- `hours`: the mailbox's working hours (`working_hours_many`).

The names other code imports from here (`event_content`, `transaction_id` ...) are re-exported.
"""

from __future__ import annotations

from connectors.outlook.client import translate
from connectors.outlook.hours import HoursPart
from connectors.outlook.listing import ListingPart
from connectors.outlook.mapping import BLOCK_PROPERTY, event_content, transaction_id
from connectors.outlook.replies import AUTOMATIC_REPLIES, replies_content
from connectors.outlook.watch import WatchPart
from connectors.outlook.writing import WritingPart

__all__ = ["AUTOMATIC_REPLIES", "BLOCK_PROPERTY", "OutlookConnector", "event_content", "replies_content",
           "transaction_id", "translate"]


class OutlookConnector(ListingPart, WritingPart, WatchPart, HoursPart):
    """Thread-safe: the daemon's poll workers share one instance per account.

    Built from `OutlookOptions` (``refresh_tokens`` for delegated sign-in; ``session_factory``
    to supply the requests sessions), see `client.GraphClient`."""

    provider = "outlook"
    push_kind = "outlook"
