"""Serving the fake: HTTPS on 127.0.0.1 with a certificate from a throw-away ``trustme`` CA, the request handler
that sorts requests into identity, discovery, ``$batch``, Graph calls and the control namespace, and applies
latency and injected faults (drops, delays, failures) before anything else."""

from __future__ import annotations

import shutil
import socket
import ssl
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Self

import trustme

from tests.fakes.graph.common import GraphError, RequestRecord, _Response
from tests.fakes.graph.identity import _OAuthError
from tests.fakes.graph.notifications import NotifierMixin
from tests.fakes.http_support import BackgroundServer, FakeRequestHandler, LoopbackServer, handler_for

if TYPE_CHECKING:
    from tests.fakes.graph.fake import FakeGraph


class ServerMixin(NotifierMixin):
    """Starting and stopping the server (and the notification courier) around a test."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._serving: BackgroundServer | None = None
        self._ca_dir: str | None = None
        self.ca_bundle_path = ""

    def start(self) -> Self:
        ca = trustme.CA()
        server_cert = ca.issue_cert("127.0.0.1", "localhost")
        self._ca_dir = tempfile.mkdtemp(prefix="fake-graph-ca-")
        self.ca_bundle_path = f"{self._ca_dir}/ca.pem"
        ca.cert_pem.write_to_path(self.ca_bundle_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        self._serving = BackgroundServer(_TLSServer(self.port, handler_for(_Handler, self), context), "fake-graph")
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
        if self._ca_dir is not None:
            shutil.rmtree(self._ca_dir, ignore_errors=True)
            self._ca_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the fake's test CA (for httpx, urllib, ...)."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)


class _TLSServer(LoopbackServer):
    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        self.ssl_context = context
        super().__init__(port, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # the TLS handshake happens in the handler thread, so a slow client cannot stall accept()
        return self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


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
        kind = "graph"
        if segments[:1] != ["v1.0"]:
            kind = "token" if segments[1:] == ["oauth2", "v2.0", "token"] else "discovery"
        where = "token" if kind == "token" else "request"
        drop = fake._faults.take_drop(path, (where,)) if kind != "discovery" else None
        slow = fake._faults.take_delay(path, (where,)) if kind != "discovery" and drop is None else None
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
            fault = fake._faults.take_failure(path, ("token",))
            if fault is not None:
                response = _OAuthError(fault.status, fault.code, 50000, fault.message).response()
                response.headers.update(fault.retry_after_headers())
            elif self.command != "POST":
                response = _OAuthError(405, "invalid_request", 900561, "The endpoint only accepts POST requests.") \
                    .response()
            else:
                response = fake._token(segments[0], self.headers, body)
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "token"))
            return response
        if kind == "discovery":
            if segments[-2:] == [".well-known", "openid-configuration"] and len(segments) == 4 \
                    and segments[1] == "v2.0":
                response = fake._openid_configuration(segments[0])
            elif segments == ["common", "discovery", "instance"]:
                response = fake._instance_discovery()
            elif segments[1:] == ["discovery", "v2.0", "keys"]:
                response = _Response(200, {"keys": []})
            else:
                response = GraphError(404, "NotFound", f"No such endpoint {path}").response()
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "discovery"))
            return response
        if segments == ["v1.0", "$batch"] and self.command == "POST":
            fault = fake._faults.take_failure(path, ("request",))
            if fault is not None:
                response = GraphError(fault.status, fault.code, fault.message,
                                      headers=fault.retry_after_headers()).response()
            else:
                try:
                    with fake._lock:
                        fake._authenticate(self.headers)
                    response = fake._batch(self.headers, body)
                except GraphError as err:
                    response = err.response()
            with fake._lock:
                fake.requests.append(RequestRecord(self.command, path, None, response.status, False, "batch"))
            return response
        return fake._dispatch(self.command, self.path, self.headers, body, in_batch=False)

