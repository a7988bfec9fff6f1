"""The state every concern works on: the fake's settings, the mailboxes (created on first use), the change counter
that versions every write, and the request log and fault queues the server fills and drains.

Each concern is a mixin over :class:`FakeGraphBase` in a module of its own; ``tests.fakes.graph.fake`` composes them
into ``FakeGraph`` (as Radicale composes its storage from per-concern mixins).  A mixin with state of its own sets it
in an ``__init__`` that takes the constructor's keywords and passes them on.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import uuid
from datetime import timedelta
from typing import Any

from tests.fakes.graph.common import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_TENANT_DOMAIN,
    DEFAULT_TENANT_ID,
    GraphError,
    RequestRecord,
    _b64url,
    _now,
    _stamp,
)
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import _render_time
from tests.fakes.http_support import FaultQueues


class FakeGraphBase:
    """The fake's settings and shared state, and the helpers that create mailboxes and version changes."""

    def __init__(
        self,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        tenant_domain: str = DEFAULT_TENANT_DOMAIN,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        latency: float = 0.0,
        token_lifetime: int = 3600,
        port: int = 0,
    ) -> None:
        self.tenant_id = tenant_id
        self.tenant_domain = tenant_domain
        self.client_id = client_id
        self.client_secret = client_secret
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.port = port
        self.auto_create_users = True
        self.default_page_size = 10
        self.requests: list[RequestRecord] = []
        self.token_requests: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._mailboxes: dict[str, _Mailbox] = {}
        self._by_object_id: dict[str, str] = {}
        self._faults = FaultQueues()
        self.base_url = ""

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    def _mailbox(self, user: str, *, create: bool) -> _Mailbox:
        key = user.lower()
        key = self._by_object_id.get(key, key)
        box = self._mailboxes.get(key)
        if box is None:
            if not create:
                raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
            object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-graph:{key}"))
            primary = "AAMkAGPrimary" + _b64url(hashlib.sha256(key.encode()).digest()[:12]) + "="
            box = _Mailbox(upn=key, object_id=object_id, display_name=key.split("@")[0].replace(".", " ").title(),
                           primary_calendar=primary, calendars={primary: "Calendar"})
            box.settings = self._default_settings()
            self._mailboxes[key] = box
            self._by_object_id[object_id] = key
        return box

    @staticmethod
    def _default_settings() -> dict[str, Any]:
        midnight = _now().replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "archiveFolder": "AAMkAGArchive=",
            "timeZone": "UTC",
            "automaticRepliesSetting": {
                "status": "disabled",
                "externalAudience": "all",
                "scheduledStartDateTime": _render_time(midnight, "UTC"),
                "scheduledEndDateTime": _render_time(midnight + timedelta(days=1), "UTC"),
                "internalReplyMessage": "",
                "externalReplyMessage": "",
            },
            "language": {"locale": "en-US", "displayName": "English (United States)"},
            "workingHours": {
                "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
                "startTime": "08:00:00.0000000",
                "endTime": "17:00:00.0000000",
                "timeZone": {"name": "UTC"},
            },
            "dateFormat": "yyyy-MM-dd",
            "timeFormat": "HH:mm",
            "delegateMeetingMessageDeliveryOptions": "sendToDelegateOnly",
            "userPurpose": "user",
        }

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _bump(self, item: dict[str, Any]) -> None:
        seq = self._next_seq()
        item["_seq"] = seq
        item["changeKey"] = base64.b64encode(secrets.token_bytes(10) + seq.to_bytes(6, "big")).decode()
        item["lastModifiedDateTime"] = _stamp()
