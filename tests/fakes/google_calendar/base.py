"""The state every concern works on: the fake's settings, the per-(user, calendar) event stores, the change counter
that versions every write, and the request log and fault queues the server fills and drains.

Each concern is a mixin over :class:`FakeGoogleBase` in a module of its own; ``tests.fakes.google_calendar.fake``
composes them into ``FakeGoogleCalendar`` (as Radicale composes its storage from per-concern mixins).  A mixin with
state of its own sets it in an ``__init__`` that takes the constructor's keywords and passes them on.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.google_calendar.common import ApiError, _Endpoints, _now_rfc3339
from tests.fakes.http_support import FaultQueues, RequestRecord


@dataclass
class _Calendar:
    owner: str
    calendar_id: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    min_sync_seq: int = 0  # sync tokens below this sequence are expired


class FakeGoogleBase(_Endpoints):
    """The fake's settings and shared state, and the helpers for calendars and stored events."""

    def __init__(self, *, latency: float = 0.0, token_lifetime: int = 3600) -> None:
        self.latency = latency
        self.token_lifetime = token_lifetime
        self.requests: list[RequestRecord] = []
        self.token_requests: list[dict[str, str]] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._calendars: dict[tuple[str, str], _Calendar] = {}
        self._faults = FaultQueues()  # API requests only, never /token
        self._closing = threading.Event()  # set by stop(): wakes injected sleeps, skips deliveries
        self.base_url = ""

    # ------------------------------------------------------------------ state helpers
    def _calendar(self, user: str, calendar_id: str, *, create: bool) -> _Calendar:
        cid = user if calendar_id == "primary" else calendar_id
        key = (user, cid)
        cal = self._calendars.get(key)
        if cal is None:
            if not create and cid != user:
                raise ApiError(404, "notFound", "Not Found")
            cal = self._calendars[key] = _Calendar(owner=user, calendar_id=cid)
        return cal

    def _bump(self, event: dict[str, Any]) -> None:
        self._seq += 1
        event["_seq"] = self._seq
        event["etag"] = f'"{int(time.time() * 1000) * 1000 + self._seq % 1000}"'
        event["updated"] = _now_rfc3339()

    @staticmethod
    def _public(event: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in event.items() if not k.startswith("_")}
