"""Status sinks: stdout, webhooks, Redis Streams and NATS JetStream, and their options."""

from __future__ import annotations

import base64
import binascii
import os
import re
from datetime import timedelta
from typing import Any

from syncd.config.base import ReaderBase
from syncd.config.model import SECRET_KEYS, SINK_TYPES, Options, SinkConfig
from syncd.config.table import Table

__all__ = ["SinksReader", "webhook_secret_problem"]

WHSEC_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24  # Standard Webhooks: a key of 24 to 64 bytes


def webhook_secret_problem(secret: str) -> str | None:
    """Why a webhook ``secret`` cannot sign (without showing it), or None. The key is
    ``whsec_<base64>`` decoded, or any other secret as UTF-8. The same rule as
    ``syncd.publish.signing.secret_problem``, which this layer cannot import (a test keeps
    the two in step)."""
    if secret.startswith(WHSEC_PREFIX):
        encoded = secret[len(WHSEC_PREFIX):]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            return "is not whsec_ followed by base64"
        shown = "decodes to"
    else:
        try:
            key, shown = secret.encode("utf-8"), "is"
        except UnicodeEncodeError:  # from the environment, bytes that are not UTF-8
            return "must be UTF-8 text"
    if len(key) < MIN_SECRET_BYTES:
        return (f"{shown} {len(key)} bytes; a webhook secret needs at least {MIN_SECRET_BYTES} "
                f"(for example whsec_ and the base64 of 32 random bytes)")
    return None


class SinksReader(ReaderBase):
    def sinks(self, tables: list[Table]) -> tuple[SinkConfig, ...]:
        explicit: dict[str, str] = {}
        for t in tables:
            if t.has("name"):
                name = t.string("name")
                if name in explicit:
                    t.fail("name", f"duplicate sink name {name!r} (also {explicit[name]})")
                explicit[name] = t.path
        taken = set(explicit)
        counts: dict[str, int] = {}
        sinks: list[SinkConfig] = []
        for t in tables:
            kind = t.choice("type", SINK_TYPES)
            counts[kind] = counts.get(kind, 0) + 1
            if t.has("name"):
                name = t.data["name"]
            else:
                # "webhook", "webhook-2", ...: numbered by position among sinks of its type.
                n = counts[kind]
                name = kind if n == 1 else f"{kind}-{n}"
                while name in taken:
                    n += 1
                    name = f"{kind}-{n}"
                taken.add(name)
            sinks.append(SinkConfig(type=kind, name=name, options=self.sink_options(t, kind)))
        return tuple(sinks)

    def sink_options(self, t: Table, kind: str) -> Options:
        if kind == "stdout":
            t.allow(("type", "name"))
            return Options()
        if kind in ("redis", "nats"):
            return self.broker_options(t, kind)
        t.allow(("type", "name", "url", "secret", "secret_env", "timeout", "max_attempts", "concurrency", "ca_bundle"))
        data, from_env = self.resolve_env(t, ("secret",))
        self.note_inline(t, ("secret",))
        resolved = Table(t.file, t.path, data)
        url = resolved.string("url")
        self.http_url(resolved, "url", url)
        options: dict[str, Any] = {"url": url, "timeout": resolved.duration("timeout", timedelta(seconds=10))}
        if "secret" in data:
            options["secret"] = resolved.string("secret")
            problem = webhook_secret_problem(options["secret"])
            if problem is not None:  # no value in the message: it is the secret
                if "secret" in from_env:
                    t.fail("secret_env", f"the secret in {t.data['secret_env']} {problem}")
                resolved.fail("secret", problem)
        if "max_attempts" in data:
            options["max_attempts"] = resolved.integer("max_attempts", minimum=1)
        if "concurrency" in data:
            options["concurrency"] = resolved.integer("concurrency", minimum=1)
            if options["concurrency"] > 64:
                resolved.fail("concurrency", f"must be at most 64, got {options['concurrency']}")
        if "ca_bundle" in data:
            options["ca_bundle"] = self.path(resolved.string("ca_bundle"))
            if not os.path.isfile(options["ca_bundle"]):
                resolved.fail("ca_bundle", f"no such file: {options['ca_bundle']} (a PEM file of the CAs to trust)")
        return Options(options, secret=SECRET_KEYS | from_env)

    def broker_options(self, t: Table, kind: str) -> Options:
        """``redis``: url, stream, maxlen (0: no trimming), timeout; ``nats``: url, subject, stream,
        timeout. Only keys given are set (the sink has defaults), except ``timeout``."""
        extra = ("stream", "maxlen") if kind == "redis" else ("subject", "stream")
        t.allow(("type", "name", "url", "url_env", "timeout", *extra))
        data, from_env = self.resolve_env(t, ("url",))
        resolved = Table(t.file, t.path, data)
        options: dict[str, Any] = {}
        if "url" in data:
            options["url"] = self.broker_url(resolved, kind, resolved.string("url"))
        if kind == "redis":
            if "stream" in data:
                options["stream"] = resolved.string("stream")
            if "maxlen" in data:
                options["maxlen"] = resolved.integer("maxlen", minimum=0)
        else:
            if "subject" in data:
                subject = resolved.string("subject")
                if not re.fullmatch(r"[^.*>\s]+(\.[^.*>\s]+)*", subject):
                    t.fail("subject", f"expected dot-separated tokens without wildcards or spaces, got {subject!r}")
                options["subject"] = subject
            if "stream" in data:
                stream = resolved.string("stream")
                if not re.fullmatch(r"[^.*>/\\\s]+", stream):
                    t.fail("stream", f"a stream name cannot contain spaces, '.', '*', '>', '/' or '\\', got {stream!r}")
                options["stream"] = stream
        options["timeout"] = resolved.duration("timeout", timedelta(seconds=5))
        return Options(options, secret=SECRET_KEYS | from_env)

    def broker_url(self, table: Table, kind: str, value: str) -> str:
        schemes = ("redis", "rediss", "unix") if kind == "redis" else ("nats", "tls", "ws", "wss")
        # NATS takes several servers separated by commas. No value in the message: URLs may carry a password.
        for url in value.split(",") if kind == "nats" else [value]:
            match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://(\S+)", url.strip())
            if match is None or match[1].lower() not in schemes:
                table.fail("url", f"expected a {kind} URL ({', '.join(s + '://' for s in schemes)})")
        return value


