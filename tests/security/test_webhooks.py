"""Webhook signatures: Standard Webhooks on every signed request (checked by the third-party
``standardwebhooks`` verifier), the event id inside the MAC, ``Syncd-Signature`` kept as it
was, secrets long enough to be keys, and verify functions that never raise."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from syncd.cli import main
from syncd.config import load_config
from syncd.config.sinks import webhook_secret_problem
from syncd.core.errors import ConfigError
from syncd.publish.build import build_sink
from syncd.publish.signing import (
    secret_problem,
    sign,
    signing_key,
    standard_signature,
    verify_signature,
    verify_standard,
)
from syncd.publish.webhook import WebhookSink
from tests.known_secrets import register

KEY = b"\x8a syncd security test key \x00\xff 32"  # 32 bytes, not all of them text
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
PLAIN = "plain-secret-for-the-helpdesk-2026"  # not whsec_: its UTF-8 bytes are the key (34)
register(WHSEC, WHSEC.removeprefix("whsec_"), PLAIN)

EVENT: dict[str, Any] = {
    "id": "0b1e6c0e9d3a4c2f8e5b7a6d1c0f9e8d",
    "type": "status.changed",
    "user": {"id": "åsa", "email": "asa@example.com"},
    "status": "away",
    "previous": "available",
    "reason": "ooo_started",
    "effective_at": "2026-12-21T23:00:00Z",
    "block": None,
}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


# -- a loopback receiver -------------------------------------------------------------------------


class Receiver:
    """Records each POST (headers as sent, raw body) and answers 204."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/syncd"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01})
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    r = Receiver()
    try:
        yield r
    finally:
        r.stop()


def deliver(url: str, secret: str, event: dict[str, Any] = EVENT, **kwargs: Any) -> None:
    sink = WebhookSink("helpdesk", url, secret, 5.0, **kwargs)
    try:
        sink.deliver(event)
    finally:
        sink.close()


# -- Standard Webhooks, checked by the standardwebhooks package -----------------------------------


def test_a_delivery_verifies_with_standardwebhooks_for_a_whsec_secret(receiver: Receiver) -> None:
    deliver(receiver.url, WHSEC)
    [(headers, body)] = receiver.requests
    assert Webhook(WHSEC).verify(body, headers) == EVENT
    assert headers["webhook-id"] == EVENT["id"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"another key of thirty-two bytes!").decode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(WHSEC).verify(body.replace(b'"away"', b'"available"'), headers)


def test_a_delivery_verifies_for_a_plain_secret_keyed_by_its_utf8_bytes(receiver: Receiver) -> None:
    """standardwebhooks reads a text secret as base64 even without ``whsec_``; given bytes,
    it uses them as the key. So: the third-party verifier with the UTF-8 bytes, and an
    independent HMAC computed here."""
    deliver(receiver.url, PLAIN)
    [(headers, body)] = receiver.requests
    assert Webhook(PLAIN.encode("utf-8")).verify(body, headers) == EVENT
    with pytest.raises((WebhookVerificationError, ValueError)):
        Webhook(PLAIN).verify(body, headers)  # the library's base64 reading of the text: another key

    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    mac = base64.b64encode(hmac.new(PLAIN.encode("utf-8"), signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"].split(" ") == [f"v1,{mac}"]


def test_a_replay_under_a_fresh_webhook_id_fails_verification(receiver: Receiver) -> None:
    deliver(receiver.url, WHSEC)
    [(headers, body)] = receiver.requests
    replayed = {**headers, "webhook-id": "f" * 32}  # the same body and signature, a new id
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(WHSEC).verify(body, replayed)
    now = int(time.time())
    assert not verify_standard(WHSEC, replayed, body, now=now)
    assert verify_standard(WHSEC, headers, body, now=now)  # under its own id: a repeat, dropped by id


def test_our_signature_matches_the_libraries_for_a_fixed_vector() -> None:
    body = b'{"id":"evt-1","status":"away"}'
    theirs = Webhook(WHSEC).sign("evt-1", datetime.fromtimestamp(1_700_000_000, UTC), body.decode())
    assert standard_signature(WHSEC, "evt-1", 1_700_000_000, body) == theirs
    assert standard_signature(KEY, "evt-1", 1_700_000_000, body) == theirs
    assert signing_key(WHSEC) == KEY and signing_key(WHSEC.rstrip("=")) == KEY  # padding may be left out
    assert signing_key(PLAIN) == PLAIN.encode("utf-8")


def test_the_syncd_signature_is_still_sent_unchanged(receiver: Receiver) -> None:
    deliver(receiver.url, WHSEC)
    [(headers, body)] = receiver.requests
    stamp = int(headers["webhook-timestamp"])
    assert headers["Syncd-Signature"] == sign(WHSEC, stamp, body)  # the whole secret, as UTF-8, as before
    assert verify_signature(WHSEC, headers["Syncd-Signature"], body, now=stamp)
    assert headers["Syncd-Event-Id"] == EVENT["id"]


def test_signing_ahead_gives_the_headers_signing_at_that_instant_would(receiver: Receiver) -> None:
    instant = float(int(time.time()) + 2)
    clock = [instant - 4.8]
    ahead = WebhookSink("helpdesk", receiver.url, WHSEC, 5.0, clock=lambda: clock[0])
    ahead.prepare([EVENT], instant)  # a few seconds early, as the publisher does
    clock[0] = instant + 1.3  # sent a little late: still as prepared, signed as of the instant
    ahead.deliver(EVENT)
    ahead.close()
    deliver(receiver.url, WHSEC, clock=lambda: instant)  # not prepared: signed when sent

    (prepared, body_a), (fresh, body_b) = receiver.requests
    assert body_a == body_b
    signing = ("Syncd-Event-Id", "Syncd-Signature", "webhook-id", "webhook-timestamp", "webhook-signature")
    assert {k: prepared[k] for k in signing} == {k: fresh[k] for k in signing}
    assert prepared["webhook-timestamp"] == str(int(instant))
    assert Webhook(WHSEC).verify(body_a, prepared) == EVENT


# -- secrets long enough to be keys --------------------------------------------------------------


def config_error(tmp_path: Path, secret_line: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "syncd.toml"
    path.write_text(f'[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\n{secret_line}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ=environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}: ")


@pytest.mark.parametrize(("secret", "error"), [
    ("webhook-s3cret", "sinks[0].secret: is 14 bytes; a webhook secret needs at least 24"),
    ("x" * 23, "sinks[0].secret: is 23 bytes; a webhook secret needs at least 24"),
    ("whsec_" + base64.b64encode(b"k" * 23).decode(), "sinks[0].secret: decodes to 23 bytes; a webhook secret"),
    ("whsec_this is not base64 at all, far from it", "sinks[0].secret: is not whsec_ followed by base64"),
])
def test_a_short_webhook_secret_is_a_config_error_naming_the_key(tmp_path: Path, secret: str, error: str) -> None:
    message = config_error(tmp_path, f'secret = "{secret}"')
    assert message.startswith(error)
    assert secret not in message


def test_a_short_secret_from_the_environment_names_secret_env(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'secret_env = "HOOK_SECRET"', {"HOOK_SECRET": "webhook-s3cret"})
    assert message.startswith("sinks[0].secret_env: the secret in HOOK_SECRET is 14 bytes; a webhook secret needs")
    assert "webhook-s3cret" not in message


def test_check_config_reports_a_short_secret_on_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "syncd.toml").write_text('[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\n'
                                         'secret = "webhook-s3cret"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["--config", "syncd.toml", "check-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "syncd.toml: sinks[0].secret: is 14 bytes" in err
    assert "webhook-s3cret" not in err


@pytest.mark.parametrize("secret", ["x" * 24, "å" * 12, WHSEC, PLAIN, "whsec_" + base64.b64encode(b"k" * 24).decode()])
def test_secrets_of_24_bytes_and_more_are_accepted(tmp_path: Path, secret: str) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text(f'[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\nsecret = "{secret}"\n',
                    encoding="utf-8")
    assert load_config(str(path), environ={}).sinks[0].options["secret"] == secret
    build_sink(SimpleNamespace(type="webhook", name="main", options={"url": "https://h/x", "secret": secret})).close()


@pytest.mark.parametrize("secret", ["webhook-s3cret", "whsec_" + base64.b64encode(b"k" * 23).decode(), "whsec_*"])
def test_build_sink_refuses_a_short_secret_too(secret: str) -> None:
    config = SimpleNamespace(type="webhook", name="main", options={"url": "https://h/x", "secret": secret})
    with pytest.raises(ConfigError, match=r"^sink 'main': secret (is|decodes to) ") as caught:
        build_sink(config)
    assert secret not in str(caught.value)


@given(st.one_of(st.text(max_size=80), st.builds(lambda b: "whsec_" + base64.b64encode(b).decode(),
                                                  st.binary(max_size=40))))
@example("whsec_" + "A" * 31)
@example("whsec_YWJj=")
@example("\udcff" * 30)  # from the environment: bytes that are not UTF-8
def test_the_config_and_the_sink_apply_one_rule(secret: str) -> None:
    assert webhook_secret_problem(secret) == secret_problem(secret)


# -- verifying never raises ------------------------------------------------------------------------

NOW = 1_700_000_000
GOOD = sign(WHSEC, NOW, b"{}")
GOOD_MAC = "v1=" + dict(part.split("=", 1) for part in GOOD.split(","))["v1"]  # without its timestamp

header_values = st.one_of(
    st.text(),
    st.binary().map(lambda b: b.decode("latin-1")),
    st.builds(lambda n: f"t={n},v1=00", st.integers(min_value=-(10**40), max_value=10**40)),
    st.builds(lambda n: f"t={'9' * n},{GOOD_MAC}", st.integers(min_value=1, max_value=6000)),
    st.builds(lambda parts: ",".join(parts), st.lists(st.sampled_from(
        # the good MAC with another timestamp, never its own: no join of these is a valid header
        ["t=", "v1=", "t", "=", "", " ", GOOD_MAC, f"t={NOW + 1}", "t=١٧٠٠", "v1=ÅÄÖ", "t=²"]))),
)


@settings(max_examples=300, deadline=None)
@given(header_values)
@example("")
@example("t=" + "9" * 5000 + ",v1=00")  # more digits than int() takes
@example("t=١٧٠٠٠٠٠٠٠٠,v1=00")
@example("t=,v1=")
@example(GOOD_MAC)
def test_verify_signature_returns_false_and_never_raises(value: str) -> None:
    assert verify_signature(WHSEC, value, b"{}", now=NOW) is False


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE", "webhook-timestamp",
                                        "webhook-signature", "other"]), header_values, max_size=4))
@example({})
@example({"webhook-id": "e", "webhook-timestamp": "9" * 5000, "webhook-signature": "v1,AAAA"})
@example({"webhook-id": "e", "webhook-timestamp": "١٧٠٠٠٠٠٠٠٠", "webhook-signature": "v1,AAAA"})
@example({"webhook-id": "e", "webhook-timestamp": str(NOW), "webhook-signature": "v1,***,v1 v1, ,v1,=== v2,x"})
@example({"webhook-id": "\udcff", "webhook-timestamp": str(NOW), "webhook-signature": "v1,AAAA"})
def test_verify_standard_returns_false_and_never_raises(headers: dict[str, str]) -> None:
    assert verify_standard(WHSEC, headers, b"{}", now=NOW) is False


@given(st.text(), st.text())
def test_verify_standard_with_a_bad_or_missing_part_is_false(msg_id: str, stamp: str) -> None:
    good = {"webhook-id": "evt", "webhook-timestamp": str(NOW),
            "webhook-signature": standard_signature(WHSEC, "evt", NOW, b"{}")}
    assert verify_standard(WHSEC, good, b"{}", now=NOW)
    for name in good:
        assert not verify_standard(WHSEC, {k: v for k, v in good.items() if k != name}, b"{}", now=NOW)
    if msg_id != "evt":
        assert not verify_standard(WHSEC, {**good, "webhook-id": msg_id}, b"{}", now=NOW)
    if stamp.strip() != str(NOW):
        assert not verify_standard(WHSEC, {**good, "webhook-timestamp": stamp}, b"{}", now=NOW)
    assert not verify_standard("whsec_not base64!", good, b"{}", now=NOW)


# -- the receiver in the docs ----------------------------------------------------------------------


def test_the_documented_receiver_verifies_a_real_delivery(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("#### Verifying with Standard Webhooks", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    lines = [line for line in code[1].splitlines() if line.strip()]
    assert len(lines) <= 6  # about five lines
    assert "#### Verifying the Syncd-Signature" in text and "verify_signature" in text

    monkeypatch.setenv("SYNCD_WEBHOOK_SECRET", WHSEC)
    namespace: dict[str, Any] = {}
    exec(compile(code[1], str(DOCS), "exec"), namespace)  # noqa: S102 - our own documentation
    deliver(receiver.url, WHSEC)
    [(headers, body)] = receiver.requests
    assert namespace["receive"](body, headers) == EVENT
    with pytest.raises(WebhookVerificationError):
        namespace["receive"](body, {**headers, "webhook-id": "forged"})
    message = Message()  # headers as a framework hands them over: names in any case
    for name, value in headers.items():
        message[name.upper()] = value
    assert namespace["receive"](body, dict(message.items())) == EVENT
