"""What every part of the fake shares: the default tenant and app, the response type, Graph's JSON error, the
request log record, and small helpers for request headers and bodies and Graph's timestamps."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.fakes import http_support
from tests.fakes.http_support import Response

DEFAULT_TENANT_ID = "7a1c3f5e-2b4d-4e6f-8a9b-0c1d2e3f4a5b"
DEFAULT_TENANT_DOMAIN = "contoso.onmicrosoft.com"
DEFAULT_CLIENT_ID = "0d2f8f8e-6b1c-4a5e-9c3d-2f1e0a9b8c7d"
DEFAULT_CLIENT_SECRET = "fake-client-secret"


class _Response(Response):
    json_content_type = "application/json; odata.metadata=minimal; charset=utf-8"


class GraphError(Exception):
    """An error answered in Microsoft Graph's JSON error format."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        }

    def response(self) -> _Response:
        return _Response(self.status, self.body(), dict(self.headers))


@dataclass
class RequestRecord(http_support.RequestRecord):
    """One request the fake answered. ``kind`` is ``graph``, ``batch`` (the envelope), ``token`` or
    ``discovery``; batch parts are ``graph`` records with ``in_batch`` set; ``status`` 0 = dropped."""

    kind: str = "graph"


# ---------------------------------------------------------------------------------------------- helpers
def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(dt: datetime | None = None) -> str:
    """Graph's DateTimeOffset form: UTC with seven fractional digits."""
    dt = (dt or _now()).astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _json_body(body: bytes) -> dict[str, Any]:
    """A request's JSON object, or the 400 Graph answers for anything else."""
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(value, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return value


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        for key, item in headers.items():
            if key.lower() == name.lower():
                return str(item)
    return value if value is None else str(value)
