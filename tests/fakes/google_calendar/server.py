"""Serving the fake on 127.0.0.1 (plain HTTP, or HTTPS with a throw-away ``trustme`` CA when made with ``tls=True``):
starting and stopping it, and the request handler that sorts requests into the control namespace, ``/token``, the
browser side of OAuth (consent page, certificates), batches and API calls, applying latency and injected faults
first."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Self

from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.google_calendar.watch import WatchMixin
from tests.fakes.http_support import (
    CONTROL_PREFIX,
    BackgroundServer,
    FakeRequestHandler,
    LoopbackServer,
    RequestRecord,
    ThrowawayCA,
    TLSLoopbackServer,
    handler_for,
)

if TYPE_CHECKING:
    from tests.fakes.google_calendar.fake import FakeGoogleCalendar


class ServerMixin(WatchMixin):
    """Starting and stopping the server (and the notification courier) around a test.

    ``tls=True`` serves HTTPS with a certificate from a CA made for this fake: clients verify against
    ``ca_bundle_path`` (requests, google-auth-oauthlib) or ``client_ssl_context()``.  requests-oauthlib refuses a plain
    ``http`` authorization or token endpoint, so the consent flow needs it; everything else works either way.
    """

    def __init__(self, *, tls: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tls = tls
        self.ca_bundle_path = ""
        self._ca: ThrowawayCA | None = None
        self._serving: BackgroundServer | None = None

    def start(self, port: int = 0) -> Self:
        self._closing.clear()
        handler = handler_for(_Handler, self)
        if self.tls:
            self._ca = ThrowawayCA("fake-google-ca-")
            self.ca_bundle_path = self._ca.ca_bundle_path
            server: LoopbackServer = TLSLoopbackServer(port, handler, self._ca.server_context)
        else:
            server = LoopbackServer(port, handler)
        self._serving = BackgroundServer(server, "fake-google-calendar")
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self._serving.port}"
        self._courier.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self._courier.stop(timeout=self.notification_timeout + 1)
        if self._ca is not None:
            self._ca.remove()
            self._ca = None

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the fake's test CA (for httpx, urllib, ...); only while serving with TLS."""
        if self._ca is None:
            raise RuntimeError("the fake is not serving HTTPS (make it with tls=True and start it)")
        return self._ca.client_context()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(FakeRequestHandler):
    server_fake: FakeGoogleCalendar
    timeout = 10

    def respond(self, path: str, body: bytes) -> None:
        fake = self.server_fake
        if path.startswith(CONTROL_PREFIX):
            self.send(fake._control(self.command, path.removeprefix(CONTROL_PREFIX), body))
            return
        if fake.latency:
            fake._pause(fake.latency)
        try:
            if path == "/token" and self.command == "POST":
                response = fake._token(body, self.headers)
            elif (page := fake._browser_endpoint(self.command, self.path, body)) is not None:
                response = page
            else:
                delay, drop, fault = fake._take_faults(path)
                if delay:
                    fake._pause(delay)
                if drop:
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, 0))
                    self.close_connection = True  # no status line at all: the client sees the socket close
                    return
                if fault is not None:
                    response = fault
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, fault.status))
                elif path == "/batch/calendar/v3" and self.command == "POST":
                    response = fake._batch(self.headers, body)
                    with fake._lock:
                        fake.requests.append(RequestRecord(self.command, path, None, response.status))
                else:
                    response = fake._dispatch(self.command, self.path, self.headers, body, in_batch=False)
        except ApiError as err:
            response = _Response(err.status, err.body(), dict(err.headers))
        except Exception as exc:  # noqa: BLE001 - a bug in the fake should be a visible 500
            response = _Response(500, ApiError(500, "backendError", f"fake crashed: {exc!r}").body())
        self.send(response)
