"""Serving the fake: HTTPS on 127.0.0.1 with a certificate from a throw-away ``trustme`` CA, the request handler
that sorts requests into identity (token, authorization endpoint and consent page, discovery, keys), ``$batch``,
Graph calls and the control namespace, and applies latency and injected faults (drops, delays, failures) before
anything else (never to discovery or the authorization endpoint)."""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from tests.fakes.graph.common import GraphError, RequestRecord, _Response
from tests.fakes.graph.identity import _OAuthError
from tests.fakes.graph.notifications import NotifierMixin
from tests.fakes.http_support import BackgroundServer, FakeRequestHandler, ThrowawayCA, TLSLoopbackServer, handler_for

if TYPE_CHECKING:
    from tests.fakes.graph.fake import FakeGraph


class ServerMixin(NotifierMixin):
    """Starting and stopping the server (and the notification courier) around a test."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._serving: BackgroundServer | None = None
        self._ca: ThrowawayCA | None = None
        self.ca_bundle_path = ""

    def start(self) -> Self:
        self._ca = ThrowawayCA("fake-graph-ca-")
        self.ca_bundle_path = self._ca.ca_bundle_path
        server = TLSLoopbackServer(self.port, handler_for(_Handler, self), self._ca.server_context)
        self._serving = BackgroundServer(server, "fake-graph")
        self.base_url = f"https://127.0.0.1:{self._serving.port}"
        self._stopping.clear()
        self._courier.start()
        return self

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self._stopping.set()  # queued notifications are dropped, not delivered
        self._courier.stop(timeout=10)
        if self._ca is not None:
            self._ca.remove()
            self._ca = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the fake's test CA (for httpx, urllib, ...)."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)


class _Handler(FakeRequestHandler):
    server_fake: FakeGraph
    timeout = 30

    def respond(self, path: str, body: bytes) -> None:
        fake = self.server_fake
        segments = [s for s in path.split("/") if s]
        if segments[:1] == ["_fake"] and len(segments) == 2 and self.command == "POST":
            self.send(fake._control(segments[1], body))
            return
        if fake.latency:
            time.sleep(fake.latency)
        kind = _kind(segments)
        where = "token" if kind == "token" else "request"
        faulty = kind in ("graph", "token")
        drop = fake._faults.take_drop(path, (where,)) if faulty else None
        slow = fake._faults.take_delay(path, (where,)) if faulty and drop is None else None
        if drop is not None:
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, 0, False, kind))
            self.close_connection = True
            return
        if slow is not None:
            time.sleep(slow.seconds)
        try:
            response = self._route(fake, kind, segments, path, body)
        except GraphError as err:
            response = err.response()
        except Exception as exc:  # noqa: BLE001 - a bug in the fake should be a visible 500
            response = GraphError(500, "InternalServerError", f"fake crashed: {exc!r}").response()
        self.send(response)

    def _route(self, fake: FakeGraph, kind: str, segments: list[str], path: str, body: bytes) -> _Response:
        if kind == "token":
            response = self._token(fake, segments, path, body)
        elif kind == "authorize":
            response = fake._authorize_endpoint(self.command, segments[0], segments[4:], urlsplit(self.path).query,
                                                body)
        elif kind == "discovery":
            response = self._discovery(fake, segments, path)
        elif segments == ["v1.0", "$batch"] and self.command == "POST":
            kind = "batch"
            response = self._batch(fake, path, body)
        else:
            return fake._dispatch(self.command, self.path, self.headers, body, in_batch=False)
        with fake._lock:
            fake.requests.append(RequestRecord(self.command, path, None, response.status, False, kind))
        return response

    def _token(self, fake: FakeGraph, segments: list[str], path: str, body: bytes) -> _Response:
        fault = fake._faults.take_failure(path, ("token",))
        if fault is not None:
            response = _OAuthError(fault.status, fault.code, 50000, fault.message).response()
            response.headers.update(fault.retry_after_headers())
            return response
        if self.command != "POST":
            return _OAuthError(405, "invalid_request", 900561, "The endpoint only accepts POST requests.").response()
        return fake._token(segments[0], self.headers, body)

    @staticmethod
    def _discovery(fake: FakeGraph, segments: list[str], path: str) -> _Response:
        if segments[-2:] == [".well-known", "openid-configuration"] and len(segments) == 4 and segments[1] == "v2.0":
            return fake._openid_configuration(segments[0])
        if segments == ["common", "discovery", "instance"]:
            return fake._instance_discovery()
        if segments[1:] == ["discovery", "v2.0", "keys"]:
            return fake._jwks(segments[0])
        return GraphError(404, "NotFound", f"No such endpoint {path}").response()

    def _batch(self, fake: FakeGraph, path: str, body: bytes) -> _Response:
        fault = fake._faults.take_failure(path, ("request",))
        if fault is not None:
            return GraphError(fault.status, fault.code, fault.message, headers=fault.retry_after_headers()).response()
        try:
            with fake._lock:
                fake._authenticate(self.headers)
            return fake._batch(self.headers, body)
        except GraphError as err:
            return err.response()


def _kind(segments: list[str]) -> str:
    """Which part of the fake a path belongs to: ``graph``, ``token``, ``authorize`` or ``discovery``."""
    if segments[:1] == ["v1.0"]:
        return "graph"
    if segments[1:] == ["oauth2", "v2.0", "token"]:
        return "token"
    if segments[1:4] == ["oauth2", "v2.0", "authorize"]:
        return "authorize"
    return "discovery"
