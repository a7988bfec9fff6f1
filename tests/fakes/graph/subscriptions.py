"""Change-notification subscriptions (``/subscriptions``): create with the validation handshake, get, list, renew,
delete and reauthorize; a change notification per event change, and lifecycle notifications sent by a test hook."""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.fakes.graph.common import GraphError, _json_body, _now, _Response, _stamp
from tests.fakes.graph.identity import _Grant
from tests.fakes.graph.notifications import NotifierMixin, _Outgoing
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import _parse_wall

MAX_SUBSCRIPTION_MINUTES = 10080  # Outlook event subscriptions: under 7 days
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")


class SubscriptionsMixin(NotifierMixin):
    """The subscriptions of all mailboxes, and the change notifications they get."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.subscriptions: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------------------------ hooks: subscriptions
    def send_lifecycle_notification(self, subscription_id: str, lifecycle_event: str) -> bool:
        """Queue a lifecycle notification to the subscription's lifecycleNotificationUrl (False if none).
        ``subscriptionRemoved`` also removes the subscription."""
        if lifecycle_event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {lifecycle_event!r}")
        with self._lock:
            sub = self.subscriptions[subscription_id]
            url = sub.get("lifecycleNotificationUrl")
            if lifecycle_event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
            if not url:
                return False
            item = {
                "subscriptionId": subscription_id,
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": self.tenant_id,
                "clientState": sub.get("clientState"),
                "lifecycleEvent": lifecycle_event,
            }
            self._courier.put(_Outgoing(url, {"value": [item]}, lifecycle=True))
            return True

    def expire_subscription(self, subscription_id: str) -> None:
        """Graph deletes a subscription that was not renewed in time."""
        with self._lock:
            self.subscriptions.pop(subscription_id, None)

    # ------------------------------------------------------------------------------------ notifications
    def _emit(self, box: _Mailbox, event_id: str, change_type: str, change_key: str) -> None:
        """Queue change notifications for subscriptions on this mailbox (called under the lock)."""
        if not self.subscriptions:
            return
        now = _now()
        for sub in self.subscriptions.values():
            if sub["_mailbox"] != box.upn or change_type not in sub["_change_types"]:
                continue
            if sub["_calendar"] is not None and box.events.get(event_id, {}).get("_calendar", sub["_calendar"]) != \
                    sub["_calendar"]:
                continue
            if datetime.fromisoformat(sub["expirationDateTime"].replace("Z", "+00:00")) <= now:
                continue
            resource = f"Users/{box.object_id}/Events/{event_id}"
            item = {
                "subscriptionId": sub["id"],
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "changeType": change_type,
                "resource": resource,
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": resource,
                    "@odata.etag": f'W/"{change_key}"',
                    "id": event_id,
                },
                "clientState": sub.get("clientState"),
                "tenantId": self.tenant_id,
            }
            self._courier.put(_Outgoing(sub["notificationUrl"], {"value": [item]}, lifecycle=False))

    # ------------------------------------------------------------------------------------ subscriptions
    def _parse_resource(self, grant: _Grant, resource: str) -> tuple[_Mailbox, str | None]:
        text = resource.strip().strip("/")
        lowered = text.lower()
        match = re.match(r"^(?:me|users/([^/]+))(?:/calendars/([^/]+))?/events$", text, re.IGNORECASE)
        if not match or lowered.endswith("/messages"):
            raise GraphError(400, "InvalidRequest", f"Resource '{resource}' is not supported by the fake for "
                                                    f"change notifications.")
        if match.group(1) is None:
            if grant.kind != "user":
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            box = self._mailbox(grant.user or "", create=True)
        else:
            box = self._mailbox(unquote(match.group(1)), create=self.auto_create_users)
            if grant.kind == "user" and box.upn != grant.user:
                raise GraphError(403, "ExtensionError", "Operation: Create; Exception: [Status Code: Forbidden; "
                                                        "Reason: Access is denied.]")
        calendar = match.group(2)
        if calendar is not None and calendar not in box.calendars:
            raise GraphError(404, "ResourceNotFound", "The calendar was not found.")
        return box, calendar

    @staticmethod
    def _parse_expiration(value: Any) -> datetime:
        if not isinstance(value, str):
            raise GraphError(400, "InvalidRequest", "expirationDateTime is required.")
        try:
            parsed = _parse_wall(value)
        except ValueError as exc:
            raise GraphError(400, "InvalidRequest", f"Invalid expirationDateTime '{value}'.") from exc
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        now = _now()
        if parsed <= now:
            raise GraphError(400, "InvalidRequest", "Subscription expiration can only be in the future.")
        if parsed > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise GraphError(400, "InvalidRequest", f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} "
                                                    f"minutes in the future.")
        return parsed

    def _create_subscription(self, grant: _Grant, body: bytes) -> _Response:
        data = _json_body(body)
        for required in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not data.get(required):
                raise GraphError(400, "InvalidRequest", f"The property '{required}' is required.")
        change_types = [c.strip() for c in str(data["changeType"]).split(",") if c.strip()]
        if not change_types or any(c not in ("created", "updated", "deleted") for c in change_types):
            raise GraphError(400, "InvalidRequest", f"Invalid changeType '{data['changeType']}'.")
        client_state = data.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            raise GraphError(400, "InvalidRequest", "clientState must be a string of at most 128 characters.")
        urls = [data["notificationUrl"]] + ([data["lifecycleNotificationUrl"]]
                                            if data.get("lifecycleNotificationUrl") else [])
        for url in urls:
            if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
                raise GraphError(400, "InvalidRequest", f"Invalid notification url '{url}'.")
        expiration = self._parse_expiration(data["expirationDateTime"])
        with self._lock:
            box, calendar = self._parse_resource(grant, str(data["resource"]))
            if box.blocked is not None:
                raise box.blocked
        for url in dict.fromkeys(urls):  # the handshake, without holding the lock
            attempt = self._validate_endpoint(url)
            if not attempt.ok:
                raise GraphError(400, "ValidationError", f"Subscription validation request failed. Notification "
                                                         f"endpoint must respond with 200 OK to validation request. "
                                                         f"({url}: {attempt.detail})")
        subscription_id = str(uuid.uuid4())
        sub = {
            "@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity",
            "id": subscription_id,
            "resource": data["resource"],
            "applicationId": grant.client_id,
            "changeType": ",".join(change_types),
            "clientState": client_state,
            "notificationUrl": data["notificationUrl"],
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": data.get("lifecycleNotificationUrl"),
            "expirationDateTime": _stamp(expiration),
            "creatorId": box.object_id if grant.kind == "user" else grant.client_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": data.get("latestSupportedTlsVersion", "v1_2"),
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
            "_mailbox": box.upn,
            "_calendar": calendar,
            "_change_types": change_types,
        }
        with self._lock:
            self.subscriptions[subscription_id] = sub
        return _Response(201, self._public_subscription(sub))

    @staticmethod
    def _public_subscription(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in sub.items() if not k.startswith("_")}

    def _subscription_route(self, grant: _Grant, method: str, segments: list[str], body: bytes) -> _Response:
        if len(segments) == 1 and method == "GET":
            mine = [self._public_subscription(s) for s in self.subscriptions.values()
                    if s["applicationId"] == grant.client_id]
            return _Response(200, {"@odata.context": f"{self.graph_url}/$metadata#subscriptions", "value": mine})
        if len(segments) < 2:
            raise GraphError(405, "BadRequest", "Method not allowed.")
        sub = self.subscriptions.get(segments[1])
        if sub is None or sub["applicationId"] != grant.client_id:
            raise GraphError(404, "ResourceNotFound", f"The object was not found. Subscription '{segments[1]}' "
                                                      f"doesn't exist.")
        if len(segments) == 3 and segments[2].lower() == "reauthorize" and method == "POST":
            return _Response(204)
        if len(segments) != 2:
            raise GraphError(400, "BadRequest", "Unsupported subscription segment.")
        if method == "GET":
            return _Response(200, self._public_subscription(sub))
        if method == "DELETE":
            del self.subscriptions[segments[1]]
            return _Response(204)
        if method == "PATCH":
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
            if not isinstance(data, dict) or set(data) - {"expirationDateTime", "notificationUrl"}:
                raise GraphError(400, "InvalidRequest", "Only expirationDateTime and notificationUrl can be updated.")
            if "expirationDateTime" in data:
                sub["expirationDateTime"] = _stamp(self._parse_expiration(data["expirationDateTime"]))
            if "notificationUrl" in data:
                sub["notificationUrl"] = data["notificationUrl"]
            return _Response(200, self._public_subscription(sub))
        raise GraphError(405, "BadRequest", "Method not allowed.")
