"""Delivery of one status-change event to one sink.

A sink takes one event (a JSON-ready mapping carrying an ``id`` that is its idempotency key)
and either delivers it, or raises:

    TransientError            try again later (5xx, 408, 429, timeouts, refused connections)
    └── DeliveryThrottled     also a ``RateLimited``: ``retry_after`` seconds if the receiver said
    PermanentDeliveryError    the receiver refused this event (4xx); retrying will not help

The outbox, per-user ordering, retry scheduling and dead-lettering live in the publisher;
:func:`retry_delay` is the backoff it uses. :func:`sign` and :func:`verify_signature` are the
webhook signature scheme, written so that a receiver can copy :func:`verify_signature`::

    Syncd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import http.client
import json
import math
import random
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from http.client import HTTPException
from types import TracebackType
from typing import Any, TextIO

from syncd import __version__
from syncd.errors import Bug, ConfigError, RateLimited, SyncdError, TransientError

__all__ = [
    "DeliveryThrottled",
    "PermanentDeliveryError",
    "Sink",
    "StdoutSink",
    "WebhookSink",
    "build_sink",
    "retry_delay",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "Syncd-Signature"
EVENT_ID_HEADER = "Syncd-Event-Id"
_MAX_REASON = 80  # a receiver's reason phrase is untrusted text; keep log lines short


class PermanentDeliveryError(SyncdError):
    """The receiver refused the event (a 4xx other than 408/429): it will not get better."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DeliveryThrottled(RateLimited, TransientError):
    """429, or 503 with Retry-After: both a ``TransientError`` and a ``RateLimited``."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, retry_after)
        self.status = status


# -- signatures and backoff (pure) -----------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Syncd-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    # The timestamp is inside the MAC so a captured request cannot be replayed with a new "t".
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header_value: str, body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """True if ``header_value`` signs the raw request ``body`` with ``secret``, within ``tolerance``.

    ``body`` must be the bytes as received, before any JSON parsing. ``now`` is the receiver's
    unix time; a timestamp more than ``tolerance`` seconds away from it (either way) is
    rejected, which bounds replays. Several ``v1=`` entries are accepted (any may match), so a
    sender can sign with an old and a new secret while rotating. Never raises on bad input.
    """
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
        # other keys: future schemes, ignored as Stripe-style receivers do
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    # compare_digest on every candidate: the time taken does not reveal which byte differed.
    matches = [hmac.compare_digest(expected.encode("ascii"), c.encode("utf-8", "replace")) for c in candidates]
    return any(matches)


def retry_delay(attempt: int, *, base: float = 1.0, cap: float = 300.0, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential with full jitter.

    Uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]``. Full jitter spreads the retries of
    many events that failed together (a receiver outage) instead of sending them in waves.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be >= 0")
    try:
        ceiling = min(cap, math.ldexp(base, attempt - 1))
    except OverflowError:  # attempt in the thousands: long past the cap
        ceiling = cap
    return rng.uniform(0.0, ceiling)


# -- sinks ---------------------------------------------------------------------------------------


class Sink(abc.ABC):
    """Where status changes go. Implementations are safe to call from several threads."""

    name: str
    # How many users' events the publisher may send at once (each user's still one by one).
    concurrency: int = 1

    @abc.abstractmethod
    def deliver(self, event: Mapping[str, Any]) -> None:
        """Deliver one event, or raise ``TransientError`` / ``PermanentDeliveryError``.

        Delivery is at least once: the same event (same ``id``) may be delivered again after a
        failure that happened after the receiver accepted it.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, most sinks hold nothing open
        """Release what the sink holds; the default holds nothing."""

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class StdoutSink(Sink):
    """Writes each event as one compact JSON line (JSON Lines) and flushes."""

    def __init__(self, stream: TextIO | None = None, *, name: str = "stdout") -> None:
        self.name = name
        # Looked up now, not at import: tests and daemonisers replace sys.stdout.
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def deliver(self, event: Mapping[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":"), sort_keys=False) + "\n"
        with self._lock:  # one write + flush per line, so lines from several threads never interleave
            try:
                self._stream.write(line)
                self._stream.flush()
            except OSError as exc:
                raise TransientError(f"{self.name}: cannot write to output: {_one_line(str(exc))}") from exc

    def close(self) -> None:
        # The stream belongs to whoever passed it (or to the process): flush, do not close.
        with self._lock:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a bodiless GET; a webhook must not follow.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, signed with HMAC-SHA256 when ``secret`` is set.

    Each thread that sends keeps its own connection alive (thread-safe without locks); the
    publisher sends up to ``concurrency`` users' events at once. ``timeout`` applies to each
    socket operation (connect, each read), not to the request as a whole. HTTP(S) proxies
    from the environment apply.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: str | None,
        timeout: float = 10.0,
        *,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"sink {name!r}: url must be an http:// or https:// address, got {_redact_url(url)!r}")
        if secret is not None and not secret:
            raise ConfigError(f"sink {name!r}: secret is empty; remove it to send unsigned requests")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"sink {name!r}: timeout must be a positive duration, got {timeout!r}")
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self._secret = secret
        self._clock = clock
        # Host only in messages: the path or query may hold a token.
        self._where = parts.netloc.rpartition("@")[2]
        self._opener = urllib.request.build_opener(_NoRedirect)
        # Without a proxy each sending thread keeps one connection open to the receiver (a
        # burst of thousands of events would otherwise open thousands); through a proxy
        # (from the environment) urllib opens one per event.
        self._proxy = bool(urllib.request.getproxies().get(parts.scheme)) and not urllib.request.proxy_bypass(
            parts.hostname or "")
        self._target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._open_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, host={self._where!r}, signed={self._secret is not None})"

    def deliver(self, event: Mapping[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":"), sort_keys=False, ensure_ascii=False).encode("utf-8")
        headers = self._headers(event, body)
        if self._proxy:
            self._deliver_through_proxy(body, headers)
            return
        for attempt in range(2):
            connection, reused = self._connection()
            if connection.sock is None:
                try:
                    connection.connect()
                except OSError as exc:
                    self._drop_connection()
                    raise TransientError(self._msg(f"cannot reach {self._where}: {_describe(exc)}")) from exc
            try:
                connection.request("POST", self._target, body=body, headers=headers)
                response = connection.getresponse()
                response.read(65536)  # drained so the connection can carry the next event
                if response.will_close or not response.isclosed():
                    self._drop_connection()
            except (ConnectionError, HTTPException) as exc:
                self._drop_connection()
                if reused and attempt == 0 and isinstance(exc, ConnectionError | http.client.RemoteDisconnected):
                    continue  # the receiver closed the idle kept-alive connection: once more, on a new one
                raise TransientError(self._msg(f"no response from {self._where}: {_describe(exc)}")) from exc
            except OSError as exc:  # a timeout, mostly
                self._drop_connection()
                raise TransientError(self._msg(f"no response from {self._where}: {_describe(exc)}")) from exc
            if response.status >= 300:
                raise self._status_error(response.status, response.reason, response.getheader("Retry-After"))
            return

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's kept-alive connection to the receiver, and whether it carried a request before."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=self.timeout,
                                                     context=self._tls)
        else:
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=self.timeout)
        self._local.connection = connection
        with self._open_lock:
            self._open.add(connection)
        return connection, False

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._open_lock:
                self._open.discard(connection)
            connection.close()

    def _deliver_through_proxy(self, body: bytes, headers: dict[str, str]) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read(65536)  # drain a little so the server sees a clean close; content ignored
        except urllib.error.HTTPError as exc:
            try:
                error = self._status_error(exc.code, exc.reason, exc.headers.get("Retry-After"))
            finally:
                exc.close()  # it holds the response socket
            raise error from None
        except urllib.error.URLError as exc:
            # Connect-phase failures arrive wrapped; the reason is the OSError (refused, DNS, timeout).
            raise TransientError(self._msg(f"cannot reach {self._where}: {_describe(exc.reason)}")) from exc
        except (OSError, HTTPException) as exc:
            # Read-phase failures arrive raw: timeouts, the peer closing without answering.
            raise TransientError(self._msg(f"no response from {self._where}: {_describe(exc)}")) from exc

    def close(self) -> None:
        with self._open_lock:
            connections, self._open = self._open, set()
        for connection in connections:  # every thread's: a sending thread may be gone already
            connection.close()

    def _headers(self, event: Mapping[str, Any], body: bytes) -> dict[str, str]:
        if "id" not in event:
            raise Bug("event has no 'id'; receivers need it to drop repeats")
        event_id = str(event["id"])
        if any(ch in event_id for ch in "\r\n\0"):
            raise Bug(f"event id {event_id!r} cannot go in a header")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"syncd/{__version__}",
            EVENT_ID_HEADER: event_id,
        }
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, int(self._clock()), body)
        return headers

    def _status_error(self, status: int, reason: object, retry_after_header: str | None) -> SyncdError:
        reason_text = _one_line(self._scrub(str(reason)), _MAX_REASON) or _standard_phrase(status)
        message = self._msg(f"HTTP {status} {reason_text}".rstrip())
        if status == 429 or (status == 503 and retry_after_header is not None):
            retry_after = _parse_retry_after(retry_after_header, now=self._clock())
            if retry_after is not None:
                message += f" (retry after {retry_after:g}s)"
            return DeliveryThrottled(message, retry_after, status)
        if status == 408 or status >= 500:
            return TransientError(message)
        if 300 <= status < 400:
            return PermanentDeliveryError(message + " (redirects are not followed; set the final URL)", status)
        return PermanentDeliveryError(message, status)

    def _msg(self, text: str) -> str:
        return _one_line(self._scrub(f"webhook {self.name!r}: {text}"))

    def _scrub(self, text: str) -> str:
        # Belt and braces: reason phrases and error texts are the receiver's words.
        return text.replace(self._secret, "***") if self._secret else text


def _standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Retry-After as seconds from ``now``: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        return None
    return max(0.0, when.timestamp() - now)


def _describe(exc: object) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


# -- config ---------------------------------------------------------------------------------------


def build_sink(config: Any) -> Sink:
    """Make a sink from a config entry with ``type``, ``name`` and ``options`` (a mapping).

    Webhook options: ``url`` (required), ``secret`` (str, optional; the config layer resolves
    ``secret_env``), ``timeout`` (``timedelta`` or seconds, default 10 s). Other option keys
    are left to the publisher (retry and dead-letter settings).

    Broker sinks (:mod:`syncd.brokers`, needing ``pip install 'syncd[brokers]'``), every option
    optional: ``redis``: ``url``, ``stream``, ``maxlen`` (0 or ``None``: no trimming),
    ``timeout`` (default 5 s); ``nats``: ``url``, ``subject``, ``stream`` (created if missing),
    ``timeout`` (default 5 s).
    """
    kind = getattr(config, "type", None)
    name = getattr(config, "name", None) or str(kind)
    options: Mapping[str, Any] = getattr(config, "options", None) or {}
    if kind == "stdout":
        return StdoutSink(name=name)
    if kind == "webhook":
        url = options.get("url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"sink {name!r}: webhook needs a url")
        secret = options.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise ConfigError(f"sink {name!r}: secret must be a string")
        concurrency = options.get("concurrency", WebhookSink.concurrency)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 64:
            raise ConfigError(f"sink {name!r}: concurrency must be a whole number from 1 to 64")
        return WebhookSink(name, url, secret, _seconds(options.get("timeout", 10.0), name), concurrency=concurrency)
    if kind in ("redis", "nats"):
        # Imported here so that the core works without the broker client packages.
        from syncd import brokers

        kwargs: dict[str, Any] = {"timeout": _seconds(options.get("timeout", 5.0), name)}
        keys = ("url", "stream", "maxlen") if kind == "redis" else ("url", "subject", "stream")
        for key in keys:
            if options.get(key) is not None:
                kwargs[key] = options[key]
        if kind == "redis":
            if "maxlen" in options and options["maxlen"] in (None, 0):
                kwargs["maxlen"] = None  # never trim
            return brokers.RedisStreamSink(name, **kwargs)
        return brokers.NatsJetStreamSink(name, **kwargs)
    raise ConfigError(f"sink {name!r}: unknown type {kind!r} (expected 'stdout', 'webhook', 'redis' or 'nats')")


def _seconds(value: object, name: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"sink {name!r}: timeout must be a duration such as \"10s\", got {value!r}")
