"""The webhook sink: each event POSTed as JSON, signed, over kept-alive connections."""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from syncd import __version__
from syncd.core.errors import Bug, ConfigError, SyncdError, TransientError
from syncd.core.events import encode
from syncd.core.text import one_line, redact_url
from syncd.publish.httpclient import CannotConnect, NoAnswer, OneUrlClient
from syncd.publish.loop import LoopThread
from syncd.publish.signing import EVENT_ID_HEADER, SIGNATURE_HEADER, secret_problem, sign, signing_key, standard_headers
from syncd.publish.sink import DeliveryThrottled, PermanentDeliveryError, Sink

log = logging.getLogger(__name__)
_MAX_REASON = 80  # a receiver's reason phrase is untrusted text; keep log lines short
# A request prepared for an instant is used within this many seconds of it; receivers accept a
# signature within 300 s (`verify_signature`), so it is signed afresh well before that.
_PREPARED_FOR = 60.0

__all__ = ['WebhookSink']

class WebhookSink(Sink):
    """POSTs each event as JSON to ``url``, signed when ``secret`` is set: per Standard Webhooks
    (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``) and with ``Syncd-Signature``
    (`syncd.publish.signing`). A secret must give a key of at least 24 bytes.

    The requests go out from a private asyncio loop over kept-alive connections
    (`syncd.publish.httpclient`), up to ``concurrency`` at once: a burst of thousands of events
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
            shown = redact_url(url, keep_query=False)
            raise ConfigError(f"sink {name!r}: url must be an http:// or https:// address, got {shown!r}")
        if secret is not None and not secret:
            raise ConfigError(f"sink {name!r}: secret is empty; remove it to send unsigned requests")
        problem = None if secret is None else secret_problem(secret)
        if problem is not None:
            raise ConfigError(f"sink {name!r}: secret {problem}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(f"sink {name!r}: timeout must be a positive duration, got {timeout!r}")
        self.name = name
        self.url = url
        self.timeout = float(timeout)
        self.concurrency = concurrency
        self._secret = secret
        self._key = None if secret is None else signing_key(secret)
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
                              f"({one_line(str(exc), 120)})") from None
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
        if self._secret is not None and self._key is not None:
            # One timestamp for both schemes: signed ahead (`prepare`) or now, the same headers.
            timestamp = int(signed_at)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
            headers.update(standard_headers(self._key, event_id, timestamp, body))
        return headers

    def _status_error(self, status: int, reason: object, retry_after_header: str | None) -> SyncdError:
        reason_text = one_line(self._scrub(str(reason)), _MAX_REASON) or _standard_phrase(status)
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
        return one_line(self._scrub(f"webhook {self.name!r}: {text}"))

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


