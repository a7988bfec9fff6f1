"""HTTP details the connectors share: a session that takes only proxies from the environment,
bounded bodies, reading Retry-After, and telling a stale connection."""

from __future__ import annotations

import email.utils
import http.client
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests

from syncd.core.errors import ConnectorError

__all__ = ["MAX_BODY", "EnvironmentProxies", "ProxySession", "read_body", "retry_after", "stale_connection"]

MAX_BODY = 64 * 1024 * 1024  # no calendar answer is this big; a bigger one is refused, not read



class EnvironmentProxies:
    """For a ``requests.Session`` (or a subclass such as an OAuth session): take only proxies
    from the environment, ``HTTP_PROXY`` and ``HTTPS_PROXY``, per request, with ``NO_PROXY``
    honoured. ``trust_env`` stays off, so no ``.netrc`` credentials and no ``REQUESTS_CA_BUNDLE``
    (it would replace the account's CA bundle)."""

    trust_env: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trust_env = False

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)  # type: ignore[misc]
        # {} for a host NO_PROXY names; a session's or request's own proxies win.
        settings["proxies"] = {**requests.utils.get_environ_proxies(url), **(settings.get("proxies") or {})}
        return settings


class ProxySession(EnvironmentProxies, requests.Session):
    """A ``requests.Session`` with `EnvironmentProxies`."""


def read_body(response: Any, what: str, limit: int = MAX_BODY) -> bytes:
    """The body of a streamed ``requests`` response, refusing one larger than ``limit`` before
    it is read: a broken or hostile server must not take the daemon's memory."""
    declared = str(response.headers.get("Content-Length") or "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise ConnectorError(f"{what}: the server sent {int(declared) // 2**20} MB; answers over "
                             f"{limit // 2**20} MB are refused")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(1 << 16):
        size += len(chunk)
        if size > limit:
            response.close()
            raise ConnectorError(f"{what}: the server's answer passed {limit // 2**20} MB; refused")
        chunks.append(chunk)
    return b"".join(chunks)


def retry_after(headers: Mapping[str, Any]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), if any."""
    value = None
    for key, item in headers.items():
        if str(key).lower() == "retry-after":
            value = item
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        try:
            when = email.utils.parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(UTC)).total_seconds())


def stale_connection(exc: BaseException) -> bool:
    """Whether a connection error is a kept-alive connection the server had closed meanwhile.

    Such a request is worth sending once more on a new connection; any other network error
    is reported. HTTP libraries wrap the socket's error in their own, so the chain is walked."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                             http.client.RemoteDisconnected)):
            return True
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or seen.__context__ or inner
    return False
