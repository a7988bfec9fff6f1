"""Sinks made from the config file's ``[[sinks]]`` entries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from syncd.core.errors import ConfigError
from syncd.publish.signing import secret_problem
from syncd.publish.sink import Sink
from syncd.publish.stdout import StdoutSink
from syncd.publish.webhook import WebhookSink

__all__ = ['build_sink']

def build_sink(config: Any) -> Sink:
    """Make a sink from a config entry with ``type``, ``name`` and ``options`` (a mapping).

    Webhook options: ``url`` (required), ``secret`` (str, optional; the config layer resolves
    ``secret_env``; ``whsec_<base64>`` or any other text, giving a key of at least 24 bytes,
    checked here as the config loader does), ``timeout`` (``timedelta`` or seconds, default 10 s), ``concurrency``
    (1–64, default 8), ``ca_bundle`` (PEM file of the CAs to trust instead of the system's). Other option keys
    are left to the publisher (retry and dead-letter settings).

    Broker sinks (`syncd.publish.brokers`, needing ``pip install 'syncd[brokers]'``), every option
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
        problem = secret_problem(secret) if secret else None
        if problem is not None:  # no value in the message: it is the secret
            raise ConfigError(f"sink {name!r}: secret {problem}")
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
        from syncd.publish import brokers

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
