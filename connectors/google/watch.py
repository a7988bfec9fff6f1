"""Push channels: `watch` opens an ``events.watch`` channel on a calendar, `stop_watch` closes it.

Google POSTs to the channel's address when the calendar changes; how those notifications
read is in `connectors.google.push`. A channel watches only out-of-office events
(``eventTypes``), unless Google refused that filter next to a sync token.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connectors.google.client import ClientMixin
from connectors.google.mapping import OOO
from syncd.core.calendars import Watch
from syncd.core.errors import NotFound

__all__ = ["WatchMixin"]


class WatchMixin(ClientMixin):
    """Opening and closing push channels."""

    push_kind = "google"

    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        owner, calendar_id = self._split(calendar)
        expires = datetime.now(UTC) + ttl
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "expiration": str(int(expires.timestamp() * 1000)), "params": {"ttl": str(int(ttl.total_seconds()))}}
        answer = self._execute(lambda: self._events.watch(
            calendarId=calendar_id, body=body, eventTypes=[OOO] if self._filter_types else None,
            quotaUser=owner), owner, f"opening a push channel for {calendar}")
        granted = answer.get("expiration")  # Google may shorten it
        expires_at = datetime.fromtimestamp(int(granted) / 1000, UTC) if granted else expires
        return Watch(str(answer.get("id") or channel_id), str(answer.get("resourceId") or ""), expires_at)

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:
        owner, _calendar_id = self._split(calendar)
        try:
            self._execute(lambda: self._channels.stop(
                body={"id": channel_id, "resourceId": resource_id}), owner, f"stopping push channel {channel_id}")
        except NotFound:
            return
