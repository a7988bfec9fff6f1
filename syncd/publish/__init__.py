"""Publishing: every status change to every sink, in order per user, at least once.

- `publisher`: reads the outbox and hands each sink its due events, records what went out,
  retries with back-off, dead-letters after the configured age;
- `sink`: the sink interface and its errors;
- `stdout`, `webhook` (with `signing` and its `httpclient`), `brokers` (Redis Streams, NATS
  JetStream): the sinks; `build` makes them from the config;
- `loop`: the private asyncio loop the webhook and NATS sinks share.

Every sink sends the same event, in the wire format of `syncd.core.events`.
"""

from __future__ import annotations

from syncd.publish.build import build_sink
from syncd.publish.publisher import DeliveryReport, Publisher
from syncd.publish.sink import Sink

__all__ = ["DeliveryReport", "Publisher", "Sink", "build_sink"]
