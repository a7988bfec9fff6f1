"""Serving the fake over HTTP on 127.0.0.1: starting and stopping it, and the request handler that sorts requests
into the control namespace, ``/token``, batches and API calls, applying latency and injected faults first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.google_calendar.watch import WatchMixin
from tests.fakes.http_support import (
    CONTROL_PREFIX,
    BackgroundServer,
    FakeRequestHandler,
    LoopbackServer,
    RequestRecord,
    handler_for,
)

if TYPE_CHECKING:
    from tests.fakes.google_calendar.fake import FakeGoogleCalendar


class ServerMixin(WatchMixin):
    """Starting and stopping the server (and the notification courier) around a test."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._serving: BackgroundServer | None = None

    def start(self, port: int = 0) -> Self:
        self._closing.clear()
        self._serving = BackgroundServer(LoopbackServer(port, handler_for(_Handler, self)), "fake-google-calendar")
        self.base_url = f"http://127.0.0.1:{self._serving.port}"
        self._courier.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        if self._serving is not None:
            self._serving.stop()
            self._serving = None
        self._courier.stop(timeout=self.notification_timeout + 1)

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
                response = fake._token(body)
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
