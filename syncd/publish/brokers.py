"""Message-broker sinks: Redis Streams and NATS JetStream .

Both carry the same compact JSON body a webhook would get, and the event ``id`` as the
idempotency key, so consumers can drop repeats (delivery is at least once):

* :class:`RedisStreamSink` ``XADD``\\ s one entry per event with the fields ``id``, ``user``
  (the user id), ``type`` and ``body``; the stream is trimmed to about ``maxlen`` entries.
* :class:`NatsJetStreamSink` publishes to ``<subject>.<user id>`` with the header
  ``Nats-Msg-Id: <event id>``, so JetStream itself drops a repeat within its duplicate window,
  and waits for the stream's acknowledgement. One subject per user lets a consumer see one
  user's events in order. User ids are put in the subject with ``.``, ``*``, ``>``, ``%``,
  whitespace and non-ASCII characters percent-encoded (``a.b`` → ``a%2Eb``).

The client packages are an optional extra (``pip install 'syncd[brokers]'``); they are
imported when a sink is made, so this module imports without them. Connections are made on
the first delivery and made again after a failure; `Sink.close` closes
them. Errors raised by ``deliver`` are one line and never contain a password from the URL.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from syncd.core.errors import Bug, ConfigError, TransientError
from syncd.core.events import encode
from syncd.core.text import one_line
from syncd.publish.loop import LoopThread
from syncd.publish.sink import PermanentDeliveryError, Sink

if TYPE_CHECKING:
    import redis
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

__all__ = ["NatsJetStreamSink", "RedisStreamSink", "nats_subject_token"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'syncd[brokers]'"
REDIS_SCHEMES = ("redis", "rediss", "unix")
NATS_SCHEMES = ("nats", "tls", "ws", "wss")
# Redis error codes that describe the server's state rather than our request.
_REDIS_TRANSIENT_CODES = frozenset(
    {"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "OOM", "NOREPLICAS", "MOVED", "ASK"}
)
_SUBJECT_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_@+=:,!~$&'()#")


# -- shared helpers ---------------------------------------------------------------------------


def _require(name: str, kind: str, module: str, package: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ConfigError(f"sink {name!r}: the {kind} sink needs the {package} package: {INSTALL_HINT}") from None


def _check_timeout(name: str, timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise ConfigError(f"sink {name!r}: timeout must be a positive duration, got {timeout!r}")
    return float(timeout)


def _keys(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(event id, user id, type) of an outbox event."""
    if "id" not in event:
        raise Bug("event has no 'id'; receivers need it to drop repeats")
    event_id = str(event["id"])
    if not event_id or any(ch in event_id for ch in "\r\n\0"):
        raise Bug(f"event id {event_id!r} cannot be used as an idempotency key")
    user, team = event.get("user"), event.get("team")
    user_id = user.get("id") if isinstance(user, Mapping) else user
    if user is None and isinstance(team, Mapping) and isinstance(team.get("id"), str):
        user_id = f"team:{team['id']}"  # a team's events (coverage) are ordered per team
    if not isinstance(user_id, str) or not user_id:
        raise Bug(f"event {event_id} has no user id")
    return event_id, user_id, str(event.get("type", ""))


def _url_secrets(url: str, *, username_too: bool) -> list[str]:
    """Credentials in ``url``, raw and percent-decoded, to scrub from messages."""
    parts = urllib.parse.urlsplit(url)
    found = [parts.password or ""]
    if username_too:
        found.append(parts.username or "")
    out: list[str] = []
    for raw in found:
        if raw:
            out.extend({raw, urllib.parse.unquote(raw)})
    return sorted(out, key=len, reverse=True)  # longest first: a decoded form may contain the raw one


def _host_of(url: str, default_port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or "?"
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or default_port
    except ValueError:
        port = default_port
    return f"{host}:{port}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        text = str(exc)
        return text if text and text != "nats: timeout" else "timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's own text repeats the address
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -- Redis Streams ----------------------------------------------------------------------------


class RedisStreamSink(Sink):
    """``XADD`` each event to a Redis stream, trimmed to about ``maxlen`` entries (``None``: never).

    Thread-safe: deliveries through one sink are serialised (they are rare). A connection
    error is retried once at once (a pooled connection may have gone stale); after that the
    client is dropped and the next delivery connects afresh.
    """

    def __init__(
        self,
        name: str,
        url: str = "redis://127.0.0.1:6379/0",
        stream: str = "syncd:status",
        maxlen: int | None = 100_000,
        timeout: float = 5.0,
    ) -> None:
        _require(name, "redis", "redis", "redis")
        from redis.connection import parse_url

        scheme = urllib.parse.urlsplit(url).scheme if isinstance(url, str) else ""
        if scheme not in REDIS_SCHEMES:
            raise ConfigError(f"sink {name!r}: url must start with redis://, rediss:// or unix://")
        try:
            parse_url(url)  # type: ignore[no-untyped-call]
        except ValueError:
            raise ConfigError(f"sink {name!r}: url is not a valid Redis URL") from None  # the URL may hold a password
        if not isinstance(stream, str) or not stream:
            raise ConfigError(f"sink {name!r}: stream must be a non-empty string")
        if maxlen is not None and (isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1):
            raise ConfigError(f"sink {name!r}: maxlen must be a whole number of at least 1 (or None), got {maxlen!r}")
        self.name = name
        self.stream = stream
        self.maxlen = maxlen
        self.timeout = _check_timeout(name, timeout)
        self._url = url
        self._where = _host_of(url, 6379)
        self._secrets = _url_secrets(url, username_too=False)
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None

    def __repr__(self) -> str:
        return f"RedisStreamSink(name={self.name!r}, host={self._where!r}, stream={self.stream!r})"

    def _connect(self) -> redis.Redis:
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = redis.Redis.from_url(
                self._url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            )
        return self._client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not hide the real error
                log.debug("sink %s: error while closing the Redis client", self.name, exc_info=True)

    def deliver(self, event: Mapping[str, Any]) -> None:
        from redis import exceptions as rx

        event_id, user_id, kind = _keys(event)
        body = encode(event)
        with self._lock:
            try:
                self._connect().xadd(
                    self.stream, {"id": event_id, "user": user_id, "type": kind, "body": body},
                    maxlen=self.maxlen, approximate=True,
                )
            except (rx.AuthenticationError, rx.AuthorizationError) as exc:
                self._drop()
                raise PermanentDeliveryError(self._msg(f"{self._where} refused the credentials: {_describe(exc)}")) \
                    from None
            except (rx.ConnectionError, rx.TimeoutError) as exc:
                self._drop()
                raise TransientError(self._msg(f"cannot reach {self._where}: {_describe(exc)}")) from None
            except rx.ResponseError as exc:
                text = str(exc)
                code = text.split(" ", 1)[0]
                if code in _REDIS_TRANSIENT_CODES:
                    raise TransientError(self._msg(f"{self._where} is not accepting writes: {text}")) from None
                if code == "WRONGTYPE":
                    text = f"key {self.stream!r} holds something other than a stream"
                raise PermanentDeliveryError(self._msg(f"XADD refused by {self._where}: {text}")) from None
            except rx.RedisError as exc:  # a garbled reply: start over with a fresh connection
                self._drop()
                raise TransientError(self._msg(f"bad reply from {self._where}: {_describe(exc)}")) from None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _msg(self, text: str) -> str:
        message = f"redis sink {self.name!r}: {text}"
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return one_line(message)


# -- NATS JetStream ---------------------------------------------------------------------------


def nats_subject_token(user_id: str) -> str:
    """``user_id`` as one NATS subject token: unsafe characters become ``%XX`` (UTF-8 bytes)."""
    return "".join(ch if ch in _SUBJECT_SAFE else "".join(f"%{b:02X}" for b in ch.encode("utf-8")) for ch in user_id)


def _valid_subject(subject: str) -> bool:
    return bool(subject) and all(
        token and token not in ("*", ">") and not any(ch.isspace() or ch in "*>" for ch in token)
        for token in subject.split(".")
    )


def _valid_stream_name(stream: str) -> bool:
    return bool(stream) and not any(ch.isspace() or ch in ".*>/\\" for ch in stream)


class NatsJetStreamSink(Sink):
    """Publish each event to JetStream at ``<subject>.<user id>`` and wait for the PubAck.

    With ``stream`` set, the stream is created (capturing ``<subject>.>``) if missing when a
    connection is made, and publishes name it as the expected stream. Without it, some
    stream must already capture the subjects.

    nats-py is asyncio: the sink runs one private event loop in a daemon thread, started on
    the first delivery, and ``deliver`` waits for the coroutine it submits there, so it stays
    synchronous and thread-safe. ``url`` may list several servers separated by commas.
    """

    def __init__(
        self,
        name: str,
        url: str = "nats://127.0.0.1:4222",
        subject: str = "syncd.status",
        stream: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        _require(name, "nats", "nats", "nats-py")
        servers = [u.strip() for u in url.split(",")] if isinstance(url, str) else []
        for server in servers:
            parts = urllib.parse.urlsplit(server)
            try:
                ok = parts.scheme in NATS_SCHEMES and bool(parts.hostname) and (parts.port or 0) >= 0
            except ValueError:
                ok = False
            if not ok:  # no value in the message: the URL may carry a token
                raise ConfigError(f"sink {name!r}: url must be nats://host:port (or tls://, ws://, wss://)")
        if not servers:
            raise ConfigError(f"sink {name!r}: url must be nats://host:port (or tls://, ws://, wss://)")
        if not isinstance(subject, str) or not _valid_subject(subject):
            raise ConfigError(f"sink {name!r}: subject must be dot-separated tokens without wildcards or spaces, "
                              f"got {subject!r}")
        if stream is not None and (not isinstance(stream, str) or not _valid_stream_name(stream)):
            raise ConfigError(f"sink {name!r}: stream must be a name without spaces, '.', '*', '>', '/' or '\\', "
                              f"got {stream!r}")
        self.name = name
        self.subject = subject
        self.stream = stream
        self.timeout = _check_timeout(name, timeout)
        self._servers = servers
        self._where = ",".join(_host_of(s, 4222) for s in servers)
        self._secrets = sorted({s for server in servers for s in _url_secrets(server, username_too=True)},
                               key=len, reverse=True)
        self._lock = threading.Lock()
        self._loop = LoopThread(f"syncd-nats-{name}")
        # Touched only on the loop's thread:
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"NatsJetStreamSink(name={self.name!r}, host={self._where!r}, subject={self.subject!r})"

    def subject_for(self, user_id: str) -> str:
        """Where events of ``user_id`` are published."""
        return f"{self.subject}.{nats_subject_token(user_id)}"

    # -- the synchronous face ------------------------------------------------------------------

    def deliver(self, event: Mapping[str, Any]) -> None:
        event_id, user_id, _ = _keys(event)
        subject, body = self.subject_for(user_id), encode(event)
        # connect + look up / create the stream + publish, each bounded by `timeout`; plus slack.
        budget = 4 * self.timeout + 1.0
        with self._lock:
            try:
                self._loop.run(self._publish(subject, body, event_id), budget)
            except TimeoutError:
                raise TransientError(self._msg(f"no answer from {self._where} within {budget:g}s")) from None

    def close(self) -> None:
        """Drain and close the connection, then stop the private loop (it restarts if used again)."""
        with self._lock:
            if not self._loop.stop(self._shutdown, self.timeout + 2.0):
                log.warning("sink %s: NATS connection or event loop did not stop cleanly", self.name)

    # -- on the loop ---------------------------------------------------------------------------

    async def _publish(self, subject: str, body: bytes, event_id: str) -> None:
        from nats import errors as ne
        from nats.js import errors as je

        try:
            js = await self._connected()
            ack = await js.publish(subject, body, timeout=self.timeout, stream=self.stream,
                                   headers={"Nats-Msg-Id": event_id})
        except (PermanentDeliveryError, TransientError):
            raise
        except je.NoStreamResponseError:
            hint = "" if self.stream else "; set `stream` to have syncd create one"
            raise PermanentDeliveryError(self._msg(f"no JetStream stream stores subject {subject!r}{hint}")) from None
        except (je.ServiceUnavailableError, je.ServerError) as exc:
            raise TransientError(self._msg(f"JetStream at {self._where} is unavailable: {exc}")) from None
        except je.APIError as exc:
            raise PermanentDeliveryError(self._msg(f"JetStream refused the message: {exc}"), exc.code) from None
        except (ne.MaxPayloadError, ne.BadSubjectError, ne.BadHeaderError) as exc:
            raise PermanentDeliveryError(self._msg(f"NATS refused the message: {_describe(exc)}")) from None
        except (TimeoutError, ne.TimeoutError):
            await self._drop_if_broken()
            raise TransientError(self._msg(f"no acknowledgement from {self._where} "
                                           f"within {self.timeout:g}s")) from None
        except (ne.Error, OSError) as exc:
            await self._drop_if_broken()
            raise TransientError(self._msg(f"cannot publish to {self._where}: {_describe(exc)}")) from None
        log.debug("sink %s: %s stored as %s #%s%s", self.name, event_id, ack.stream, ack.seq,
                  " (duplicate)" if ack.duplicate else "")

    async def _connected(self) -> JetStreamContext:
        nc = self._nc
        if nc is not None and nc.is_connected and self._js is not None:
            return self._js
        await self._drop()
        from nats import errors as ne
        from nats.aio.client import Client

        nc = Client()
        self._last_error = None
        try:
            await asyncio.wait_for(
                nc.connect(
                    servers=self._servers,
                    name=f"syncd:{self.name}",
                    error_cb=self._on_error,
                    allow_reconnect=False,  # a lost connection is made again by the next delivery
                    connect_timeout=self.timeout,  # type: ignore[arg-type]  # annotated int, used as float
                    max_reconnect_attempts=1,  # with one server: two quick tries, then NoServersError
                    reconnect_time_wait=0,
                    drain_timeout=self.timeout,  # type: ignore[arg-type]
                ),
                self.timeout,
            )
        except (ne.AuthorizationError, ne.InvalidUserCredentialsError) as exc:
            await _close_quietly(nc)
            raise PermanentDeliveryError(self._msg(f"{self._where} refused the credentials: {_describe(exc)}")) \
                from None
        except (TimeoutError, ne.Error, OSError) as exc:
            await _close_quietly(nc)
            cause = self._last_error if isinstance(exc, ne.NoServersError) and self._last_error else exc
            if isinstance(cause, ne.AuthorizationError):
                raise PermanentDeliveryError(self._msg(f"{self._where} refused the credentials")) from None
            raise TransientError(self._msg(f"cannot reach {self._where}: {_describe(cause)}")) from None
        js = nc.jetstream(timeout=self.timeout)
        if self.stream is not None:
            try:
                await self._ensure_stream(js)
            except BaseException:
                await _close_quietly(nc)
                raise
        self._nc, self._js = nc, js
        log.info("sink %s: connected to NATS at %s", self.name, self._where)
        return js

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        from nats.js import errors as je

        assert self.stream is not None
        try:
            await js.stream_info(self.stream)
            return
        except je.NotFoundError:
            pass
        except je.NoStreamResponseError:
            raise PermanentDeliveryError(self._msg(f"{self._where} has no JetStream (start nats-server -js)")) from None
        try:
            await js.add_stream(name=self.stream, subjects=[f"{self.subject}.>"])
        except je.BadRequestError as exc:
            raise PermanentDeliveryError(
                self._msg(f"cannot create stream {self.stream!r}: {exc.description or exc}"), exc.code
            ) from None
        log.info("sink %s: created JetStream stream %s for %s.>", self.name, self.stream, self.subject)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        log.debug("sink %s: NATS: %s", self.name, self._msg(_describe(exc)))

    async def _drop_if_broken(self) -> None:
        if self._nc is not None and not self._nc.is_connected:
            await self._drop()

    async def _drop(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await _close_quietly(nc)

    async def _shutdown(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and nc.is_connected:
            try:
                await asyncio.wait_for(nc.drain(), self.timeout)
            except Exception:  # noqa: BLE001 - fall back to a plain close
                log.debug("sink %s: NATS drain failed; closing", self.name, exc_info=True)
        if nc is not None:
            await _close_quietly(nc)
        # Whatever nats-py left running is cancelled here, so no task is destroyed while pending.
        me = asyncio.current_task()
        rest = [task for task in asyncio.all_tasks() if task is not me]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def _msg(self, text: str) -> str:
        message = f"nats sink {self.name!r}: {text}"
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return one_line(message)


async def _close_quietly(nc: NatsClient) -> None:
    if nc.is_closed:
        return
    try:
        await nc.close()
    except Exception:  # noqa: BLE001 - a half-open client may fail to close; nothing to do
        log.debug("closing a NATS client failed", exc_info=True)
