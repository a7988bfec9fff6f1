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
import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import math
import random
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, TextIO, TypeVar

from syncd import __version__
from syncd.core.errors import Bug, ConfigError, RateLimited, SyncdError, TransientError
from syncd.core.events import encode
from syncd.httpclient import CannotConnect, NoAnswer, OneUrlClient

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
log = logging.getLogger("syncd.sinks")
T = TypeVar("T")

_MAX_REASON = 80  # a receiver's reason phrase is untrusted text; keep log lines short
# A request prepared for an instant is used within this many seconds of it; receivers accept a
# signature within 300 s (`verify_signature`), so it is signed afresh well before that.
_PREPARED_FOR = 60.0


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
    # How many users' events `deliver_all` sends at once (each user's still one by one).
    concurrency: int = 1

    @abc.abstractmethod
    def deliver(self, event: Mapping[str, Any]) -> None:
        """Deliver one event, or raise ``TransientError`` / ``PermanentDeliveryError``.

        Delivery is at least once: the same event (same ``id``) may be delivered again after a
        failure that happened after the receiver accepted it.
        """

    def deliver_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        """Deliver several users' events: each queue in order, stopping at its first failure.
        Returns, per queue, how many were delivered and the error that stopped it. The
        default goes one event at a time; sinks that can send side by side do."""
        outcomes: list[tuple[int, SyncdError | None]] = []
        for queue in queues:
            sent, failure = 0, None
            for event in queue:
                try:
                    self.deliver(event)
                except SyncdError as exc:
                    failure = exc
                    break
                sent += 1
            outcomes.append((sent, failure))
        return outcomes

    def prepare(self, events: Sequence[Mapping[str, Any]], at: float) -> None:  # noqa: B027 - optional hook
        """Events that will be delivered at ``at`` (Unix seconds), told ahead so that a sink can
        encode them beforehand. Delivery must not depend on it; the default does nothing."""

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
        line = encode(event, ascii_only=True).decode("ascii") + "\n"
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


class LoopThread:
    """A private asyncio event loop in a daemon thread, for sinks whose client is asyncio:
    started on first use, so the synchronous, thread-safe `Sink` face can wait on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it; `TimeoutError` (after cancelling it) if
        it takes longer than ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout:g}s") from None

    def stop(self, last: Callable[[], Coroutine[Any, Any, None]] | None = None, timeout: float = 5.0) -> bool:
        """Run ``last`` on the loop (closing what lives there), then stop it; it starts again if
        used again. False if either did not finish within ``timeout``."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return True
        clean = True
        if last is not None:
            future = asyncio.run_coroutine_threadsafe(last(), loop)
            try:
                future.result(timeout)
            except Exception:  # noqa: BLE001 - closing is best effort; the loop still stops below
                future.cancel()
                clean = False
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        return clean and not thread.is_alive()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_loop, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, signed with HMAC-SHA256 when ``secret`` is set.

    The requests go out from a private asyncio loop over kept-alive connections
    (`syncd.httpclient`), up to ``concurrency`` at once: a burst of thousands of events
    (blocks ending in the same minute) is sent in about a second. Events told ahead
    (`prepare`) are encoded and signed then. Redirects are not followed. ``timeout`` applies
    to connecting and to waiting for each answer. HTTP(S) proxies from the environment
    apply; ``ca_bundle`` replaces the system's CAs.
    """

    def __init__(
        self,
        name: str,
        url: str,
        secret: str | None,
        timeout: float = 10.0,
        *,
        concurrency: int = 8,
        ca_bundle: str | None = None,
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
        self._loop = LoopThread(f"syncd-webhook-{name}")
        # Built here, used on the loop (connections live there); `close` only closes connections.
        try:
            self._client = OneUrlClient(url, self.timeout, ca_bundle=ca_bundle, headers={
                "Content-Type": "application/json", "User-Agent": f"syncd/{__version__}"})
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"sink {name!r}: ca_bundle {ca_bundle!r} cannot be read as PEM certificates "
                              f"({_one_line(str(exc), 120)})") from None
        self._prepared: dict[str, tuple[float, bytes]] = {}  # event id -> (instant, request)
        self._prepared_lock = threading.Lock()  # filled by the caller's thread, taken on the loop

    def __repr__(self) -> str:
        return f"WebhookSink(name={self.name!r}, host={self._where!r}, signed={self._secret is not None})"

    def deliver(self, event: Mapping[str, Any]) -> None:
        [(_sent, failure)] = self.deliver_all([[event]])
        if failure is not None:
            raise failure

    def deliver_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        longest = max((len(q) for q in queues), default=0)
        # Each event takes at most a connect and an answer; the workers share the events, and
        # the longest queue goes one by one. A safety net: the client's timeouts come first.
        per_event = 2 * self.timeout + 1.0
        budget = (sum(len(q) for q in queues) / self.concurrency + longest) * per_event + 5.0
        try:
            return self._loop.run(self._send_all(queues), budget)
        except TimeoutError:
            error = TransientError(self._msg(f"no response from {self._where} within {budget:g}s"))
            return [(0, error) for _ in queues]

    def close(self) -> None:
        async def close_client() -> None:
            self._client.close()
        if not self._loop.stop(close_client, self.timeout + 2.0):
            log.warning("sink %s: the webhook client did not stop cleanly", self.name)

    # -- on the loop ---------------------------------------------------------------------------

    async def _send_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        client = self._client
        outcomes: list[tuple[int, SyncdError | None]] = [(0, None)] * len(queues)
        pending = iter(enumerate(queues))

        async def worker() -> None:
            # ``concurrency`` workers share one iterator: each takes the next user's queue when
            # it is free, and sends that queue's events one after another.
            for index, queue in pending:
                outcomes[index] = await self._send_queue(client, queue)
        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(queues)))))
        return outcomes

    async def _send_queue(self, client: OneUrlClient, queue: Sequence[Mapping[str, Any]]
                          ) -> tuple[int, SyncdError | None]:
        for sent, event in enumerate(queue):
            try:
                await self._post(client, event)
            except SyncdError as exc:
                return sent, exc
        return len(queue), None

    def prepare(self, events: Sequence[Mapping[str, Any]], at: float) -> None:
        """Encode and sign the events due at ``at`` now, signed as of ``at``: sent then, each
        costs only the sending. Kept until sent, or until they would be too old to use."""
        ready = {}
        for event in events:
            body = encode(event)
            ready[str(event.get("id"))] = (at, self._client.request(body, self._headers(event, body, at)))
        now = self._clock()
        with self._prepared_lock:
            for event_id in [k for k, (when, _request) in self._prepared.items() if now - when > _PREPARED_FOR]:
                del self._prepared[event_id]
            self._prepared.update(ready)

    async def _post(self, client: OneUrlClient, event: Mapping[str, Any]) -> None:
        with self._prepared_lock:
            prepared = self._prepared.pop(str(event.get("id")), None)
        if prepared is not None and abs(self._clock() - prepared[0]) <= _PREPARED_FOR:
            request = prepared[1]
        else:
            body = encode(event)
            request = client.request(body, self._headers(event, body, self._clock()))
        try:
            answer = await client.send(request)
        except CannotConnect as exc:
            raise TransientError(self._msg(f"cannot reach {self._where}: {exc}")) from exc
        except NoAnswer as exc:
            raise TransientError(self._msg(f"no response from {self._where}: {exc}")) from exc
        if answer.status >= 300:
            raise self._status_error(answer.status, answer.reason, answer.retry_after)

    def _headers(self, event: Mapping[str, Any], body: bytes, signed_at: float) -> dict[str, str]:
        """The headers that differ per event (the client sends the fixed ones)."""
        if "id" not in event:
            raise Bug("event has no 'id'; receivers need it to drop repeats")
        event_id = str(event["id"])
        if any(ch in event_id for ch in "\r\n\0"):
            raise Bug(f"event id {event_id!r} cannot go in a header")
        headers = {EVENT_ID_HEADER: event_id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, int(signed_at), body)
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
    ``secret_env``), ``timeout`` (``timedelta`` or seconds, default 10 s), ``concurrency``
    (1–64, default 8), ``ca_bundle`` (PEM file of the CAs to trust instead of the system's). Other option keys
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
        ca_bundle = options.get("ca_bundle")
        if ca_bundle is not None and (not isinstance(ca_bundle, str) or not ca_bundle):
            raise ConfigError(f"sink {name!r}: ca_bundle must be the path of a PEM file")
        return WebhookSink(name, url, secret, _seconds(options.get("timeout", 10.0), name), concurrency=concurrency,
                           ca_bundle=ca_bundle)
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
