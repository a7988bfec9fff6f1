"""The HTTP transport under google-api-python-client and google-auth-httplib2: httplib2's
``request`` over a ``requests`` session, and the network errors it can raise.

Proxies come from the environment, per request: ``HTTP_PROXY`` and ``HTTPS_PROXY``, with
``NO_PROXY`` honoured (`ProxySession`); nothing else of the environment is taken."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httplib2
import requests
import requests.utils

from connectors.responses import read_body

__all__ = ["NETWORK_ERRORS", "ProxySession", "Transport"]

NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, httplib2.HttpLib2Error, TimeoutError,
                  requests.RequestException)


class ProxySession(requests.Session):
    """A session that takes only its proxies from the environment: ``HTTP_PROXY`` and
    ``HTTPS_PROXY``, per request, with ``NO_PROXY`` honoured. ``trust_env`` stays off, so no
    ``.netrc`` credentials and no ``REQUESTS_CA_BUNDLE`` (it would replace the CA bundle)."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        # {} for a host NO_PROXY names; a session's or request's own proxies win.
        settings["proxies"] = {**requests.utils.get_environ_proxies(url), **(settings.get("proxies") or {})}
        return settings


class Transport:
    """What google-api-python-client and google-auth-httplib2 call (httplib2's ``request``),
    over a requests session: bodies are streamed and refused past `MAX_BODY` (a hostile
    answer cannot take the daemon's memory), and the CA bundle is ours, not the environment's.
    One per thread, like httplib2.Http."""

    def __init__(self, timeout: float, ca_bundle: str | None) -> None:
        self.timeout = timeout
        self.session = ProxySession()  # REQUESTS_CA_BUNDLE would replace our ca_bundle: take only proxies
        self.session.verify = ca_bundle or True

    def request(self, uri: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                redirections: int = 5, connection_type: Any = None, **_kwargs: Any) -> tuple[httplib2.Response, bytes]:
        response = self.session.request(method, uri, data=body, headers=dict(headers or {}), timeout=self.timeout,
                                        stream=True, allow_redirects=redirections > 0)
        content = read_body(response, f"google: {method} {urlsplit(uri).path}")
        info = {key.lower(): value for key, value in response.headers.items()}
        info["status"] = str(response.status_code)
        return httplib2.Response(info), content

    def close(self) -> None:
        self.session.close()
