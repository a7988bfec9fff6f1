"""What every part of the fake shares: Google's JSON error, the response type, the URLs a client is configured
with, RFC 3339 stamps, and the opaque (base64 JSON) page and sync tokens."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from tests.fakes.http_support import Response

_REASON_DOMAIN = {
    "rateLimitExceeded": "usageLimits",
    "userRateLimitExceeded": "usageLimits",
    "quotaExceeded": "usageLimits",
    "dailyLimitExceeded": "usageLimits",
    "timeRangeEmpty": "calendar",
    "eventTypeRestriction": "calendar",
    "fullSyncRequired": "calendar",
}


class ApiError(Exception):
    """An error answered in Google's JSON error format."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: str,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.domain = domain or _REASON_DOMAIN.get(reason, "global")
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        err = {"domain": self.domain, "reason": self.reason, "message": self.message, **self.extra}
        return {"error": {"errors": [err], "code": self.status, "message": self.message}}


class _Response(Response):
    json_content_type = "application/json; charset=UTF-8"


class _Endpoints:
    """The URLs a client is configured with, derived from the fake's ``base_url``."""

    base_url: str

    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}/calendar/v3/"

    @property
    def batch_uri(self) -> str:
        return f"{self.base_url}/batch/calendar/v3"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def auth_uri(self) -> str:
        """The authorization endpoint (consent page) of the authorization-code flow."""
        return f"{self.base_url}/o/oauth2/v2/auth"

    @property
    def certs_uri(self) -> str:
        """The ID-token signing certificates in Google's v1 format: ``{key id: PEM X.509 certificate}``."""
        return f"{self.base_url}/oauth2/v1/certs"


def _now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value
