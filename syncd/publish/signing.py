"""Webhook signatures: every signed request carries two, made with the same secret.

* **Standard Webhooks** (https://www.standardwebhooks.com, the symmetric ``v1`` scheme)::

      webhook-id: <event id>
      webhook-timestamp: <unix seconds>
      webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>." + raw body)>

  The key is the secret's bytes: a secret written ``whsec_<base64>`` is that base64 decoded,
  any other secret is its UTF-8 bytes. The event id is inside the MAC, so a captured request
  cannot be replayed under a fresh id (receivers drop repeats by id). Several signatures,
  space-separated, may be given; any may match. `verify_standard` checks one.
* **Syncd-Signature**, kept unchanged for receivers written against it::

      Syncd-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret as UTF-8, "<t>." + raw body)>

  (the whole secret as UTF-8, ``whsec_`` included). `verify_signature` checks it.

Both verify functions return False, and never raise, whatever the headers hold. Written so
that a receiver can copy them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

__all__ = [
    'EVENT_ID_HEADER', 'MIN_SECRET_BYTES', 'SIGNATURE_HEADER', 'WEBHOOK_ID_HEADER', 'WEBHOOK_SIGNATURE_HEADER',
    'WEBHOOK_TIMESTAMP_HEADER', 'secret_problem', 'sign', 'signing_key', 'standard_headers', 'standard_signature',
    'verify_signature', 'verify_standard',
]

SIGNATURE_HEADER = "Syncd-Signature"
EVENT_ID_HEADER = "Syncd-Event-Id"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
# The Standard Webhooks specification: a key of 24 to 64 bytes.
MIN_SECRET_BYTES = 24
# A unix time in seconds has 10 digits until the year 2286; anything much longer is not one
# (and `int` refuses strings of over 4300 digits by raising).
_MAX_TIMESTAMP_DIGITS = 15


# -- the key -------------------------------------------------------------------------------------


def signing_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks signature: ``whsec_<base64>`` decoded, any other
    secret as UTF-8. `ValueError` if a ``whsec_`` secret is not base64 (padding may be left out)."""
    if not secret.startswith(SECRET_PREFIX):
        try:
            return secret.encode("utf-8")
        except UnicodeEncodeError:  # from the environment, bytes that are not UTF-8
            raise ValueError("must be UTF-8 text") from None
    encoded = secret[len(SECRET_PREFIX):]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not whsec_ followed by base64") from None


def secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign webhooks (without showing it), or None if it can."""
    try:
        key = signing_key(secret)
    except ValueError as exc:
        return str(exc)
    if len(key) < MIN_SECRET_BYTES:
        shown = "decodes to" if secret.startswith(SECRET_PREFIX) else "is"
        return (f"{shown} {len(key)} bytes; a webhook secret needs at least {MIN_SECRET_BYTES} "
                f"(for example whsec_ and the base64 of 32 random bytes)")
    return None


# -- Standard Webhooks ---------------------------------------------------------------------------


def standard_signature(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64>``: the ``webhook-signature`` of ``body`` with id ``msg_id`` sent at
    ``timestamp``. ``secret`` is the secret as configured (str) or the key itself (bytes)."""
    key = secret if isinstance(secret, bytes) else signing_key(secret)
    return "v1," + base64.b64encode(_standard_digest(key, msg_id, str(timestamp), body)).decode("ascii")


def standard_headers(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` sent at ``timestamp`` (unix seconds)."""
    return {
        WEBHOOK_ID_HEADER: msg_id,
        WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
        WEBHOOK_SIGNATURE_HEADER: standard_signature(secret, msg_id, timestamp, body),
    }


def _standard_digest(key: bytes, msg_id: str, stamp: str, body: bytes) -> bytes:
    # The header values as sent: the id (UTF-8), the timestamp's digits.
    signed = msg_id.encode("utf-8", "surrogatepass") + b"." + stamp.encode("ascii") + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def verify_standard(secret: str | bytes, headers: Mapping[str, str], body: bytes, *, now: int,
                    tolerance: int = 300) -> bool:
    """True if ``headers`` (names in any case) carry a Standard Webhooks signature of the raw
    ``body`` by ``secret`` (as configured, or the key as bytes), timestamped within
    ``tolerance`` seconds of ``now`` (either way).

    Any of several space-separated ``v1,`` signatures may match; other versions are ignored.
    Returns False, never raises, on any header value (or on a ``whsec_`` secret that is not
    base64)."""
    try:
        key = secret if isinstance(secret, bytes) else signing_key(secret)
    except ValueError:
        return False
    found: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(name, str) and isinstance(value, str):
            found[name.lower()] = value
    msg_id = found.get(WEBHOOK_ID_HEADER, "")
    stamp = found.get(WEBHOOK_TIMESTAMP_HEADER, "").strip()
    signatures = found.get(WEBHOOK_SIGNATURE_HEADER, "")
    if not key or not msg_id or not signatures:
        return False
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > _MAX_TIMESTAMP_DIGITS:
        return False
    if abs(now - int(stamp)) > tolerance:
        return False
    expected = _standard_digest(key, msg_id, stamp, body)
    matched = False
    for entry in signatures.split(" "):
        version, sep, encoded = entry.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        # compare_digest on every candidate: the time taken does not reveal which one matched.
        matched = hmac.compare_digest(expected, candidate) or matched
    return matched


# -- Syncd-Signature -----------------------------------------------------------------------------


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
    if not isinstance(header_value, str):
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header_value.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit() \
                    or len(value) > _MAX_TIMESTAMP_DIGITS:
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
