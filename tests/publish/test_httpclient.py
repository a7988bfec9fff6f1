"""The webhook's HTTP client against scripted loopback servers: answers in unusual but valid
shapes, broken ones, TLS with a CA bundle, and an HTTPS proxy tunnel."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from syncd.publish.httpclient import Answer, CannotConnect, NoAnswer, OneUrlClient, header_lines

Script = Callable[[socket.socket], None]


class Scripted:
    """A loopback server that runs ``script`` on each connection it accepts, in a thread."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.script, self.tls = script, tls
        self.connections = 0
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            if self.tls is None:
                self.script(conn)
                return
            with self.tls.wrap_socket(conn, server_side=True) as secure:
                self.script(secure)

    def close(self) -> None:
        self.listener.close()
        for thread in self._threads:
            thread.join(5)


@contextlib.contextmanager
def scripted(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[Scripted]:
    server = Scripted(script, tls)
    try:
        yield server
    finally:
        server.close()


def read_request(conn: socket.socket) -> bytes:
    """One request: the head, then as many body bytes as Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def answering(*answers: bytes, close: bool = False) -> Script:
    """Answer each request, on whichever connection, with the next of ``answers``; close the
    connection after each answer if asked."""
    queue = iter(answers)

    def script(conn: socket.socket) -> None:
        while read_request(conn):
            answer = next(queue, None)
            if answer is None:
                return
            conn.sendall(answer)
            if close:
                return
    return script


def post(url: str, *, times: int = 1, timeout: float = 2.0, **kwargs: object) -> list[Answer]:
    async def run() -> list[Answer]:
        client = OneUrlClient(url, timeout, headers={"Content-Type": "application/json"}, **kwargs)  # type: ignore[arg-type]
        try:
            return [await client.post(b'{"id":"e"}', {"Syncd-Event-Id": f"e{n}"}) for n in range(times)]
        finally:
            client.close()
    return asyncio.run(run())


NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


def test_the_request_is_one_post_with_the_fixed_and_the_per_request_headers() -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        conn.sendall(NO_CONTENT)
    with scripted(script) as server:
        [answer] = post(f"http://127.0.0.1:{server.port}/in?k=1")
    assert answer == Answer(204, "No Content", None)
    assert seen == [f"POST /in?k=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
                    "Syncd-Event-Id: e0\r\nContent-Length: 10\r\n\r\n{\"id\":\"e\"}".encode()]


def test_an_interim_100_answer_is_skipped() -> None:
    with scripted(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + NO_CONTENT)) as server:
        assert [a.status for a in post(f"http://127.0.0.1:{server.port}/", times=1)] == [204]


def test_a_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    with scripted(answering(chunked, chunked, chunked)) as server:
        assert [a.status for a in post(f"http://127.0.0.1:{server.port}/", times=3)] == [200] * 3
    assert server.connections == 1


def test_an_answer_ended_by_closing_the_connection_counts() -> None:
    closing = b"HTTP/1.0 200 OK\r\n\r\nfine, thanks"
    with scripted(answering(closing, closing, close=True)) as server:
        assert [a.status for a in post(f"http://127.0.0.1:{server.port}/", times=2)] == [200, 200]
    assert server.connections == 2  # not kept: its end was the end of the connection


def test_a_long_answer_is_not_read_to_the_end() -> None:
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n" + b"x" * 200_000
    with scripted(answering(huge, NO_CONTENT)) as server:
        assert [a.status for a in post(f"http://127.0.0.1:{server.port}/", times=2)] == [200, 204]
    assert server.connections == 2


def test_retry_after_and_the_reason_are_read() -> None:
    with scripted(answering(b"HTTP/1.1 503 Busy Right Now\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n")) as server:
        assert post(f"http://127.0.0.1:{server.port}/") == [Answer(503, "Busy Right Now", "7")]


@pytest.mark.parametrize("garbage", [b"SMTP ready\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n",
                                     b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"])
def test_a_broken_answer_is_no_answer(garbage: bytes) -> None:
    with scripted(answering(garbage)) as server, pytest.raises(NoAnswer, match="a broken answer"):
        post(f"http://127.0.0.1:{server.port}/")


def test_a_connection_closed_before_the_answer_is_no_answer() -> None:
    with scripted(lambda conn: read_request(conn) and None) as server, \
            pytest.raises(NoAnswer, match="closed without an answer"):
        post(f"http://127.0.0.1:{server.port}/")


def test_a_silent_receiver_times_out() -> None:
    release = threading.Event()
    with scripted(lambda conn: (read_request(conn), release.wait(5)) and None) as server:
        with pytest.raises(NoAnswer, match="timed out"):
            post(f"http://127.0.0.1:{server.port}/", timeout=0.3)
        release.set()


def test_a_timeout_on_a_kept_alive_connection_is_not_sent_again() -> None:
    """The receiver may have the request: whether to send it again is the caller's choice."""
    requests: list[bytes] = []
    release = threading.Event()

    def script(conn: socket.socket) -> None:
        while request := read_request(conn):
            requests.append(request)
            if len(requests) == 1:
                conn.sendall(NO_CONTENT)
            else:
                release.wait(5)
    with scripted(script) as server:
        with pytest.raises(NoAnswer, match="timed out"):
            post(f"http://127.0.0.1:{server.port}/", times=2, timeout=0.3)
        release.set()
    assert len(requests) == 2


def test_headers_that_would_break_the_request_are_refused() -> None:
    assert header_lines({"A": "b"}) == b"A: b\r\n"
    for bad in ({"A": "b\r\nX-Injected: 1"}, {"A B": "c"}, {"A": "nul\0"}, {"": "x"}):
        with pytest.raises(ValueError, match="cannot be sent"):
            header_lines(bad)


# -- TLS and a proxy tunnel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def bundle(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_for(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def test_https_with_a_ca_bundle(ca: trustme.CA, bundle: str) -> None:
    with scripted(answering(NO_CONTENT, NO_CONTENT), tls_for(ca, "127.0.0.1")) as server:
        assert [a.status for a in post(f"https://127.0.0.1:{server.port}/", times=2, ca_bundle=bundle)] == [204] * 2
    assert server.connections == 1


def test_https_refuses_a_certificate_it_cannot_verify(ca: trustme.CA) -> None:
    with scripted(answering(NO_CONTENT), tls_for(ca, "127.0.0.1")) as server, \
            pytest.raises(CannotConnect, match="CERTIFICATE_VERIFY_FAILED"):
        post(f"https://127.0.0.1:{server.port}/")  # the system's CAs do not know this one


class Tunnel:
    """An HTTP proxy that answers CONNECT (to any name, reaching ``port`` on loopback) with
    ``status``, then relays bytes both ways."""

    def __init__(self, port: int, status: bytes = b"200 Connection established") -> None:
        self.requests: list[bytes] = []
        self.server = Scripted(self._relay)
        self.upstream, self.status = port, status

    def _relay(self, conn: socket.socket) -> None:
        head = read_request(conn)
        self.requests.append(head)
        conn.sendall(b"HTTP/1.1 " + self.status + b"\r\n\r\n")
        if not self.status.startswith(b"200"):
            return
        with socket.create_connection(("127.0.0.1", self.upstream)) as upstream:
            def pipe(source: socket.socket, sink: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := source.recv(65536):
                        sink.sendall(data)
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
            back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
            back.start()
            pipe(conn, upstream)
            back.join(5)


def test_https_through_a_proxy_tunnel(ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with scripted(answering(NO_CONTENT, NO_CONTENT), tls_for(ca, "hooks.example.invalid")) as server:
        tunnel = Tunnel(server.port)
        try:
            monkeypatch.setenv("https_proxy", f"http://ops:s%40cret@127.0.0.1:{tunnel.server.port}")
            answers = post("https://hooks.example.invalid:8443/in", times=2, ca_bundle=bundle)
        finally:
            tunnel.server.close()
    assert [a.status for a in answers] == [204, 204]
    [connect] = tunnel.requests  # one tunnel, kept for both
    assert connect.startswith(b"CONNECT hooks.example.invalid:8443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic b3BzOnNAY3JldA==\r\n" in connect  # ops:s@cret


def test_a_proxy_that_refuses_the_tunnel_cannot_connect(
        ca: trustme.CA, bundle: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    tunnel = Tunnel(1, status=b"403 Forbidden")
    try:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{tunnel.server.port}")
        with pytest.raises(CannotConnect, match=r"the proxy refused the tunnel \(HTTP/1.1 403 Forbidden\)"):
            post("https://hooks.example.invalid/in", ca_bundle=bundle)
    finally:
        tunnel.server.close()
