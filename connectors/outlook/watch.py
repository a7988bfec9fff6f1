"""Change notifications: a Graph subscription per linked calendar (`watch`, `stop_watch`).

A subscription covers the calendar's events (created, updated, deleted) and sends both its
notifications and its lifecycle notifications to the address given, carrying the token as
``clientState``. Graph keeps event subscriptions for at most 10,080 minutes (7 days), so the
time asked for is capped just below that; the expiry Graph grants is the one returned.
How the notifications read is `connectors.outlook.push`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.outlook.client import GraphClient, segment
from syncd.core.calendars import Watch
from syncd.core.errors import NotFound
from syncd.core.time import format_utc

__all__ = ["WatchPart"]


class WatchPart(GraphClient):
    """Opens and closes subscriptions; closing an unknown one is not an error."""

    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        owner, calendar_id = self._split(calendar)
        # Graph keeps event subscriptions for at most 10,080 minutes (7 days).
        expires = datetime.now(UTC) + min(ttl, timedelta(minutes=10_070))
        resource = self._events_path(owner, calendar_id).lstrip("/")
        answer = self._call("POST", "/subscriptions", owner=owner, json_body={
            "changeType": "created,updated,deleted", "notificationUrl": address,
            "lifecycleNotificationUrl": address, "resource": resource,
            "expirationDateTime": format_utc(expires), "clientState": token},
            what=f"subscribing to {calendar}")
        granted = answer.body.get("expirationDateTime")
        expires_at = datetime.fromisoformat(str(granted).replace("Z", "+00:00")) if granted else expires
        return Watch(str(answer.body["id"]), str(answer.body.get("resource") or resource), expires_at)

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:
        owner, _calendar_id = self._split(calendar)
        try:
            self._call("DELETE", f"/subscriptions/{segment(channel_id, 'subscription id')}", owner=owner,
                       what=f"removing subscription {channel_id}")
        except NotFound:
            return
