"""POSTs to one URL over kept-alive connections, on asyncio, with httptools parsing the answers.

The webhook sink sends thousands of small requests in a burst when many blocks end in the
same minute, so the cost per request is what matters here. Each connection is an asyncio
protocol (no stream reader, no task of its own); the request is written as one buffer built
from parts checked once; the answer is parsed by httptools (llhttp, the parser uvicorn uses).
The h11-based client this replaced spent about three times as much CPU per request
(measurements in the README, under Scale-out).

Connections are opened as needed, kept while the receiver allows, and reused; a request
on a reused connection that the receiver had closed is sent once more on a new one. TLS
uses the system's CA store or ``ca_bundle``. An HTTP(S) proxy from the environment
(``http_proxy``, ``https_proxy``, upper or lower case, lower first) is used as HTTP clients
do: an absolute URL for plain HTTP, a ``CONNECT`` tunnel for HTTPS. A proxy URL starting
``https://`` is reached over TLS (verified like the target), and an HTTPS target's own TLS
then runs inside that. ``no_proxy`` / ``NO_PROXY`` exempts hosts (`bypasses_proxy`).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import httptools

__all__ = ["Answer", "CannotConnect", "NoAnswer", "OneUrlClient", "bypasses_proxy"]

MAX_BODY = 65536  # of an answer we read; longer ones end the connection (the content is ignored)
MAX_HEAD = 65536  # of a proxy's answer to CONNECT

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name is a token (RFC 9110 §5.1)
_VALUE = re.compile(r"[^\r\n\0]*")


class CannotConnect(Exception):
    """No connection could be made (refused, unreachable, TLS handshake failed, proxy refused)."""


class NoAnswer(Exception):
    """The request went out (at least in part) but no complete answer came back."""


class _Closed(NoAnswer):
    """The connection ended before any answer: on a kept-alive connection, most often the
    receiver closing it as idle just as the request went out."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    retry_after: str | None


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value`` lines, each ending in CRLF; `ValueError` for a name or value that could
    break the request (a line break smuggles a header of the caller's choosing)."""
    lines = []
    for name, value in headers.items():
        if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
            raise ValueError(f"header {name!r} cannot be sent: a name must be a token, a value one line")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("utf-8")


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """True if ``no_proxy`` (the value of ``no_proxy`` / ``NO_PROXY``) exempts ``host``:``port``.

    Entries are separated by commas or spaces. ``*`` exempts every host. A name exempts itself
    and its subdomains (``example.com``, ``.example.com`` and ``*.example.com`` all exempt
    ``example.com`` and ``hooks.example.com``), case aside. An IP address, or a network in
    CIDR form (``10.0.0.0/8``, ``fd00::/8``), exempts addresses only: no name is resolved. Any
    entry may end in ``:port`` (an IPv6 address then in brackets, ``[::1]:8443``), and then
    exempts that port only.
    """
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in re.split(r"[\s,]+", no_proxy):
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        name = name.rstrip(".").lower()
        if "/" in name:
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if address is not None and address.version == network.version and address in network:
                return True
            continue
        try:
            entry_address = ipaddress.ip_address(name)
        except ValueError:
            entry_address = None  # a name
        if entry_address is not None:
            if entry_address == address:
                return True
            continue
        name = name.removeprefix("*").lstrip(".")
        if name and address is None and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address: (host, port);
    a port that is not a number makes the entry match nothing."""
    if entry.startswith("["):
        inside, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            return "", -1
        return inside, _port(port_text)
    if entry.count(":") == 1:
        name, _, port_text = entry.partition(":")
        return name, _port(port_text)
    return entry, None  # a name, or an IPv6 address without a port


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else -1


class _Connection(asyncio.Protocol):
    """One connection, one request at a time. httptools calls the ``on_*`` methods while
    `data_received` feeds it; the answer is complete at `on_message_complete`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reusable = True
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._tunnel: asyncio.Future[bytes] | None = None
        self._raw = b""
        self._reset()

    def _reset(self) -> None:
        self._reason = b""
        self._retry_after: str | None = None
        self._has_head = False
        self._body = 0

    # -- asyncio ---------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._tunnel is not None:
            self._raw += data
            if b"\r\n\r\n" in self._raw or len(self._raw) > MAX_HEAD:
                self._tunnel.set_result(self._raw)
                self._tunnel = None
            return
        if self._answer is None:  # nothing was asked: a confused receiver; do not reuse it
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(NoAnswer(f"a broken answer ({exc})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._tunnel is not None:
            self._tunnel.set_exception(CannotConnect("the proxy closed the connection"))
            self._tunnel = None
        if self._has_head:  # an answer whose body ends with the connection: the status is all we need
            self._finish()
        else:
            self._fail(_Closed("the connection was closed without an answer"))

    # -- httptools -------------------------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"retry-after":
            self._retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._has_head = True

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > MAX_BODY:  # not worth reading on: this connection ends here
            self._finish()
            self.close()

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # 1xx: the real answer follows
            self._reset()
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        self._finish()

    # -- requests ---------------------------------------------------------------------------------

    async def exchange(self, request: bytes, timeout: float) -> Answer:
        if self.transport is None or self.transport.is_closing():
            raise _Closed("the connection was closed without an answer")
        self._reset()
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answer = answer
        self.transport.write(request)
        try:
            async with asyncio.timeout(timeout):
                return await answer
        except TimeoutError:
            self.close()
            raise NoAnswer("timed out") from None
        finally:
            self._answer = None

    async def tunnel(self, request: bytes, timeout: float) -> bytes:
        """Send a ``CONNECT`` and return the proxy's answer head (parsed by the caller: a 200
        to CONNECT has no body, which a response parser cannot know)."""
        assert self.transport is not None
        self._raw = b""
        head: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._tunnel = head
        self.transport.write(request)
        async with asyncio.timeout(timeout):
            return await head

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            # Nothing of ours is ever left unsent here (an answer came, or it is given up on), and
            # a TLS close would wait for the peer's goodbye past the loop's end.
            self.transport.abort()

    def _finish(self) -> None:
        if self._answer is not None and not self._answer.done():
            status = self._parser.get_status_code()
            self._answer.set_result(Answer(status, self._reason.decode("latin-1"), self._retry_after))

    def _fail(self, error: NoAnswer) -> None:
        self.close()
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)


class OneUrlClient:
    """Sends on one event loop: `send`, `post` and `close` must be called there. ``headers`` go
    with every request; `request` adds its own."""

    def __init__(self, url: str, timeout: float, *, headers: Mapping[str, str] | None = None,
                 ca_bundle: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        self.timeout = timeout
        self._tls = ssl.create_default_context(cafile=ca_bundle) if parts.scheme == "https" else None
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = parts.netloc.rpartition("@")[2]
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        proxies = urllib.request.getproxies_environment()  # lower case first, then upper
        proxy = proxies.get(parts.scheme)
        if proxy and "://" not in proxy:
            proxy = "http://" + proxy  # "proxy.example:3128", as curl reads it
        exempt = bypasses_proxy(self._host, self._port, proxies.get("no", ""))
        self._proxy = None if not proxy or exempt else urllib.parse.urlsplit(proxy)
        # A proxy reached over TLS (https://proxy:3129): its certificate is checked as the target's is.
        self._proxy_tls: ssl.SSLContext | None = None
        if self._proxy is not None and self._proxy.scheme == "https":
            self._proxy_tls = self._tls or ssl.create_default_context(cafile=ca_bundle)
        proxy_auth: dict[str, str] = {}
        if self._proxy is not None:
            if self._proxy.username is not None:
                user_pass = f"{urllib.parse.unquote(self._proxy.username)}:" \
                            f"{urllib.parse.unquote(self._proxy.password or '')}"
                proxy_auth["Proxy-Authorization"] = "Basic " + base64.b64encode(user_pass.encode()).decode()
            if self._tls is None:  # plain HTTP through a proxy: the request names the whole URL
                target = urllib.parse.urlunsplit(("http", authority, parts.path or "/", parts.query, ""))
        self._connect_auth = header_lines(proxy_auth)
        # Through a tunnel (HTTPS) the proxy saw its credentials in the CONNECT already.
        plain_auth = proxy_auth if self._proxy is not None and self._tls is None else {}
        self._head = (f"POST {target} HTTP/1.1\r\n".encode() + header_lines({"Host": authority})
                      + header_lines(plain_auth) + header_lines(headers or {}))
        self._idle: list[_Connection] = []

    def request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        """The whole request for ``body`` with ``headers`` besides the fixed ones; pure, so it
        can be built on any thread and ahead of time."""
        return b"".join((self._head, header_lines(headers), b"Content-Length: %d\r\n\r\n" % len(body), body))

    async def send(self, request: bytes) -> Answer:
        """Send a request made by `request` and return the answer."""
        for attempt in range(2):
            connection = self._reusable()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            try:
                answer = await connection.exchange(request, self.timeout)
            except _Closed:
                connection.close()
                if reused and attempt == 0:
                    continue  # a kept-alive connection the receiver had just closed: once more, on a new one
                raise
            except NoAnswer:  # timed out, or a broken answer: the receiver may have it; the caller decides
                connection.close()
                raise
            if connection.reusable:
                self._idle.append(connection)
            else:
                connection.close()
            return answer
        raise NoAnswer("no answer")  # not reached: the second attempt returns or raises

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        return await self.send(self.request(body, headers))

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _reusable(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
            connection.close()  # the receiver closed it while it was idle
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self._proxy is not None:
            host = self._proxy.hostname or ""
            port = self._proxy.port or (443 if self._proxy_tls is not None else 80)
            first_tls = self._proxy_tls  # TLS to the proxy itself, if its URL is https://
        else:
            host, port, first_tls = self._host, self._port, self._tls
        connection = _Connection()
        try:
            async with asyncio.timeout(self.timeout):
                await loop.create_connection(lambda: connection, host, port, ssl=first_tls,
                                             server_hostname=host if first_tls else None)
                if self._proxy is not None and self._tls is not None:
                    await self._through_tunnel(loop, connection)
        except TimeoutError as exc:
            connection.close()
            raise CannotConnect("timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise CannotConnect(exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) from exc
        return connection

    async def _through_tunnel(self, loop: asyncio.AbstractEventLoop, connection: _Connection) -> None:
        authority = f"{self._host}:{self._port}".encode()
        head = await connection.tunnel(b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
                                       + self._connect_auth + b"\r\n", self.timeout)
        if head.split(b" ", 2)[1:2] != [b"200"] or not head.endswith(b"\r\n\r\n"):
            connection.close()
            line = head.split(b"\r\n", 1)[0][:100].decode("latin-1")
            raise CannotConnect(f"the proxy refused the tunnel ({line})")
        assert connection.transport is not None and self._tls is not None
        secure = await loop.start_tls(connection.transport, connection, self._tls, server_hostname=self._host)
        if secure is None:
            raise CannotConnect("the TLS handshake through the proxy did not complete")
        connection.transport = secure
