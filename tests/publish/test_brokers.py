"""Broker sinks against the real servers: Redis (Streams) and NATS with JetStream.

The servers are taken from ``SYNCD_TEST_REDIS_URL`` and ``SYNCD_TEST_NATS_URL`` (default: the
local ones). A server that cannot be reached skips its tests, except under ``CI`` where it
fails them: CI must run these. Every test uses its own key / stream and removes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from syncd.config import SinkConfig
from syncd.core.coverage import COVERAGE_LOW, CoverageCrossing
from syncd.core.errors import ConfigError, TransientError
from syncd.core.events import coverage_event
from syncd.publish.brokers import NatsJetStreamSink, RedisStreamSink, nats_subject_token
from syncd.publish.build import build_sink
from syncd.publish.publisher import Publisher
from syncd.publish.sink import PermanentDeliveryError
from tests.conftest import Harness, user

try:
    import nats
    import nats.js.errors
    import redis
except ImportError as missing:  # pragma: no cover - the test extra installs both
    if os.environ.get("CI"):
        raise
    pytest.skip(f"{missing.name} is not installed: pip install 'syncd[brokers]'", allow_module_level=True)

REDIS_URL = os.environ.get("SYNCD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NATS_URL = os.environ.get("SYNCD_TEST_NATS_URL", "nats://127.0.0.1:4222")
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _redis_problem() -> str | None:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"Redis not reachable at {REDIS_URL} ({_first_line(exc)})"
    return None


def _nats_problem() -> str | None:
    seen: list[Exception] = []

    async def remember(exc: Exception) -> None:
        seen.append(exc)

    async def probe() -> None:
        nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=1,
                                reconnect_time_wait=0, error_cb=remember)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # noqa: BLE001
        cause = seen[-1] if isinstance(exc, nats.errors.NoServersError) and seen else exc
        return f"NATS with JetStream not reachable at {NATS_URL} ({_first_line(cause)})"
    return None


async def _ignore(exc: Exception) -> None:
    pass


_PROBLEMS: dict[str, str | None] = {}


def _need(server: str) -> None:
    if server not in _PROBLEMS:
        _PROBLEMS[server] = _redis_problem() if server == "redis" else _nats_problem()
    problem = _PROBLEMS[server]
    if problem:
        variable = "SYNCD_TEST_REDIS_URL" if server == "redis" else "SYNCD_TEST_NATS_URL"
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the broker tests")
        pytest.skip(f"{problem}; start it or set {variable} to run these")


def event(n: int, user_id: str, status: str = "away") -> dict[str, Any]:
    """An outbox event shaped like the ones the status recorder writes."""
    return {
        "id": f"evt-{uuid.uuid4().hex[:8]}-{n}",
        "type": "status.changed",
        "user": {"id": user_id, "email": f"{user_id}@example.com"},
        "status": status,
        "previous": "available" if status == "away" else "away",
        "reason": "manual",
        "effective_at": f"2026-03-02T09:{n:02d}:00Z",
        "block": {"id": "blk-1", "start": "2026-03-02T09:00:00Z", "end": "2026-03-03T09:00:00Z",
                  "title": "Semester – Åsa"},
    }


def compact(e: Mapping[str, Any]) -> bytes:
    return json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def interleaved() -> list[dict[str, Any]]:
    return [event(n, who, "away" if n % 2 == 0 else "available") for n in range(5) for who in ("alice", "bob")]


# -- Redis fixtures ----------------------------------------------------------------------------


@pytest.fixture
def rclient() -> Iterator[Any]:
    _need("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    yield client
    client.close()


@pytest.fixture
def rkey(rclient: Any) -> Iterator[str]:
    key = f"syncd-test:{uuid.uuid4().hex}"
    yield key
    rclient.delete(key)


def entries(client: Any, key: str) -> list[dict[str, bytes]]:
    return [{k.decode(): v for k, v in fields.items()} for _, fields in client.xrange(key)]


# -- NATS fixtures -----------------------------------------------------------------------------


class JetStreamView:
    """A test's own stream: its name, the sink subject it captures, and what it holds."""

    def __init__(self) -> None:
        token = uuid.uuid4().hex[:12]
        self.name = f"SYNCD_TEST_{token}"
        self.subject = f"syncd-test.{token}"

    def _run(self, work: Callable[[Any], Any]) -> Any:
        async def go() -> Any:
            nc = await nats.connect(NATS_URL, connect_timeout=3, allow_reconnect=False, error_cb=_ignore)
            try:
                return await work(nc.jetstream(timeout=5))
            finally:
                await nc.close()
        return asyncio.run(go())

    def messages(self) -> list[Any]:
        async def work(js: Any) -> list[Any]:
            info = await js.stream_info(self.name)
            return [await js.get_msg(self.name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
        return list(self._run(work))

    def count(self) -> int:
        async def work(js: Any) -> int:
            return int((await js.stream_info(self.name)).state.messages)
        return int(self._run(work))

    def exists(self) -> bool:
        async def work(js: Any) -> bool:
            try:
                await js.stream_info(self.name)
            except nats.js.errors.NotFoundError:
                return False
            return True
        return bool(self._run(work))

    def delete(self) -> None:
        async def work(js: Any) -> None:
            try:
                await js.delete_stream(self.name)
            except nats.js.errors.NotFoundError:
                pass
        self._run(work)


@pytest.fixture
def jstream() -> Iterator[JetStreamView]:
    _need("nats")
    view = JetStreamView()
    yield view
    view.delete()


def nats_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("syncd-nats-")]


# -- Redis -------------------------------------------------------------------------------------


def test_redis_events_arrive_in_order_with_exact_fields(rclient: Any, rkey: str) -> None:
    events = interleaved()
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey) as sink:
        for e in events:
            sink.deliver(e)
    got = entries(rclient, rkey)
    assert got == [
        {"id": e["id"].encode(), "user": e["user"]["id"].encode(), "type": b"status.changed", "body": compact(e)}
        for e in events
    ]
    for who in ("alice", "bob"):  # each user's events in the order given
        assert [g["id"] for g in got if g["user"] == who.encode()] == [
            e["id"].encode() for e in events if e["user"]["id"] == who
        ]


def test_a_teams_coverage_event_is_keyed_by_the_team(rclient: Any, rkey: str) -> None:
    low = coverage_event("c1", "support", CoverageCrossing(COVERAGE_LOW, datetime(2026, 12, 24, 8, tzinfo=UTC), 1, 2))
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey) as sink:
        sink.deliver(low)
    assert entries(rclient, rkey) == [{"id": b"c1", "user": b"team:support", "type": b"coverage.low",
                                       "body": compact(low)}]


def test_redis_redelivery_adds_an_entry_with_the_same_id(rclient: Any, rkey: str) -> None:
    e = event(1, "alice")
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey) as sink:
        sink.deliver(e)
        sink.deliver(e)  # at least once: Redis keeps both, consumers drop by id
    assert [g["id"] for g in entries(rclient, rkey)] == [e["id"].encode()] * 2


def test_redis_maxlen_trims_approximately(rclient: Any, rkey: str) -> None:
    events = [event(n % 60, "alice") for n in range(400)]
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey, maxlen=10) as sink:
        for e in events:
            sink.deliver(e)
    length = rclient.xlen(rkey)
    # "~ MAXLEN": Redis drops whole nodes (stream-node-max-entries, 100 by default), never below 10.
    assert 10 <= length < 200
    assert [g["id"] for g in entries(rclient, rkey)] == [e["id"].encode() for e in events[-length:]]


def test_redis_without_maxlen_keeps_everything(rclient: Any, rkey: str) -> None:
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey, maxlen=None) as sink:
        for n in range(250):
            sink.deliver(event(n % 60, "alice"))
    assert rclient.xlen(rkey) == 250


def test_redis_wrongtype_is_permanent(rclient: Any, rkey: str) -> None:
    rclient.set(rkey, "not a stream")
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey) as sink, pytest.raises(PermanentDeliveryError) as caught:
        sink.deliver(event(1, "alice"))
    message = str(caught.value)
    assert message.startswith("redis sink 'r': XADD refused by ")
    assert message.endswith(f": key {rkey!r} holds something other than a stream")


def test_redis_reconnects_after_the_server_drops_the_connection(rclient: Any, rkey: str) -> None:
    before = {c["id"] for c in rclient.client_list()}
    with RedisStreamSink("r", url=REDIS_URL, stream=rkey) as sink:
        sink.deliver(event(1, "alice"))
        theirs = [c["id"] for c in rclient.client_list() if c["id"] not in before and c["cmd"] == "xadd"]
        assert theirs, "the sink's connection should be listed"
        for client_id in theirs:
            rclient.client_kill_filter(_id=client_id)
        sink.deliver(event(2, "alice"))  # the dead pooled connection is replaced, no error
    assert len(entries(rclient, rkey)) == 2


def test_redis_close_is_clean_and_the_sink_connects_again(rclient: Any, rkey: str) -> None:
    sink = RedisStreamSink("r", url=REDIS_URL, stream=rkey)
    sink.close()  # never connected: nothing to do
    sink.deliver(event(1, "alice"))
    sink.close()
    sink.close()
    sink.deliver(event(2, "alice"))  # lazily connects again
    sink.close()
    assert rclient.xlen(rkey) == 2


# -- NATS JetStream ----------------------------------------------------------------------------


def test_nats_events_arrive_in_order_per_user_subject(jstream: JetStreamView) -> None:
    events = interleaved()
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        for e in events:
            sink.deliver(e)
    got = jstream.messages()
    assert [(m.subject, m.data, m.headers["Nats-Msg-Id"]) for m in got] == [
        (f"{jstream.subject}.{e['user']['id']}", compact(e), e["id"]) for e in events
    ]


def test_nats_redelivery_is_deduplicated_by_jetstream(jstream: JetStreamView) -> None:
    first, second = event(1, "alice"), event(2, "alice")
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        sink.deliver(first)
        sink.deliver(first)  # same Nats-Msg-Id inside the duplicate window
        sink.deliver(second)
        sink.deliver(first)
    assert jstream.count() == 2
    assert [m.headers["Nats-Msg-Id"] for m in jstream.messages()] == [first["id"], second["id"]]


def test_nats_creates_the_stream_once_and_uses_an_existing_one(jstream: JetStreamView) -> None:
    assert not jstream.exists()
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        sink.deliver(event(1, "alice"))
    assert jstream.exists()
    with NatsJetStreamSink("n2", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as again:
        again.deliver(event(2, "bob"))
    assert jstream.count() == 2


def test_nats_user_ids_become_one_subject_token(jstream: JetStreamView) -> None:
    assert nats_subject_token("alice") == "alice"
    assert nats_subject_token("a.b c*>%") == "a%2Eb%20c%2A%3E%25"
    assert nats_subject_token("åsa@example.com") == "%C3%A5sa@example%2Ecom"
    e = event(1, "åsa.lind@example.com")
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        sink.deliver(e)
        assert sink.subject_for("åsa.lind@example.com") == f"{jstream.subject}.%C3%A5sa%2Elind@example%2Ecom"
    (m,) = jstream.messages()
    assert m.subject == f"{jstream.subject}.%C3%A5sa%2Elind@example%2Ecom"
    assert json.loads(m.data)["user"]["id"] == "åsa.lind@example.com"


def test_nats_without_a_stream_for_the_subject_is_permanent(jstream: JetStreamView) -> None:
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, timeout=2) as sink, \
            pytest.raises(PermanentDeliveryError) as caught:
        sink.deliver(event(1, "alice"))
    assert str(caught.value) == (f"nats sink 'n': no JetStream stream stores subject '{jstream.subject}.alice'; "
                                 "set `stream` to have syncd create one")


def test_nats_reconnects_after_the_connection_is_lost(jstream: JetStreamView) -> None:
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        sink.deliver(event(1, "alice"))
        # Lose the connection under the sink (as a server restart would).
        nc = sink._nc
        assert nc is not None
        sink._loop.run(nc.close(), 5)
        sink.deliver(event(2, "alice"))
    assert jstream.count() == 2


def test_nats_close_is_clean_and_the_sink_starts_again(jstream: JetStreamView) -> None:
    assert nats_threads() == []
    sink = NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name)
    sink.close()  # never used: no thread was started
    assert nats_threads() == []
    sink.deliver(event(1, "alice"))
    assert [t.name for t in nats_threads()] == ["syncd-nats-n"]
    sink.close()
    assert nats_threads() == []
    sink.close()
    sink.deliver(event(2, "alice"))  # a fresh loop and connection
    sink.close()
    assert nats_threads() == []
    assert jstream.count() == 2


def test_nats_deliver_is_thread_safe(jstream: JetStreamView) -> None:
    events = [event(n, f"user{n % 4}") for n in range(40)]
    errors: list[BaseException] = []
    with NatsJetStreamSink("n", url=NATS_URL, subject=jstream.subject, stream=jstream.name) as sink:
        def work(part: list[dict[str, Any]]) -> None:
            try:
                for e in part:
                    sink.deliver(e)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=work, args=(events[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert errors == []
    got = jstream.messages()
    assert sorted(m.headers["Nats-Msg-Id"] for m in got) == sorted(e["id"] for e in events)
    for who in {e["user"]["id"] for e in events}:  # one thread per user: its order is kept
        assert [m.headers["Nats-Msg-Id"] for m in got if m.subject.endswith(f".{who}")] == [
            e["id"] for e in events if e["user"]["id"] == who
        ]


# -- failures without a server -----------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: RedisStreamSink("r", url=f"redis://syncd:pw-s3cret@{UNREACHABLE}/0", timeout=0.5),
    lambda: NatsJetStreamSink("n", url=f"nats://tok:pw-s3cret@{UNREACHABLE}", timeout=0.5),
    lambda: NatsJetStreamSink("n", url=f"nats://tok-s3cret@{UNREACHABLE}", timeout=0.5),
], ids=["redis", "nats", "nats-token"])
def test_unreachable_server_is_transient_one_line_and_quick(make: Callable[[], Any]) -> None:
    sink = make()
    try:
        for _ in range(2):  # and again: a failed connection is not kept
            started = time.monotonic()
            with pytest.raises(TransientError) as caught:
                sink.deliver(event(1, "alice"))
            assert time.monotonic() - started < 2.0
            message = str(caught.value)
            assert "\n" not in message and "s3cret" not in message
            assert message.startswith(f"{'redis' if sink.name == 'r' else 'nats'} sink {sink.name!r}: "
                                      f"cannot reach {UNREACHABLE}: ")
            assert "refused" in message.lower()
    finally:
        sink.close()
    assert nats_threads() == []


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield f"127.0.0.1:{server.getsockname()[1]}"


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_a_server_that_never_answers_times_out_as_transient(silent_server: str, kind: str) -> None:
    sink: RedisStreamSink | NatsJetStreamSink
    if kind == "redis":
        sink = RedisStreamSink("r", url=f"redis://{silent_server}/0", timeout=0.3)
    else:
        sink = NatsJetStreamSink("n", url=f"nats://{silent_server}", timeout=0.3)
    started = time.monotonic()
    with sink, pytest.raises(TransientError) as caught:
        sink.deliver(event(1, "alice"))
    assert time.monotonic() - started < 2.0
    assert f"cannot reach {silent_server}: " in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda: RedisStreamSink("x", url="http://127.0.0.1:6379"), "url must start with redis://"),
    (lambda: RedisStreamSink("x", url="redis://h:notaport/0"), "url is not a valid Redis URL"),
    (lambda: RedisStreamSink("x", stream=""), "stream must be a non-empty string"),
    (lambda: RedisStreamSink("x", maxlen=0), "maxlen must be a whole number"),
    (lambda: RedisStreamSink("x", timeout=0), "timeout must be a positive duration"),
    (lambda: NatsJetStreamSink("x", url="redis://127.0.0.1:4222"), "url must be nats://host:port"),
    (lambda: NatsJetStreamSink("x", url="nats://a:4222,"), "url must be nats://host:port"),
    (lambda: NatsJetStreamSink("x", subject="syncd.*"), "subject must be dot-separated tokens"),
    (lambda: NatsJetStreamSink("x", subject="syncd..status"), "subject must be dot-separated tokens"),
    (lambda: NatsJetStreamSink("x", stream="a.b"), "stream must be a name without"),
    (lambda: NatsJetStreamSink("x", timeout=float("inf")), "timeout must be a positive duration"),
])
def test_bad_arguments_are_config_errors(make: Callable[[], Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"sink 'x': {expected}")):
        make()


def test_events_without_id_or_user_are_bugs() -> None:
    from syncd.core.errors import Bug

    sink = RedisStreamSink("r", url=f"redis://{UNREACHABLE}/0")
    with pytest.raises(Bug, match="no 'id'"):
        sink.deliver({"user": {"id": "alice"}})
    with pytest.raises(Bug, match="no user id"):
        sink.deliver({"id": "e1", "user": {}})


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_missing_client_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setitem(sys.modules, kind, None)  # `import redis` / `import nats` now fails
    with pytest.raises(ConfigError) as caught:
        build_sink(SinkConfig(type=kind, name="b", options={}))
    assert str(caught.value).startswith(f"sink 'b': the {kind} sink needs the ")
    assert str(caught.value).endswith("pip install 'syncd[brokers]'")


# -- build_sink --------------------------------------------------------------------------------


def test_build_sink_makes_a_redis_sink(rclient: Any, rkey: str) -> None:
    sink = build_sink(SinkConfig(type="redis", name="r", options={
        "url": REDIS_URL, "stream": rkey, "maxlen": 0, "timeout": timedelta(seconds=2),
    }))
    assert isinstance(sink, RedisStreamSink)
    assert (sink.name, sink.stream, sink.maxlen, sink.timeout) == ("r", rkey, None, 2.0)
    with sink:
        sink.deliver(event(1, "alice"))
    assert rclient.xlen(rkey) == 1
    defaults = build_sink(SinkConfig(type="redis", name="d", options={}))
    assert isinstance(defaults, RedisStreamSink)
    assert (defaults.stream, defaults.maxlen, defaults.timeout) == ("syncd:status", 100_000, 5.0)
    secret = build_sink(SinkConfig(type="redis", name="s", options={"url": "redis://u:pw-s3cret@h:6379/0"}))
    assert "s3cret" not in repr(secret)


def test_build_sink_makes_a_nats_sink(jstream: JetStreamView) -> None:
    sink = build_sink(SinkConfig(type="nats", name="n", options={
        "url": NATS_URL, "subject": jstream.subject, "stream": jstream.name, "timeout": timedelta(seconds=2),
    }))
    assert isinstance(sink, NatsJetStreamSink)
    assert (sink.name, sink.subject, sink.stream, sink.timeout) == ("n", jstream.subject, jstream.name, 2.0)
    with sink:
        sink.deliver(event(1, "alice"))
    assert jstream.count() == 1
    defaults = build_sink(SinkConfig(type="nats", name="d", options={}))
    assert isinstance(defaults, NatsJetStreamSink)
    assert (defaults.subject, defaults.stream, defaults.timeout) == ("syncd.status", None, 5.0)


# -- end to end --------------------------------------------------------------------------------


def test_status_change_reaches_redis_and_nats_through_the_publisher(
    harness_factory: Callable[..., Harness], rclient: Any, rkey: str, jstream: JetStreamView,
) -> None:
    configs = (
        SinkConfig(type="redis", name="r", options={"url": REDIS_URL, "stream": rkey}),
        SinkConfig(type="nats", name="n", options={"url": NATS_URL, "subject": jstream.subject,
                                                   "stream": jstream.name}),
    )
    h = harness_factory([user("alice", "work"), user("bob", "work2")], sinks=configs)
    publisher = Publisher(h.service.db, {c.name: build_sink(c) for c in configs},
                          dead_letter_after=timedelta(hours=1), clock=h.clock)
    try:
        h.service.set_status("alice", "away")
        h.service.set_status("bob", "away")
        h.service.set_status("alice", "available")
        report = publisher.drain()
        assert (report.delivered, report.failed, report.dead) == (6, 0, 0)
        assert publisher.deliver_due().delivered == 0  # nothing left
    finally:
        publisher.close()

    stored = entries(rclient, rkey)
    bodies = [json.loads(g["body"]) for g in stored]
    assert [(b["user"]["id"], b["status"]) for b in bodies] == [
        ("alice", "away"), ("bob", "away"), ("alice", "available"),
    ]
    assert [g["id"].decode() for g in stored] == [b["id"] for b in bodies]
    assert {g["type"] for g in stored} == {b"status.changed"}

    published = jstream.messages()
    assert [(m.subject, json.loads(m.data)) for m in published] == [
        (f"{jstream.subject}.{b['user']['id']}", b) for b in bodies
    ]
    assert [m.headers["Nats-Msg-Id"] for m in published] == [b["id"] for b in bodies]
    assert [m.data for m in published] == [g["body"] for g in stored]  # the same bytes everywhere
