"""The webhook signature: ``Syncd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>``.

Written so that a receiver can copy `verify_signature`."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ['EVENT_ID_HEADER', 'SIGNATURE_HEADER', 'sign', 'verify_signature']

SIGNATURE_HEADER = "Syncd-Signature"
EVENT_ID_HEADER = "Syncd-Event-Id"


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


