"""Batching: ``multipart/mixed`` at ``/batch/calendar/v3`` (at most 1000 parts), each part its own API call (and
its own request for quota and faults), answered as ``application/http`` parts."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import secrets
from typing import Any

from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.google_calendar.routing import RoutingMixin
from tests.fakes.http_support import reason_phrase

MAX_BATCH_PARTS = 1000  # "You're limited to 1000 calls in a single batch request" (Calendar batch guide)


class _CaseInsensitive(dict[str, str]):
    def __init__(self, items: dict[str, str]) -> None:
        super().__init__({k.lower(): v for k, v in items.items()})

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


class BatchMixin(RoutingMixin):
    """The batch endpoint."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_limit = MAX_BATCH_PARTS

    def _batch(self, headers: Any, body: bytes) -> _Response:
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/mixed"):
            raise ApiError(400, "badContent", "Batch requests must be multipart/mixed.")
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        if not message.is_multipart():
            raise ApiError(400, "badContent", "Malformed multipart body.")
        parts = [p for p in message.get_payload() if isinstance(p, email.message.Message)]
        if len(parts) > self.batch_limit:
            raise ApiError(400, "limitExceeded", f"A batch may contain at most {self.batch_limit} calls.")
        boundary = "batch_" + secrets.token_hex(12)
        chunks: list[bytes] = []
        for part in parts:
            content_id = (part.get("Content-ID") or "").strip()
            raw = part.get_payload(decode=False)
            raw = raw if isinstance(raw, str) else str(raw)
            request_line, _, rest = raw.replace("\r\n", "\n").partition("\n")
            method, target, _version = request_line.split(" ", 2)
            inner = email.parser.Parser(policy=email.policy.compat32).parsestr(rest)
            inner_headers = {k: v for k, v in inner.items()}
            lowered = {k.lower() for k in inner_headers}
            if "authorization" not in lowered and headers.get("Authorization"):
                inner_headers["Authorization"] = headers["Authorization"]
            hdrs = _CaseInsensitive(inner_headers)
            inner_body = inner.get_payload()
            inner_bytes = inner_body.encode() if isinstance(inner_body, str) else b""
            result = self._dispatch(method, target, hdrs, inner_bytes, in_batch=True)
            data, resp_headers = result.encode()
            status_line = f"HTTP/1.1 {result.status} {reason_phrase(result.status)}"
            header_lines = "".join(f"{k}: {v}\r\n" for k, v in resp_headers.items())
            response_id = content_id
            if response_id.startswith("<") and response_id.endswith(">"):
                response_id = f"<response-{response_id[1:-1]}>"
            chunks.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: {response_id}\r\n\r\n"
                f"{status_line}\r\n{header_lines}\r\n".encode()
                + data
                + b"\r\n"
            )
        chunks.append(f"--{boundary}--\r\n".encode())
        return _Response(200, b"".join(chunks), {"Content-Type": f"multipart/mixed; boundary={boundary}"})
