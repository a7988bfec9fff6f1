"""JSON batching (``POST /v1.0/$batch``): at most 20 requests with unique ids and relative urls, ``dependsOn``
(424 when a dependency failed), each part run as its own Graph call with its own status, headers and body."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.graph.common import GraphError, _header, _Response
from tests.fakes.graph.routing import RoutingMixin

MAX_BATCH_REQUESTS = 20  # "JSON batch requests are currently limited to 20 individual requests."


class BatchMixin(RoutingMixin):
    """The ``$batch`` endpoint."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_limit = MAX_BATCH_REQUESTS

    def _batch(self, headers: Any, body: bytes) -> _Response:
        requests_ = self._batch_requests(body)
        statuses: dict[str, int] = {}
        responses = []
        for part in requests_:
            failed = [d for d in part.get("dependsOn") or [] if not 200 <= statuses.get(str(d).lower(), 0) < 300]
            if failed:
                result = GraphError(424, "FailedDependency", f"Dependency '{failed[0]}' failed.").response()
            else:
                result = self._batch_part(headers, part)
            statuses[part["id"].lower()] = result.status
            entry: dict[str, Any] = {"id": part["id"], "status": result.status}
            entry_headers = dict(result.headers)
            if result.body is not None:
                entry_headers.setdefault("Content-Type", _Response.json_content_type)
                entry["body"] = result.body
            entry["headers"] = entry_headers
            responses.append(entry)
        return _Response(200, {"responses": responses})

    def _batch_requests(self, body: bytes) -> list[dict[str, Any]]:
        """The envelope's requests, once it passes the checks Graph makes before running any part."""
        try:
            data = json.loads(body or b"{}")
        except ValueError as exc:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.") from exc
        requests_ = data.get("requests") if isinstance(data, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise GraphError(400, "BadRequest", "Invalid batch payload format: 'requests' is required.")
        if len(requests_) > self.batch_limit:
            raise GraphError(400, "BadRequest", f"The number of requests in the batch ({len(requests_)}) exceeds "
                                                f"the limit of {self.batch_limit}.")
        seen: dict[str, int] = {}
        for part in requests_:
            if not isinstance(part, dict) or not all(isinstance(part.get(k), str) for k in ("id", "method", "url")):
                raise GraphError(400, "BadRequest", "Each batch request needs string 'id', 'method' and 'url'.")
            if part["id"].lower() in seen:
                raise GraphError(400, "BadRequest", f"Batch request ids must be unique; '{part['id']}' is repeated.")
            seen[part["id"].lower()] = 0
            if part.get("body") is not None and not any(k.lower() == "content-type"
                                                        for k in (part.get("headers") or {})):
                raise GraphError(400, "BadRequest", f"Batch request '{part['id']}' has a body but no Content-Type "
                                                    f"header.")
            for dep in part.get("dependsOn") or []:
                if str(dep).lower() not in seen or str(dep).lower() == part["id"].lower():
                    raise GraphError(400, "BadRequest", f"dependsOn of '{part['id']}' must name an earlier request.")
            if urlsplit(part["url"]).scheme:
                raise GraphError(400, "BadRequest", "Batch request urls must be relative.")
        return requests_

    def _batch_part(self, headers: Any, part: dict[str, Any]) -> _Response:
        """Run one part: with the envelope's Authorization unless it has its own, its body decoded as Graph does."""
        inner_headers = {str(k): str(v) for k, v in (part.get("headers") or {}).items()}
        if not any(k.lower() == "authorization" for k in inner_headers):
            outer = _header(headers, "Authorization")
            if outer:
                inner_headers["Authorization"] = outer
        raw = part.get("body")
        if raw is None:
            inner_body = b""
        elif isinstance(raw, str):
            try:
                inner_body = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_")
            except ValueError:
                inner_body = raw.encode()
        else:
            inner_body = json.dumps(raw).encode()
        url = part["url"].lstrip("/")
        if url.lower().startswith("v1.0/"):
            url = url[5:]
        if url.lower().startswith("$batch"):
            return GraphError(400, "BadRequest", "Nested batches are not supported.").response()
        return self._dispatch(part["method"].upper(), f"/v1.0/{url}", inner_headers, inner_body, in_batch=True)
