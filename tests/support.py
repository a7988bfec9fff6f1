"""Small helpers shared by tests and benchmarks."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from connectors.base import BadPush, PushRequest

if TYPE_CHECKING:
    from syncd.service.push import PushChannels


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PushHook:
    """``/v1/hooks/<provider>`` without the rest of the API: a plain HTTP server on loopback
    that reads each request with the provider's push parser and hands the notices to
    `PushChannels.receive`, as the API's hook route does. For tests and benchmarks that
    need a provider's notifications (and its validation handshake) but not the daemon.
    ``push`` is set once the channels exist; until then requests are answered 503."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.push: PushChannels | None = None
        self.received = 0  # notices handed to `receive`
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status, text = hook.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/hooks/{provider}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="push-hook", daemon=True)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        push = self.push
        receiver = push.receiver(self.provider) if push is not None else None
        if push is None or receiver is None:
            return 503, "not ready"
        try:
            reply = receiver.parse(PushRequest(headers, dict(parse_qsl(urlsplit(path).query)), body))
        except BadPush as exc:
            return 400, str(exc)
        refused = push.receive(reply.notices) if reply.notices else 0
        with self._lock:
            self.received += len(reply.notices) - refused
        if refused and reply.refused_status is not None:
            return reply.refused_status, "unknown push channel or wrong channel token"
        return reply.status, reply.text

    def __enter__(self) -> PushHook:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
