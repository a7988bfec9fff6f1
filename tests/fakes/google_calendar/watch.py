"""Push notifications: ``events.watch`` and ``channels.stop`` (channels recorded in ``channels``), a ``sync`` message
when a channel is made and an ``exists`` message to every live channel of a calendar on each change, POSTed from a
background thread with the ``X-Goog-*`` headers and recorded in ``notifications``."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import http.client
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.google_calendar.base import FakeGoogleBase, _Calendar
from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.http_support import Courier

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NOTIFICATION_TIMEOUT = 5.0  # seconds the delivery thread waits on a receiver



@dataclass
class NotificationRecord:
    """One push notification the fake tried to deliver to a channel's address."""

    channel_id: str
    resource_state: str  # "sync" or "exists"
    message_number: int
    status: int | None  # the receiver's HTTP status, None when it was not reached
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Delivery:
    address: str
    channel_id: str
    resource_state: str
    message_number: int
    headers: dict[str, str]


def _post_notification(delivery: _Delivery, timeout: float) -> tuple[int | None, str | None]:
    """POST one notification; only plain-HTTP loopback receivers are ever contacted."""
    target = urlsplit(delivery.address)
    if target.scheme != "http" or target.hostname not in _LOOPBACK_HOSTS:
        return None, f"undeliverable: the fake only posts to http:// loopback addresses, not {delivery.address!r}"
    conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)
    try:
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        conn.request("POST", path, body=b"", headers={**delivery.headers, "Content-Length": "0"})
        response = conn.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


class WatchMixin(FakeGoogleBase):
    """Channels, the courier thread that delivers to them, and the watch/stop endpoints."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels: dict[str, dict[str, Any]] = {}
        self.notification_timeout = NOTIFICATION_TIMEOUT
        self._courier: Courier[_Delivery, NotificationRecord] = Courier(self._deliver, "fake-google-push")
        self.notifications = self._courier.records

    # ------------------------------------------------------------------ test hooks: push notifications
    def expire_channel(self, channel_id: str) -> None:
        """The channel's expiration time is now: it gets no more notifications."""
        with self._lock:
            self.channels[channel_id]["expiration"] = str(int(time.time() * 1000) - 1)

    def wait_notifications(self, n: int, timeout: float = 5.0) -> list[NotificationRecord]:
        """Wait until at least ``n`` deliveries were attempted; a copy of ``notifications``."""
        return self._courier.wait_for(n, timeout)

    # ------------------------------------------------------------------ push notifications
    @staticmethod
    def _channel_live(channel: dict[str, Any], now_ms: int) -> bool:
        return not channel["stopped"] and int(channel["expiration"]) > now_ms

    def _notify(self, channel: dict[str, Any], state: str) -> None:
        """Queue one message for ``channel`` (caller holds the lock; delivery happens on the courier thread)."""
        channel["messageNumber"] += 1
        headers = {
            "X-Goog-Channel-ID": channel["id"],
            "X-Goog-Channel-Expiration": email.utils.formatdate(int(channel["expiration"]) / 1000, usegmt=True),
            "X-Goog-Resource-ID": channel["resourceId"],
            "X-Goog-Resource-URI": channel["resourceUri"],
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(channel["messageNumber"]),
        }
        if "token" in channel:
            headers["X-Goog-Channel-Token"] = channel["token"]
        self._courier.put(_Delivery(channel["address"], channel["id"], state, channel["messageNumber"], headers))

    def _notify_change(self, cal: _Calendar) -> None:
        now_ms = int(time.time() * 1000)
        for channel in self.channels.values():
            if (channel["user"], channel["calendarId"]) == (cal.owner, cal.calendar_id) and self._channel_live(
                channel, now_ms
            ):
                self._notify(channel, "exists")

    def _deliver(self, delivery: _Delivery) -> NotificationRecord:
        """Runs on the courier thread; a stopping fake records what it no longer sends."""
        status: int | None
        error: str | None
        if self._closing.is_set():
            status, error = None, "not delivered: the fake was stopping"
        else:
            status, error = _post_notification(delivery, self.notification_timeout)
        return NotificationRecord(delivery.channel_id, delivery.resource_state, delivery.message_number,
                                  status, error, dict(delivery.headers))

    # ------------------------------------------------------------------ endpoints
    def _watch(self, user: str, cal: _Calendar, data: dict[str, Any]) -> _Response:
        """``POST .../events/watch``: a new channel, announced with a ``sync`` message."""
        if not data.get("id") or not data.get("address") or data.get("type") not in ("web_hook", "webhook"):
            raise ApiError(400, "invalid", "Invalid channel request.")
        if data["id"] in self.channels:
            raise ApiError(400, "channelIdNotUnique", "Channel id not unique")
        try:
            expiration = int(data.get("expiration") or int(time.time() * 1000) + 7 * 86400 * 1000)
        except (TypeError, ValueError) as exc:
            raise ApiError(400, "invalid", "Invalid value for: expiration") from exc
        resource_id = secrets.token_urlsafe(12)
        channel = {
            "kind": "api#channel",
            "id": data["id"],
            "resourceId": resource_id,
            "resourceUri": f"{self.api_endpoint}calendars/{cal.calendar_id}/events?alt=json",
            "expiration": str(expiration),
        }
        if "token" in data:
            channel["token"] = data["token"]
        record = {**channel, "address": data["address"], "user": user, "calendarId": cal.calendar_id,
                  "stopped": False, "messageNumber": 0}
        self.channels[data["id"]] = record
        if self._channel_live(record, int(time.time() * 1000)):
            self._notify(record, "sync")  # "sent when a new channel is created": message number 1
        return _Response(200, channel)

    def _stop_channel(self, user: str, data: dict[str, Any]) -> _Response:
        """``POST /channels/stop``: the channel (of this user, with this resource id) gets no more messages."""
        channel = self.channels.get(data.get("id", ""))
        if channel is None or channel["resourceId"] != data.get("resourceId") or channel["user"] != user:
            raise ApiError(404, "notFound", f"Channel '{data.get('id')}' not found for project")
        channel["stopped"] = True
        return _Response(204)
