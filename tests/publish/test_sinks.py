"""Sinks: webhook delivery against a real loopback HTTP server, signatures, backoff, stdout."""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from syncd import __version__
from syncd.core.errors import Bug, ConfigError, RateLimited, TransientError
from syncd.publish.build import build_sink
from syncd.publish.signing import sign, standard_headers, verify_signature
from syncd.publish.sink import DeliveryThrottled, PermanentDeliveryError, retry_delay
from syncd.publish.stdout import StdoutSink
from syncd.publish.webhook import WebhookSink
from tests.known_secrets import register

SECRET = "whsec_c3luY2QgdGVzdCB3ZWJob29rIGtleSwgMzIgYnl0ZXM="  # "syncd test webhook key, 32 bytes"
register(SECRET, SECRET.removeprefix("whsec_"))
NOW = 1_700_000_000
EVENT: dict[str, Any] = {
    "id": "evt-1",
    "user": "alice@example.com",
    "status": "away",
    "reason": "ooo_started",
    "block": {"id": "blk-9", "start": "2026-07-01T07:00:00Z", "end": "2026-07-15T07:00:00Z"},
    "effective_at": "2026-07-01T07:00:00Z",
    "note": "Semester – Åsa",
}


# -- a loopback receiver whose replies each test sets ---------------------------------------------


@dataclass
class Reply:
    status: int = 200
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # answer nothing until the test ends (client timeout)
    drop: bool = False  # close the connection without answering


@dataclass
class Received:
    method: str
    path: str
    headers: Message
    body: bytes


class _Server(ThreadingHTTPServer):
    reply: Reply
    received: list[Received]
    release: threading.Event


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(Received(self.command, self.path, self.headers, body))
        reply = self.server.reply
        if reply.hang:
            self.server.release.wait(5)
        if reply.hang or reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status, reply.reason)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        body = b"" if reply.status in (204, 304) else b"ok"  # these carry no body (RFC 9110)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


class Receiver:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.reply = Reply()
        self.server.received = []
        self.server.release = threading.Event()
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01})
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/tok3n?key=q5ecret"

    @property
    def received(self) -> list[Received]:
        return self.server.received

    def reply(self, **kwargs: Any) -> None:
        self.server.reply = Reply(**kwargs)

    def stop(self) -> None:
        self.server.release.set()  # free hanging handlers so server_close can join them
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


_OPEN: list[WebhookSink] = []


@pytest.fixture(autouse=True)
def _close_webhooks() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def webhook(url: str, secret: str | None = SECRET, timeout: float = 2.0) -> WebhookSink:
    sink = WebhookSink("helpdesk", url, secret, timeout, clock=lambda: NOW + 0.7)
    _OPEN.append(sink)
    return sink


def expected_body(event: dict[str, Any] = EVENT) -> bytes:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- what the receiver sees ----------------------------------------------------------------------


def test_posts_compact_utf8_json_with_headers(receiver: Receiver) -> None:
    webhook(receiver.url).deliver(EVENT)

    [got] = receiver.received
    assert got.method == "POST"
    assert got.path == "/hooks/tok3n?key=q5ecret"
    assert got.body == expected_body()
    assert json.loads(got.body.decode("utf-8")) == EVENT
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == f"syncd/{__version__}"
    assert got.headers["Syncd-Event-Id"] == "evt-1"
    assert got.headers["Syncd-Signature"] == sign(SECRET, NOW, got.body)
    for name, value in standard_headers(SECRET, "evt-1", NOW, got.body).items():
        assert got.headers[name] == value
    assert got.headers["Content-Length"] == str(len(got.body))
    transport = {"host", "content-length", "accept-encoding", "connection"}
    ours = {k.lower() for k in got.headers.keys()} - transport
    assert ours == {"content-type", "user-agent", "syncd-event-id", "syncd-signature",
                    "webhook-id", "webhook-timestamp", "webhook-signature"}


def test_without_secret_there_is_no_signature_header(receiver: Receiver) -> None:
    webhook(receiver.url, secret=None).deliver(EVENT)

    [got] = receiver.received
    assert "Syncd-Signature" not in got.headers
    assert "webhook-signature" not in got.headers
    assert got.headers["Syncd-Event-Id"] == "evt-1"


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_delivered(receiver: Receiver, status: int) -> None:
    receiver.reply(status=status)
    webhook(receiver.url).deliver(EVENT)
    assert len(receiver.received) == 1


def test_event_without_id_is_a_bug(receiver: Receiver) -> None:
    with pytest.raises(Bug):
        webhook(receiver.url).deliver({"status": "away"})
    assert receiver.received == []


def test_a_prepared_event_is_sent_as_prepared_signed_as_of_its_instant(receiver: Receiver) -> None:
    sink = webhook(receiver.url)
    sink.prepare([EVENT], NOW + 5)  # told ahead; the sink's clock says NOW + 0.7
    sink.deliver(EVENT)
    sink.deliver(EVENT)  # a repeat (a retry) is encoded afresh

    first, again = receiver.received
    assert first.body == again.body == expected_body()
    assert first.headers["Syncd-Signature"] == sign(SECRET, NOW + 5, first.body)
    assert again.headers["Syncd-Signature"] == sign(SECRET, NOW, again.body)


def test_a_request_prepared_for_an_instant_long_past_is_signed_afresh(receiver: Receiver) -> None:
    sink = webhook(receiver.url)
    sink.prepare([EVENT], NOW - 120)
    sink.deliver(EVENT)
    [got] = receiver.received
    assert got.headers["Syncd-Signature"] == sign(SECRET, NOW, got.body)


# -- signatures ----------------------------------------------------------------------------------


def test_sign_matches_a_fixed_vector() -> None:
    # printf '1700000000.{"id":"evt-1","status":"away"}' | openssl dgst -sha256 -hmac whsec_test
    body = b'{"id":"evt-1","status":"away"}'
    assert sign("whsec_test", 1_700_000_000, body) == (
        "t=1700000000,v1=9aa5c5646ad07eb22ca215194e1a858a087ab3a75e613d4b95d8a00d60b64eec"
    )


def test_received_signature_verifies_and_nothing_else_does(receiver: Receiver) -> None:
    webhook(receiver.url).deliver(EVENT)
    [got] = receiver.received
    header = got.headers["Syncd-Signature"]

    assert verify_signature(SECRET, header, got.body, now=NOW)
    assert verify_signature(SECRET, header, got.body, now=NOW + 300)
    assert not verify_signature("whsec_other", header, got.body, now=NOW)
    assert not verify_signature(SECRET, header, got.body.replace(b"away", b"avai"), now=NOW)
    assert not verify_signature(SECRET, header, got.body + b" ", now=NOW)
    assert not verify_signature(SECRET, header, got.body, now=NOW + 301)  # stale: replay window closed
    assert not verify_signature(SECRET, header, got.body, now=NOW - 301)  # from the future
    assert not verify_signature(SECRET, header, got.body, now=NOW + 10, tolerance=5)


def test_verify_accepts_any_of_several_v1_during_secret_rotation() -> None:
    body = b"{}"
    old = sign("old", NOW, body).split(",")[1]
    new = sign("new", NOW, body)
    assert verify_signature("old", f"{new},{old}", body, now=NOW)
    assert verify_signature("new", f"{new},{old}", body, now=NOW)
    assert not verify_signature("third", f"{new},{old}", body, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"v1={sign(SECRET, NOW, b'{}').split('v1=')[1]}",  # no timestamp
        f"t={NOW}",  # no signature
        f"t=abc,v1={sign(SECRET, NOW, b'{}').split('v1=')[1]}",
        f"t=-{NOW},v1=00",
        f"t={NOW},t={NOW},v1={sign(SECRET, NOW, b'{}').split('v1=')[1]}",  # ambiguous timestamp
        f"t={NOW},v1=ÅÄÖ",
        "t=١٢٣,v1=00",  # non-ASCII digits
    ],
)
def test_verify_rejects_malformed_headers_without_raising(header: str) -> None:
    assert verify_signature(SECRET, header, b"{}", now=NOW) is False


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_and_408_are_transient(receiver: Receiver, status: int) -> None:
    receiver.reply(status=status)
    with pytest.raises(TransientError) as info:
        webhook(receiver.url).deliver(EVENT)
    assert not isinstance(info.value, RateLimited)
    assert f"HTTP {status}" in str(info.value)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_carried(receiver: Receiver, status: int) -> None:
    receiver.reply(status=status, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as info:
        webhook(receiver.url).deliver(EVENT)
    assert isinstance(info.value, DeliveryThrottled)
    assert isinstance(info.value, RateLimited)
    assert info.value.retry_after == 7.0
    assert info.value.status == status


def test_retry_after_http_date_is_relative_to_the_clock(receiver: Receiver) -> None:
    receiver.reply(status=429, headers={"Retry-After": formatdate(NOW + 120, usegmt=True)})
    with pytest.raises(DeliveryThrottled) as info:
        webhook(receiver.url).deliver(EVENT)
    assert info.value.retry_after == pytest.approx(119.3)  # the clock reads NOW + 0.7


@pytest.mark.parametrize("value", ["soon", "-5", ""])
def test_429_with_unusable_or_no_retry_after_is_still_throttled(receiver: Receiver, value: str) -> None:
    receiver.reply(status=429, headers={"Retry-After": value} if value else {})
    with pytest.raises(DeliveryThrottled) as info:
        webhook(receiver.url).deliver(EVENT)
    assert info.value.retry_after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_other_4xx_are_permanent(receiver: Receiver, status: int) -> None:
    receiver.reply(status=status)
    with pytest.raises(PermanentDeliveryError) as info:
        webhook(receiver.url).deliver(EVENT)
    assert not isinstance(info.value, TransientError)
    assert info.value.status == status


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.reply(status=302, headers={"Location": "/elsewhere"})
    with pytest.raises(PermanentDeliveryError, match="redirect"):
        webhook(receiver.url).deliver(EVENT)
    assert len(receiver.received) == 1


def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransientError, match="cannot reach 127.0.0.1"):
        webhook(f"http://127.0.0.1:{port}/hook").deliver(EVENT)


def test_slow_receiver_times_out_as_transient(receiver: Receiver) -> None:
    receiver.reply(hang=True)
    with pytest.raises(TransientError, match="timed out"):
        webhook(receiver.url, timeout=0.3).deliver(EVENT)


def test_connection_closed_without_answer_is_transient(receiver: Receiver) -> None:
    receiver.reply(drop=True)
    with pytest.raises(TransientError, match="no response"):
        webhook(receiver.url).deliver(EVENT)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=500, reason=f"boom {SECRET}"),
        Reply(status=400, reason=f"bad signature, expected {SECRET}"),
        Reply(status=429, reason=SECRET, headers={"Retry-After": "3"}),
        Reply(status=503, reason="x" * 500),
        Reply(drop=True),
    ],
)
def test_error_messages_are_one_short_line_without_secrets_or_body(receiver: Receiver, reply: Reply) -> None:
    receiver.server.reply = reply
    with pytest.raises((TransientError, PermanentDeliveryError)) as info:
        webhook(receiver.url).deliver(EVENT)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message
    assert len(message) <= 300
    assert message.startswith("webhook 'helpdesk': ")
    for leak in (SECRET, "alice@example.com", "evt-1", "tok3n", "q5ecret"):
        assert leak not in message


# -- backoff -------------------------------------------------------------------------------------


def test_retry_delay_is_full_jitter_within_the_doubling_ceiling() -> None:
    rng = random.Random(1234)
    for attempt in range(1, 20):
        ceiling = min(300.0, 1.0 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread over the whole range


def test_retry_delay_custom_base_and_cap() -> None:
    rng = random.Random(7)
    assert all(0.0 <= retry_delay(1, base=0.5, cap=10.0, rng=rng) <= 0.5 for _ in range(100))
    assert all(0.0 <= retry_delay(3, base=0.5, cap=10.0, rng=rng) <= 2.0 for _ in range(100))
    assert all(0.0 <= retry_delay(30, base=0.5, cap=10.0, rng=rng) <= 10.0 for _ in range(100))
    assert 0.0 <= retry_delay(100_000, rng=rng) <= 300.0  # no overflow far past the cap


def test_retry_delay_is_reproducible_with_a_seed_and_rejects_attempt_zero() -> None:
    first = [retry_delay(a, rng=random.Random(42)) for a in range(1, 10)]
    again = [retry_delay(a, rng=random.Random(42)) for a in range(1, 10)]
    assert first == again
    with pytest.raises(ValueError):
        retry_delay(0, rng=random.Random(0))


# -- stdout --------------------------------------------------------------------------------------


def test_stdout_sink_writes_one_json_line_per_event() -> None:
    out = io.StringIO()
    sink = StdoutSink(out)
    sink.deliver(EVENT)
    sink.deliver({"id": "evt-2", "status": "available"})

    lines = out.getvalue().split("\n")
    assert lines[-1] == ""
    assert lines[0] == json.dumps(EVENT, separators=(",", ":"))
    assert [json.loads(line) for line in lines[:-1]] == [EVENT, {"id": "evt-2", "status": "available"}]


def test_stdout_sink_lines_do_not_interleave_across_threads() -> None:
    out = io.StringIO()
    sink = StdoutSink(out)
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        start.wait()
        for i in range(50):
            sink.deliver({"id": f"{n}-{i}", "padding": "x" * 200})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    assert sorted(ids) == sorted(f"{n}-{i}" for n in range(8) for i in range(50))


def test_stdout_sink_defaults_to_the_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with StdoutSink() as sink:
        sink.deliver({"id": "evt-3"})
    assert capsys.readouterr().out == '{"id":"evt-3"}\n'


# -- building from config ------------------------------------------------------------------------


def sink_config(type: str, name: str = "main", **options: Any) -> SimpleNamespace:
    return SimpleNamespace(type=type, name=name, options=options)


def test_build_webhook_and_stdout_sinks() -> None:
    hook = build_sink(
        sink_config("webhook", url="https://hooks.example.com/x", secret=SECRET, timeout=timedelta(seconds=3))
    )
    assert isinstance(hook, WebhookSink)
    assert (hook.name, hook.url, hook.timeout) == ("main", "https://hooks.example.com/x", 3.0)
    assert SECRET not in repr(hook)

    assert isinstance(build_sink(sink_config("stdout", name="log")), StdoutSink)
    assert build_sink(sink_config("webhook", url="http://h/x")).timeout == 10.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "config",
    [
        sink_config("kafka"),
        sink_config("webhook"),
        sink_config("webhook", url="ftp://example.com/x"),
        sink_config("webhook", url="https:///no-host"),
        sink_config("webhook", url="https://h/x", secret=""),
        sink_config("webhook", url="https://h/x", secret=123),
        sink_config("webhook", url="https://h/x", secret="whsec_zz9"),  # 2 bytes
        sink_config("webhook", url="https://h/x", secret="short-plain-secret"),  # 18 bytes
        sink_config("webhook", url="https://h/x", secret="whsec_not base64 at all, not at all"),
        sink_config("webhook", url="https://h/x", timeout=timedelta(0)),
        sink_config("webhook", url="https://h/x", timeout="10s"),
        sink_config("webhook", url="https://h/x", concurrency=0),
        sink_config("webhook", url="https://h/x", ca_bundle=""),
        sink_config("webhook", url="https://h/x", ca_bundle="/nonexistent/ca.pem"),
    ],
)
def test_build_sink_rejects_bad_config(config: SimpleNamespace) -> None:
    with pytest.raises(ConfigError, match="sink 'main'"):
        build_sink(config)


# -- kept-alive connections ----------------------------------------------------------------------


class _KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _KeepAliveServer

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.connection)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts += 1
        self.server.paths.append(self.path)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _KeepAliveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KeepAliveHandler)
        self.connections: list[socket.socket] = []
        self.posts = 0
        self.paths: list[str] = []

    def close_idle(self) -> None:
        """What a receiver does to connections idle past its keep-alive timeout."""
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def keep_alive() -> Iterator[_KeepAliveServer]:
    server = _KeepAliveServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close_idle()
        server.shutdown()
        server.server_close()


def test_one_connection_carries_many_events(keep_alive: _KeepAliveServer) -> None:
    sink = webhook(f"http://127.0.0.1:{keep_alive.server_address[1]}/hook")
    for n in range(5):
        sink.deliver({**EVENT, "id": f"evt-{n}"})
    assert keep_alive.posts == 5
    assert len(keep_alive.connections) == 1
    sink.close()


def test_a_connection_the_receiver_closed_is_replaced_without_losing_the_event(
        keep_alive: _KeepAliveServer) -> None:
    sink = webhook(f"http://127.0.0.1:{keep_alive.server_address[1]}/hook")
    sink.deliver(EVENT)
    keep_alive.close_idle()
    time.sleep(0.05)
    sink.deliver({**EVENT, "id": "evt-2"})
    assert keep_alive.posts == 2
    assert len(keep_alive.connections) == 2
    sink.close()


def test_each_sending_thread_has_its_own_connection(keep_alive: _KeepAliveServer) -> None:
    sink = webhook(f"http://127.0.0.1:{keep_alive.server_address[1]}/hook")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: sink.deliver({**EVENT, "id": f"evt-{n}"}), range(40)))
    assert keep_alive.posts == 40
    assert 1 <= len(keep_alive.connections) <= 4
    sink.close()


def test_a_proxy_from_the_environment_is_used(keep_alive: _KeepAliveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{keep_alive.server_address[1]}")
    sink = webhook("http://hooks.example.invalid:8080/in?key=1")
    sink.deliver(EVENT)
    sink.deliver({**EVENT, "id": "evt-2"})
    assert keep_alive.paths == ["http://hooks.example.invalid:8080/in?key=1"] * 2
    assert len(keep_alive.connections) == 1
