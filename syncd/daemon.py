"""`syncd run`: the scheduler around the service.

Jobs (APScheduler 3, one thread pool):
- ``status``  every 0.5 s: publish automatic transitions whose instant has come, then deliver
  them, so a status change reaches the sinks within about a second of its instant;
- ``poll``    every second: claim links whose poll is due (randomised, backed off after
  errors) and sync them — several such jobs may run at once, each with its own links;
- ``deliver`` every second: retry outbox deliveries that are due;
- ``sweep``   every ``sweep_interval``: re-evaluate every user and purge old tombstones,
  a safety net for anything a timer missed.

SIGTERM / SIGINT: no new work starts, work in flight finishes (bounded by connector
timeouts), and the process exits within 10 s. Everything is recorded in the database as it
happens, so a stop at any point loses nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from connectors.registry import Connectors
from store.db import Database
from syncd.config import Config
from syncd.errors import SyncdError
from syncd.publisher import Publisher
from syncd.service import Syncd, utc_now
from syncd.sinks import Sink, build_sink
from syncd.sync import LinkSyncer

__all__ = ["Daemon", "Runtime", "build_runtime"]

log = logging.getLogger("syncd.daemon")
STOP_WITHIN = 9.0  # seconds; the contract is 10


@dataclass
class Runtime:
    """Everything a command needs, wired from one config."""

    config: Config
    db: Database
    service: Syncd
    syncer: LinkSyncer
    publisher: Publisher
    connectors: Connectors
    sinks: dict[str, Sink] = field(default_factory=dict)

    def close(self) -> None:
        self.publisher.close()
        self.connectors.close()
        self.db.dispose()


def build_runtime(config: Config, *, clock: Callable[[], datetime] = utc_now,
                  connectors: Connectors | None = None, sinks: dict[str, Sink] | None = None) -> Runtime:
    db = Database(config.daemon.database_url)
    service = Syncd(config, db, clock=clock)
    connectors = connectors or Connectors(config.accounts, max_occurrences=config.daemon.max_occurrences)
    sinks = sinks if sinks is not None else {s.name: build_sink(s) for s in config.sinks}
    publisher = Publisher(db, sinks, dead_letter_after=config.daemon.dead_letter_after, clock=clock)
    return Runtime(config, db, service, LinkSyncer(service, connectors), publisher, connectors, sinks)


class Daemon:
    def __init__(self, runtime: Runtime, *, poll_workers: int = 4) -> None:
        self.rt = runtime
        self.poll_workers = poll_workers
        self.stopping = threading.Event()  # set by a signal: no new work starts
        self._stopped = False
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(poll_workers + 3)},
            job_defaults={"coalesce": True, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def start(self) -> None:
        rt = self.rt
        rt.service.prepare()
        # Transitions that fell while we were down: published now with their true times, in order.
        caught_up = rt.service.advance_all()
        if caught_up:
            log.info("published %d status change(s) that happened while syncd was stopped", caught_up)
        rt.publisher.deliver_due()
        daemon = rt.config.daemon
        self.scheduler.add_job(self._guard(self._status_tick), "interval", seconds=0.5, id="status",
                               max_instances=1)
        self.scheduler.add_job(self._guard(self._poll_tick), "interval", seconds=1, id="poll",
                               max_instances=self.poll_workers)
        self.scheduler.add_job(self._guard(rt.publisher.deliver_due), "interval", seconds=1, id="deliver",
                               max_instances=1)
        self.scheduler.add_job(self._guard(self._sweep), "interval", seconds=daemon.sweep_interval.total_seconds(),
                               id="sweep", max_instances=1)
        self.scheduler.start()
        users = len(rt.service.user_ids())
        links = len(rt.syncer.link_ids())
        log.info("syncd running: %d user(s), %d calendar link(s), sinks: %s, database: %s",
                 users, links, ", ".join(rt.sinks) or "none", _redact(daemon.database_url))

    def _guard(self, job: Callable[[], Any]) -> Callable[[], None]:
        name = getattr(job, "__name__", "job")
        failing: dict[str, str] = {}

        def run() -> None:
            if self.stopping.is_set():
                return
            try:
                job()
                if name in failing:
                    log.info("%s: working again", name)
                    failing.pop(name)
            except Exception as exc:  # one failed tick must not stop the scheduler
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if failing.get(name) != message:
                    log.error("%s failed: %s", name, message, exc_info=not _expected(exc))
                    failing[name] = message
        return run

    def _status_tick(self) -> None:
        if self.rt.service.advance_due():
            self.rt.publisher.deliver_due()

    def _poll_tick(self) -> None:
        for link_id in self.rt.syncer.claim_due(limit=5):
            if self.stopping.is_set():
                break
            self.rt.syncer.sync_link(link_id)

    def _sweep(self) -> None:
        self.rt.service.advance_all()
        self.rt.service.purge_tombstones()

    def stop(self) -> None:
        """Finish work in flight and stop, within STOP_WITHIN seconds."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        log.info("stopping: finishing work in flight")
        done = threading.Event()

        def shutdown() -> None:
            self.scheduler.shutdown(wait=True)
            done.set()
        threading.Thread(target=shutdown, daemon=True).start()
        if not done.wait(STOP_WITHIN):
            log.warning("work still running after %.0fs; exiting anyway (it is replayed on the next start)",
                        STOP_WITHIN)
        self.rt.close()
        log.info("stopped")

    def run_forever(self) -> None:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            while not self.stopping.wait(0.5):
                pass
        finally:
            self.stop()


def _expected(exc: Exception) -> bool:
    return isinstance(exc, SyncdError)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url
