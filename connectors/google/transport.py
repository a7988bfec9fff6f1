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

from connectors.responses import ProxySession, read_body

__all__ = ["NETWORK_ERRORS", "Transport"]

NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, httplib2.HttpLib2Error, TimeoutError,
                  requests.RequestException)



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
