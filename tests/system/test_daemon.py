"""`syncd run`: timers, catch-up after downtime, and stopping on a signal."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from syncd.config import SinkConfig
from syncd.core.ooo import timed_content
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from syncd.publish.sink import Sink
from tests.conftest import Clock, make_config, user
from tests.system.processes import folder_config, running_daemon


class CollectingSink(Sink):
    """A sink that keeps what it is given (a fake: the real interface, in memory)."""

    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.events: list[Mapping[str, Any]] = []
        self.arrived = threading.Condition()

    def deliver(self, event: Mapping[str, Any]) -> None:
        with self.arrived:
            self.events.append(event)
            self.arrived.notify_all()

    def wait_for(self, predicate: Callable[[list[Mapping[str, Any]]], bool], timeout: float = 10.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: predicate(self.events), timeout)


def runtime(tmp_path: Path, clock: Callable[[], datetime], sink: CollectingSink, memory: MemoryConnector) -> Any:
    config = make_config([user("alice", "work")], sinks=(SinkConfig(type="stdout", name=sink.name),),
                         database_url=f"sqlite:///{tmp_path / 'syncd.db'}", poll_interval=timedelta(seconds=1))
    connectors = Connectors(config.accounts, overrides={"mem": memory})
    return build_runtime(config, clock=clock, connectors=connectors, sinks={sink.name: sink})


def test_transition_published_at_its_instant(tmp_path: Path) -> None:
    sink = CollectingSink()
    rt = runtime(tmp_path, lambda: datetime.now(UTC), sink, MemoryConnector())
    daemon = Daemon(rt, serve_api=False)
    daemon.start()
    try:
        start = datetime.now(UTC) + timedelta(seconds=1)
        block = rt.service.add_block("alice", timed_content(start, start + timedelta(seconds=1)))
        assert sink.wait_for(lambda evs: len(evs) >= 2)
        away, back = sink.events[:2]
        assert (away["status"], away["reason"], away["block"]["id"]) == ("away", "ooo_started", block.id)
        assert (back["status"], back["reason"]) == ("available", "ooo_ended")
        assert away["effective_at"] == block.start.isoformat().replace("+00:00", "Z")
        assert back["effective_at"] == block.end.isoformat().replace("+00:00", "Z")
    finally:
        daemon.stop()


def test_block_added_in_helpdesk_reaches_calendar(tmp_path: Path) -> None:
    sink, memory = CollectingSink(), MemoryConnector()
    rt = runtime(tmp_path, lambda: datetime.now(UTC), sink, memory)
    daemon = Daemon(rt, serve_api=False)
    daemon.start()
    try:
        start = datetime.now(UTC) + timedelta(days=1)
        block = rt.service.add_block("alice", timed_content(start, start + timedelta(hours=4), "Course"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and memory.find_by_block_id("work", block.id) is None:
            time.sleep(0.05)
        event = memory.find_by_block_id("work", block.id)
        assert event is not None and event.content.title == "Course"
    finally:
        daemon.stop()


def test_transitions_while_down_are_published_on_start_in_order(tmp_path: Path) -> None:
    clock, sink = Clock(), CollectingSink()
    rt = runtime(tmp_path, clock, sink, MemoryConnector())
    rt.service.prepare()
    t0 = clock.now
    first = rt.service.add_block("alice", timed_content(t0 + timedelta(hours=1), t0 + timedelta(hours=2)))
    second = rt.service.add_block("alice", timed_content(t0 + timedelta(hours=3), t0 + timedelta(hours=5)))
    rt.publisher.drain()
    sink.events.clear()
    clock.advance(timedelta(hours=4))  # syncd was "down": three boundaries passed
    daemon = Daemon(rt, serve_api=False)
    daemon.start()
    daemon.stop()
    got = [(e["status"], e["reason"], e["effective_at"]) for e in sink.events]
    assert got == [
        ("away", "ooo_started", _z(first.start)),
        ("available", "ooo_ended", _z(first.end)),
        ("away", "ooo_started", _z(second.start)),
    ]


def _z(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_on_signal(tmp_path: Path, signum: int) -> None:
    with running_daemon(folder_config(tmp_path), warnings="error") as proc:
        proc.send_signal(signum)
        code = proc.wait(timeout=15)  # the contract is "within 10 s"; this only stops a hung test
        assert proc.stderr is not None
        rest = proc.stderr.read()
    assert code == 0, rest
    assert "stopped" in rest and "Traceback" not in rest
