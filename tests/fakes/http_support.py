"""HTTP plumbing shared by the local fake servers in ``tests/fakes``.

The fakes model different providers (Google Calendar, Microsoft identity + Graph), but they are
served, instrumented and driven the same way: a threaded server on 127.0.0.1, injected faults, a
request log, a JSON control namespace under ``/_fake/``, notifications POSTed from a background
thread, and a ``python -m`` entry point that prints ``READY ...`` for a parent process.  That
machinery lives here once so the fakes only hold what their provider does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

#: the path prefix of the control namespace: ``POST /_fake/<command>`` with a JSON object of arguments
CONTROL_PREFIX = "/_fake/"
LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]

HandlerT = TypeVar("HandlerT", bound=BaseHTTPRequestHandler)
JobT = TypeVar("JobT")
RecordT = TypeVar("RecordT")


def reason_phrase(status: int, default: str = "Status") -> str:
    """The standard reason phrase for ``status`` (for status lines the fakes write themselves, e.g. in batches)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return default


def json_object(body: bytes, *, name: str = "the body") -> dict[str, Any]:
    """``body`` parsed as a JSON object (empty means ``{}``); ``ValueError`` otherwise, for the caller to word."""
    value = json.loads(body or b"{}")
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object")
    return value


# ---------------------------------------------------------------------------------------------- responses
@dataclass
class Response:
    """What a fake answers: a status, a body (dict -> JSON, bytes -> raw, None -> empty) and headers.

    Providers label JSON differently, so each fake subclasses this with its ``json_content_type``.
    """

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    json_content_type: ClassVar[str] = "application/json"

    def encode(self) -> tuple[bytes, dict[str, str]]:
        """The bytes on the wire and the headers to send with them (Content-Type for JSON, Content-Length)."""
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            data = self.body
        elif self.body is None:
            data = b""
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", self.json_content_type)
        headers["Content-Length"] = str(len(data))
        return data, headers


# ---------------------------------------------------------------------------------------------- request log
@dataclass
class RequestRecord:
    """One request (or batch part) a fake answered; ``status`` 0 means it was dropped."""

    method: str
    path: str
    user: str | None
    status: int
    in_batch: bool = False


def count_requests(records: Iterable[RequestRecord], method: str | None = None, path_contains: str = "", *,
                   include_batch_parts: bool = False, only_batch_parts: bool = False) -> int:
    """How many ``records`` match: top-level requests, plus batch parts if asked, or batch parts alone."""
    return sum(
        1
        for r in records
        if (method is None or r.method == method)
        and path_contains in r.path
        and (include_batch_parts or only_batch_parts or not r.in_batch)
        and (r.in_batch or not only_batch_parts)
    )


# ---------------------------------------------------------------------------------------------- injected faults
@dataclass
class Fault:
    """One injected fault; it is taken by the first request whose kind is in ``where``'s accept list and whose
    path contains ``path_contains``."""

    where: str = "request"
    path_contains: str = ""
    status: int = 0
    code: str = ""
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0

    def retry_after_headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": f"{self.retry_after:g}"}


class FaultQueues:
    """The ``fail_next`` / ``slow_next`` / ``drop_next`` queues of a fake.

    Handler threads take faults concurrently, so the queues have their own lock; each fake decides
    which requests may take which fault and in what order (a drop, say, never uses up a failure).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fails: list[Fault] = []
        self._slows: list[Fault] = []
        self._drops: list[Fault] = []
        # random faults on top of the queues: (rate, rng, failures to pick from, share of drops)
        self._random: tuple[float, random.Random, tuple[Fault, ...], float] | None = None

    def set_random(self, rate: float, failures: tuple[Fault, ...], *, drops: float = 0.25, seed: int = 0) -> None:
        """From now on a share ``rate`` of API requests fail at random (with one of ``failures``,
        or, for a share ``drops`` of them, by a dropped connection); ``rate = 0`` stops it."""
        with self._lock:
            self._random = (rate, random.Random(seed), failures, drops) if rate > 0 else None

    def _roll(self, accept: tuple[str, ...], drop: bool) -> Fault | None:
        with self._lock:
            if self._random is None or not ({"request", "part", "any"} & set(accept)):
                return None
            rate, rng, failures, drops = self._random
            if rng.random() >= rate:
                return None
            if rng.random() < drops:
                return Fault() if drop else None
            return None if drop else rng.choice(failures)

    def add_failures(self, n: int, status: int, code: str, message: str, retry_after: float | None = None, *,
                     where: str = "request", path_contains: str = "") -> None:
        with self._lock:
            self._fails.extend(Fault(where, path_contains, status=status, code=code, message=message,
                                     retry_after=retry_after) for _ in range(n))

    def add_delays(self, n: int, seconds: float, *, where: str = "request", path_contains: str = "") -> None:
        with self._lock:
            self._slows.extend(Fault(where, path_contains, seconds=seconds) for _ in range(n))

    def add_drops(self, n: int, *, where: str = "request", path_contains: str = "") -> None:
        with self._lock:
            self._drops.extend(Fault(where, path_contains) for _ in range(n))

    def take_failure(self, path: str, accept: tuple[str, ...] = ("request",)) -> Fault | None:
        return self._take(self._fails, path, accept) or self._roll(accept, drop=False)

    def take_delay(self, path: str, accept: tuple[str, ...] = ("request",)) -> Fault | None:
        return self._take(self._slows, path, accept)

    def take_drop(self, path: str, accept: tuple[str, ...] = ("request",)) -> Fault | None:
        return self._take(self._drops, path, accept) or self._roll(accept, drop=True)

    def _take(self, faults: list[Fault], path: str, accept: tuple[str, ...]) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(faults):
                if fault.where in accept and fault.path_contains in path:
                    return faults.pop(index)
        return None


# ---------------------------------------------------------------------------------------------- serving
class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 whose request threads never keep the process alive."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__((LOOPBACK, port), handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every response on loopback.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address


class BackgroundServer:
    """Runs ``serve_forever`` on a daemon thread, so the test (or the CLI) keeps its own thread."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def handler_for(handler: type[HandlerT], fake: object) -> type[HandlerT]:
    """A subclass of ``handler`` that finds ``fake`` as ``server_fake`` (the stdlib makes a handler per request)."""
    return type(handler.__name__, (handler,), {"server_fake": fake})


class FakeRequestHandler(BaseHTTPRequestHandler):
    """Keep-alive HTTP/1.1 without access logging; every method goes to ``respond`` with the body already read."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by stdlib
        pass

    def respond(self, path: str, body: bytes) -> None:
        """Answer the request for ``path`` (the target without its query) with ``send`` (or close the connection)."""
        raise NotImplementedError

    def _respond(self) -> None:
        body = self.read_body()
        self.respond(urlsplit(self.path).path, body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _respond

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding (trailers are skipped)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, response: Response) -> None:
        data, headers = response.encode()
        try:
            self.send_response(response.status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. timed out on slow_next)
            self.close_connection = True


# ---------------------------------------------------------------------------------------------- TLS
class TLSLoopbackServer(LoopbackServer):
    """A :class:`LoopbackServer` that speaks TLS with ``context`` (the handshake runs on the handler thread)."""

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


class ThrowawayCA:
    """A ``trustme`` test CA made for one fake: its bundle in a temporary directory (``ca_bundle_path``, for
    ``verify=``) and a server context with a certificate for 127.0.0.1 and localhost.  ``remove()`` deletes the
    directory."""

    def __init__(self, prefix: str) -> None:
        import trustme  # a test dependency; only fakes that serve TLS need it

        ca = trustme.CA()
        server_cert = ca.issue_cert(LOOPBACK, "localhost")
        self.directory = tempfile.mkdtemp(prefix=prefix)
        self.ca_bundle_path = f"{self.directory}/ca.pem"
        ca.cert_pem.write_to_path(self.ca_bundle_path)
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(self.server_context)

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this CA (for httpx, urllib, http.client, ...)."""
        return ssl.create_default_context(cafile=self.ca_bundle_path)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- notifications
class Courier(Generic[JobT, RecordT]):
    """Delivers queued notifications from one background thread and keeps a record of each.

    A fake queues while holding its lock and never calls a receiver from a request thread, so a
    receiver that calls back into the fake cannot deadlock it.  ``deliver`` returns the record to
    keep, or None to keep nothing.
    """

    def __init__(self, deliver: Callable[[JobT], RecordT | None], name: str) -> None:
        self.records: list[RecordT] = []
        self._deliver = deliver
        self._name = name
        self._queue: queue.Queue[JobT | None] = queue.Queue()
        self._recorded = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def put(self, job: JobT) -> None:
        self._queue.put(job)

    def stop(self, timeout: float) -> None:
        """Finish after the jobs queued so far (``deliver`` decides whether a stopping fake still sends)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=timeout)
            self._thread = None

    def wait_for(self, n: int, timeout: float) -> list[RecordT]:
        """Wait until at least ``n`` records exist; a copy of them (TimeoutError if they do not come)."""
        with self._recorded:
            if not self._recorded.wait_for(lambda: len(self.records) >= n, timeout=timeout):
                raise TimeoutError(f"{len(self.records)} of {n} notifications after {timeout:g}s")
            return list(self.records)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            record = self._deliver(job)
            if record is None:
                continue
            with self._recorded:
                self.records.append(record)
                self._recorded.notify_all()


# ---------------------------------------------------------------------------------------------- another process
class ControlError(Exception):
    """A ``/_fake/`` control command was refused (unknown command, bad arguments, or an API error)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def call_control(base_url: str, command: str, args: dict[str, Any] | None = None, *, timeout: float = 60.0,
                 context: ssl.SSLContext | None = None) -> Any:
    """Run one test hook of the fake at ``base_url`` (``POST /_fake/<command>``) and return its JSON result.

    An ``https`` fake needs ``context`` trusting its CA.
    """
    target = urlsplit(base_url)
    host = target.hostname or LOOPBACK
    conn = (http.client.HTTPSConnection(host, target.port or 443, timeout=timeout, context=context)
            if target.scheme == "https" else http.client.HTTPConnection(host, target.port or 80, timeout=timeout))
    try:
        conn.request("POST", f"{CONTROL_PREFIX}{command}", body=json.dumps(args or {}).encode(),
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = json.loads(response.read() or b"{}")
    finally:
        conn.close()
    if response.status != 200:
        raise ControlError(response.status, payload)
    return payload


@contextlib.contextmanager
def ready_subprocess(module: str, args: Sequence[str], *, startup_timeout: float = 30.0) -> Iterator[list[str]]:
    """Run ``python -m <module> <args>`` from the repository and yield the words after ``READY`` on its first line.

    The process is terminated (then killed if need be) when the block ends.
    """
    command = [sys.executable, "-m", module, *args]
    with subprocess.Popen(command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          text=True) as process:
        try:
            first_line: list[str] = []
            stdout = process.stdout
            assert stdout is not None
            # read on a thread: a fake that hangs before printing must not hang the caller
            reader = threading.Thread(target=lambda: first_line.append(stdout.readline()), daemon=True)
            reader.start()
            reader.join(startup_timeout)
            words = (first_line[0] if first_line else "").split()
            if words[:1] != ["READY"] or len(words) < 2:
                raise RuntimeError(f"the fake did not start (exit code {process.poll()}, said {first_line!r})")
            yield words[1:]
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve_until_signalled(start: Callable[[], object], stop: Callable[[], None], ready_line: Callable[[], str]) -> int:
    """The body of a fake's ``python -m`` entry point: start it, print its ``READY ...`` line (the parent's cue that
    it is serving), serve until SIGTERM/SIGINT, then stop it cleanly (exit code 0)."""
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start()
    try:
        print(ready_line(), flush=True)
        while not done.wait(0.5):
            pass
    finally:
        stop()
    return 0
