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

from syncd.publish.httpclient import Answer, CannotConnect, NoAnswer, OneUrlClient, bypasses_proxy, header_lines

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


# -- no_proxy, and a proxy reached over TLS ----------------------------------------------------------


PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
                   "all_proxy", "ALL_PROXY")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
@pytest.mark.parametrize("no_proxy", ["127.0.0.0/8", "127.0.0.1:{port}", "example.org, 127.0.0.1/32",
                                      "localhost 127.0.0.1", "*"])
def test_a_target_that_no_proxy_names_is_reached_directly(
        ca: trustme.CA, bundle: str, no_proxy_env: pytest.MonkeyPatch, variable: str, no_proxy: str) -> None:
    refusing = Tunnel(1, status=b"403 Forbidden")  # a proxy that would refuse: it must not be asked
    try:
        with scripted(answering(NO_CONTENT), tls_for(ca, "127.0.0.1")) as https_target, \
                scripted(answering(NO_CONTENT)) as http_target:
            no_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{refusing.server.port}")
            no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{refusing.server.port}")
            no_proxy_env.setenv(variable, no_proxy.format(port=https_target.port))
            assert [a.status for a in post(f"https://127.0.0.1:{https_target.port}/in", ca_bundle=bundle)] == [204]
            no_proxy_env.setenv(variable, no_proxy.format(port=http_target.port))
            assert [a.status for a in post(f"http://127.0.0.1:{http_target.port}/in")] == [204]
    finally:
        refusing.server.close()
    assert refusing.requests == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1:1", "10.0.0.0/8", "::1", "example.org", "127.0.0.10"])
def test_a_target_that_no_proxy_does_not_name_goes_through_the_proxy(
        ca: trustme.CA, bundle: str, no_proxy_env: pytest.MonkeyPatch, no_proxy: str) -> None:
    with scripted(answering(NO_CONTENT), tls_for(ca, "127.0.0.1")) as server:
        tunnel = Tunnel(server.port)
        try:
            no_proxy_env.setenv("HTTPS_PROXY", f"http://127.0.0.1:{tunnel.server.port}")
            no_proxy_env.setenv("NO_PROXY", no_proxy)
            assert [a.status for a in post(f"https://127.0.0.1:{server.port}/in", ca_bundle=bundle)] == [204]
        finally:
            tunnel.server.close()
    [connect] = tunnel.requests
    assert connect.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())


@pytest.mark.parametrize(("host", "port", "no_proxy", "exempt"), [
    ("hooks.example.com", 443, "example.com", True),
    ("hooks.example.com", 443, ".example.com", True),
    ("hooks.example.com", 443, "*.example.com", True),
    ("example.com", 443, "*.example.com", True),
    ("HOOKS.Example.COM", 443, "example.com.", True),
    ("hooks.example.com", 443, "notexample.com,other.org", False),
    ("badexample.com", 443, "example.com", False),
    ("hooks.example.com", 8443, "hooks.example.com:8443", True),
    ("hooks.example.com", 443, "hooks.example.com:8443", False),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("10.1.2.3", 80, "11.0.0.0/8 , 192.168.0.0/16", False),
    ("::1", 80, "::1", True),
    ("::1", 80, "[::1]", True),
    ("::1", 8080, "[::1]:8080", True),
    ("::1", 80, "[::1]:8080", False),
    ("fd00::5", 80, "fd00::/8", True),
    ("0.0.0.1", 80, "::/0", False),  # an IPv4 address is in no IPv6 network
    ("10.1.2.3", 80, "example.com", False),  # names are not resolved
    ("anything", 1, "*", True),
    ("anything", 1, "", False),
    ("anything", 1, "anything:x, :, [, ]:, /, *.", False),  # broken entries match nothing
])
def test_bypasses_proxy(host: str, port: int, no_proxy: str, exempt: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is exempt


class TlsProxy:
    """An HTTP proxy reached over TLS (``HTTPS_PROXY=https://…``), on its own asyncio loop: it
    answers ``CONNECT`` with 200 and relays the tunnel to ``port`` on loopback; any other
    request (plain HTTP through the proxy) it forwards there as it came. Records each head."""

    def __init__(self, port: int, tls: ssl.SSLContext) -> None:
        self.requests: list[bytes] = []
        self.upstream = port
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=tls, ssl_handshake_timeout=5))
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream)
            if head.startswith(b"CONNECT "):
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.write(head)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.transport.abort()
            self._tasks.discard(task)  # type: ignore[arg-type]

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


@contextlib.contextmanager
def tls_proxy(port: int, tls: ssl.SSLContext) -> Iterator[TlsProxy]:
    proxy = TlsProxy(port, tls)
    try:
        yield proxy
    finally:
        proxy.close()


def test_https_through_a_proxy_reached_over_tls(ca: trustme.CA, bundle: str,
                                                no_proxy_env: pytest.MonkeyPatch) -> None:
    """TLS to the proxy, CONNECT inside it, then TLS to the target inside the tunnel."""
    with scripted(answering(NO_CONTENT, NO_CONTENT), tls_for(ca, "hooks.example.invalid")) as server, \
            tls_proxy(server.port, tls_for(ca, "127.0.0.1")) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", f"https://ops:s%40cret@127.0.0.1:{proxy.port}")
        answers = post("https://hooks.example.invalid:8443/in", times=2, ca_bundle=bundle)
    assert [a.status for a in answers] == [204, 204]
    [connect] = proxy.requests  # one tunnel, kept for both
    assert connect.startswith(b"CONNECT hooks.example.invalid:8443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic b3BzOnNAY3JldA==\r\n" in connect  # ops:s@cret


def test_plain_http_through_a_proxy_reached_over_tls(ca: trustme.CA, bundle: str,
                                                     no_proxy_env: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        seen.append(read_request(conn))
        conn.sendall(NO_CONTENT)
    with scripted(script) as server, tls_proxy(server.port, tls_for(ca, "127.0.0.1")) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", f"https://127.0.0.1:{proxy.port}")
        assert [a.status for a in post("http://hooks.example.invalid/in", ca_bundle=bundle)] == [204]
    assert seen[0].startswith(b"POST http://hooks.example.invalid/in HTTP/1.1\r\n")
    assert len(proxy.requests) == 1


def test_a_proxy_reached_over_tls_must_have_a_certificate_we_trust(
        ca: trustme.CA, no_proxy_env: pytest.MonkeyPatch) -> None:
    with tls_proxy(1, tls_for(ca, "127.0.0.1")) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", f"https://127.0.0.1:{proxy.port}")
        with pytest.raises(CannotConnect, match="CERTIFICATE_VERIFY_FAILED"):
            post("https://hooks.example.invalid/in")  # no ca_bundle: the system's CAs do not know it
    assert proxy.requests == []
