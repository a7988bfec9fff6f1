"""Reaching subscribers: the validation handshake on a notification URL, and delivering change and lifecycle
notifications from a background thread (never while holding the fake's lock), with retries; what was delivered is
recorded in ``notifications``, the handshakes in ``validations``."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.http_support import Courier


@dataclass
class NotificationDelivery:
    """One POST of a change or lifecycle notification to a subscriber."""

    url: str
    payload: dict[str, Any]
    lifecycle: bool
    status: int | None = None  # last HTTP status seen; None = no answer
    error: str | None = None
    attempts: int = 0

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def item(self) -> dict[str, Any]:
        value = self.payload["value"][0]
        assert isinstance(value, dict)
        return value


@dataclass
class ValidationAttempt:
    url: str
    token: str
    ok: bool
    status: int | None
    detail: str = ""


@dataclass
class _Outgoing:
    url: str
    payload: dict[str, Any]
    lifecycle: bool


class NotifierMixin(FakeGraphBase):
    """The courier thread that POSTs notifications, and the validation handshake."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.validation_timeout = 10.0
        self.notification_timeout = 3.0
        self.notification_retries = 2
        self.notification_retry_delay = 0.2
        self.notification_ssl_context: ssl.SSLContext | None = None  # for https notification URLs
        self.validations: list[ValidationAttempt] = []
        self._courier: Courier[_Outgoing, NotificationDelivery] = Courier(self._deliver, "fake-graph-notifier")
        self.notifications = self._courier.records
        self._stopping = threading.Event()

    def wait_notifications(self, n: int, timeout: float = 5.0) -> list[NotificationDelivery]:
        """Block until at least ``n`` notification deliveries are recorded (raises TimeoutError)."""
        return self._courier.wait_for(n, timeout)

    def _deliver(self, job: _Outgoing) -> NotificationDelivery | None:
        """Runs on the courier thread: POST with retries; a stopping fake drops what is still queued."""
        if self._stopping.is_set():
            return None
        record = NotificationDelivery(job.url, job.payload, job.lifecycle)
        data = json.dumps(job.payload).encode()
        for attempt in range(1 + max(0, self.notification_retries)):
            record.attempts = attempt + 1
            status, error = self._post(job.url, data, "application/json", self.notification_timeout)
            record.status, record.error = status, error
            if record.delivered or self._stopping.wait(self.notification_retry_delay):
                break
        return record

    def _post(self, url: str, data: bytes, content_type: str, timeout: float) -> tuple[int | None, str | None]:
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
        context = self.notification_ssl_context if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                response.read()
                return int(response.status), None
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code), f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return None, repr(exc)

    def _validate_endpoint(self, url: str) -> ValidationAttempt:
        """The notificationUrl handshake: POST ?validationToken=..., expect a 200 text/plain echo."""
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        separator = "&" if urlsplit(url).query else "?"
        target = f"{url}{separator}{urlencode({'validationToken': token}, quote_via=quote)}"
        request = urllib.request.Request(target, data=b"", method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8"})
        context = self.notification_ssl_context if url.lower().startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.validation_timeout,  # noqa: S310
                                        context=context) as response:
                status = int(response.status)
                body = response.read().decode("utf-8", "replace")
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            exc.close()
            attempt = ValidationAttempt(url, token, False, int(exc.code), f"HTTP {exc.code}")
        except (OSError, ValueError) as exc:
            attempt = ValidationAttempt(url, token, False, None, repr(exc))
        else:
            ok = status == 200 and body == token and content_type.lower().startswith("text/plain")
            detail = "" if ok else f"status={status} content-type={content_type!r} body={body[:200]!r}"
            attempt = ValidationAttempt(url, token, ok, status, detail)
        with self._lock:
            self.validations.append(attempt)
        return attempt
