"""`syncd run`: the scheduler around the service.

Jobs (APScheduler 3, one thread pool):
- ``status``  every 0.5 s: publish automatic transitions whose instant has come, then deliver
  them, so a status change reaches the sinks within about a second of its instant;
- ``poll``    every second: claim links whose poll is due (randomised, backed off after
  errors) and sync them — several such jobs may run at once, each with its own links;
- ``deliver`` every second: retry outbox deliveries that are due;
- ``hours``   every 30 s: read the working hours kept in calendars, for users who take them
  from there, whose ``working_hours_poll`` has passed (or whose calendar was listed in full);
- ``coverage`` every `COVERAGE_EVERY` seconds: look at teams whose members' blocks changed or
  whose next crossing of their minimum comes soon, and stage ``coverage.low`` /
  ``coverage.restored`` for its instant (`syncd.service.coverage`);
- ``sweep``   every ``sweep_interval``: re-evaluate every user and every team's coverage, purge
  old tombstones and spent connect links,
  a safety net for anything a timer missed;
- ``watchdog`` under systemd with ``WatchdogSec=``: ``WATCHDOG=1`` every half of the
  timeout, on a thread of its own, so a scheduler whose loop stops (or an API thread that
  died) gets the service restarted. systemd also hears ``READY=1`` once the API and the
  scheduler run, and ``STOPPING=1`` when a stop begins (`syncd.daemon.notify`).

SIGTERM / SIGINT: no new work starts, work in flight finishes (bounded by connector
timeouts), and the process exits within 10 s. Everything is recorded in the database as it
happens, so a stop at any point loses nothing.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import uvicorn
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from syncd.core.errors import ConfigError, SyncdError
from syncd.core.text import first_line, redact_url
from syncd.daemon.heap import return_free_memory
from syncd.daemon.notify import Notifier
from syncd.daemon.runtime import Runtime
from syncd.service.metrics import readiness
from syncd.service.replicas import HEARTBEAT

__all__ = ["Daemon"]

log = logging.getLogger(__name__)
STOP_WITHIN = 9.0  # seconds; the contract is 10
MAX_DELIVERY_ALARMS = 100  # instants of staged events woken for per tick; the delivery job finds the rest
# Staged events are read and encoded this long before their instant. One replica takes
# several seconds for 100,000; a pass that starts at the instant before they are ready sends
# them page by page from the outbox, about 2,000 a second.
PREPARE_AHEAD = timedelta(seconds=30)
POLL_CLAIM = 100  # links per poll job run: listed together, in batch requests where the provider has them
PUSH_REFRESH = 60  # seconds between passes that open and renew push channels
HOURS_TICK = 30  # seconds between looks for working hours due to be read from calendars
COVERAGE_EVERY = 5  # seconds between looks at teams' coverage (events are staged a minute ahead)
TRIM_EVERY = 60  # seconds between hand-backs of free heap pages to the system (`syncd.daemon.heap`)


class Daemon:
    def __init__(self, runtime: Runtime, *, poll_workers: int = 4, serve_api: bool = True,
                 adopt_config: bool = False, notifier: Notifier | None = None) -> None:
        self.rt = runtime
        self.notifier = notifier or Notifier()  # systemd's NOTIFY_SOCKET; does nothing without one
        self.serve_api = serve_api
        self.adopt_config = adopt_config
        self.exit_code = 0  # 2 when the replicas agreed on another config meanwhile
        self.api_server: uvicorn.Server | None = None
        self._api_thread: threading.Thread | None = None
        self.poll_workers = poll_workers
        self.stopping = threading.Event()  # set by a signal: no new work starts
        self._stopped = False
        runtime.wakeups.listen("poll", self._wake_poll)  # a push notification: poll now, not at the next tick
        runtime.wakeups.listen("deliver", lambda: self._wake("deliver"))
        self.scheduler = BackgroundScheduler(
            # The watchdog has a thread of its own: long syncs filling the pool must not look like a hang.
            executors={"default": ThreadPoolExecutor(poll_workers + 3), "watchdog": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "misfire_grace_time": 30},
            timezone="UTC",
        )

    def start(self) -> None:
        rt = self.rt
        rt.prepare(adopt_config=self.adopt_config, daemon=True)
        # Transitions that fell while we were down: published now with their true times, in order.
        caught_up = rt.service.advance_all()
        if caught_up:
            log.info("published %d status change(s) that happened while syncd was stopped", caught_up)
        if rt.coverage is not None:
            rt.coverage.check_due(every_team=True)  # teams' coverage, as of now
        rt.publisher.deliver_due()
        daemon = rt.config.daemon
        self.scheduler.add_job(self._guard(self._status_tick), "interval", seconds=0.5, id="status",
                               max_instances=1)
        self.scheduler.add_job(self._guard(self._poll_tick), "interval", seconds=1, id="poll",
                               max_instances=self.poll_workers)
        self.scheduler.add_job(self._guard(rt.publisher.deliver_due), "interval", seconds=1, id="deliver",
                               max_instances=1)
        if rt.coverage is not None:
            self.scheduler.add_job(self._guard(rt.coverage.check_due), "interval", seconds=COVERAGE_EVERY,
                                   id="coverage", max_instances=1)
        self.scheduler.add_job(self._guard(self._sweep), "interval", seconds=daemon.sweep_interval.total_seconds(),
                               id="sweep", max_instances=1)
        self.scheduler.add_job(self._guard(return_free_memory), "interval", seconds=TRIM_EVERY, id="trim",
                               max_instances=1)
        self.scheduler.add_job(self._guard(self._heartbeat), "interval", seconds=HEARTBEAT.total_seconds(),
                               id="heartbeat", max_instances=1)
        # Users registered through the API may take their hours from the calendar too: always on,
        # and one indexed query when nobody does.
        self.scheduler.add_job(self._guard(self._hours_tick), "interval", seconds=HOURS_TICK, id="hours",
                               max_instances=1, next_run_time=datetime.now(UTC))
        if rt.push.accounts():
            self.scheduler.add_job(self._guard(rt.push.refresh), "interval", seconds=PUSH_REFRESH, id="push",
                                   max_instances=1, next_run_time=datetime.now(UTC))
        rt.metrics.readiness = self._readiness
        if self.serve_api:
            self._start_api()  # first: opening a Graph subscription needs the hook to answer already
        self.scheduler.start()
        users = len(rt.service.user_ids())
        links = len(rt.syncer.link_ids())
        # What exists now lives as long as the process: keep the collector from re-scanning it,
        # which otherwise shows up as latency spikes on the API.
        gc.collect()
        gc.freeze()
        log.info("syncd running: %d user(s), %d calendar link(s), sinks: %s, database: %s",
                 users, links, ", ".join(rt.sinks) or "none", redact_url(daemon.database_url))
        self.notifier.ready(f"running: {users} user(s), {links} calendar link(s)")
        watchdog = self.notifier.watchdog_interval
        if watchdog is not None:  # after READY=1: systemd counts pings from then on
            self.scheduler.add_job(self._guard(self._watchdog), "interval", seconds=watchdog, id="watchdog",
                                   max_instances=1, executor="watchdog")

    def _start_api(self) -> None:
        from syncd.api import create_app

        api = self.rt.config.api
        app = create_app(self.rt.service, metrics=self.rt.metrics, scheduler_alive=lambda: self.scheduler.running,
                         push=self.rt.push, onboarding=self.rt.onboarding, coverage=self.rt.coverage)
        # log_config=None: uvicorn's records go through syncd's handler and format (text or JSON).
        server = uvicorn.Server(uvicorn.Config(app, host=api.host, port=api.port, log_level="warning",
                                               access_log=False, lifespan="off", log_config=None))
        self._api_thread = threading.Thread(target=server.run, name="syncd-api", daemon=True)
        self._api_thread.start()
        deadline = time.monotonic() + 10
        while not server.started and self._api_thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            self.scheduler.shutdown(wait=False)
            raise ConfigError(f"api.listen: cannot listen on {api.listen} (in use, or not an address of this "
                              "machine); change [api].listen")
        self.api_server = server
        sockets = [s.getsockname() for srv in server.servers for s in srv.sockets]
        self.api_address = f"{sockets[0][0]}:{sockets[0][1]}" if sockets else api.listen
        if not self.rt.config.api.tokens:
            log.warning("no API tokens configured: /v1 answers 401 until [api].tokens is set")
        log.info("API listening on http://%s (OpenAPI at /openapi.json)", self.api_address)

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
                message = first_line(exc)
                if failing.get(name) != message:
                    log.error("%s failed: %s", name, message, exc_info=not _expected(exc))
                    failing[name] = message
        return run

    def _status_tick(self) -> None:
        if self.rt.service.advance_due():
            self._wake("deliver")
        # Transitions of the coming minute are staged; their events go out at their instant.
        # Shortly before, they are read and encoded, so that at the instant they only go out.
        for at in sorted(self.rt.service.stage_ahead())[:MAX_DELIVERY_ALARMS]:
            self.scheduler.add_job(self._guard(self._preparer(at)), "date",
                                   run_date=max(datetime.now(UTC), at - PREPARE_AHEAD),
                                   id=f"prepare-at-{at.isoformat()}", replace_existing=True, misfire_grace_time=30)
            self.scheduler.add_job(self._guard(self.rt.publisher.deliver_due), "date", run_date=at,
                                   id=f"deliver-at-{at.isoformat()}", replace_existing=True, misfire_grace_time=30)

    def _preparer(self, at: datetime) -> Callable[[], int]:
        def prepare() -> int:
            return self.rt.publisher.prepare(at)
        return prepare

    def _wake(self, job: str) -> None:
        if self.scheduler.running and not self.stopping.is_set():
            try:
                self.scheduler.modify_job(job, next_run_time=datetime.now(UTC))
            except LookupError:  # stopping: the job is gone
                pass

    def _poll_tick(self) -> None:
        while not self.stopping.is_set():
            links = self.rt.syncer.claim_due(limit=POLL_CLAIM)
            if not links:
                return
            if len(links) == POLL_CLAIM:
                self._wake_poll()  # more are due: another worker takes the next ones meanwhile
            self.rt.syncer.sync_many(links, stopping=self.stopping.is_set)
            if len(links) < POLL_CLAIM:
                return

    def _hours_tick(self) -> None:
        """Working hours kept in calendars, read every ``working_hours_poll`` (no notifications)."""
        if self.rt.syncer.hours.read_due():
            self._wake("deliver")

    def _wake_poll(self) -> None:
        self._wake("poll")

    def _heartbeat(self) -> None:
        if not self.rt.agreement.beat():
            log.error("another replica made a different config the one replicas agree on (syncd run "
                      "--adopt-config); stopping: start again with that file")
            self.exit_code = 2
            self.stopping.set()

    def _watchdog(self) -> None:
        """``WATCHDOG=1``: this job running proves the scheduler runs jobs; the API must be up too."""
        if self._api_thread is not None and not self._api_thread.is_alive():
            return  # no ping: systemd restarts the service after WatchdogSec
        self.notifier.watchdog()

    def _readiness(self) -> dict[str, bool]:
        """What /readyz checks, for the `syncd_ready` gauge."""
        return readiness(self.rt.db.ping, lambda: bool(self.scheduler.running), self.rt.service.stuck_links)

    def _sweep(self) -> None:
        self.rt.service.advance_all()
        if self.rt.coverage is not None:
            self.rt.coverage.check_due(every_team=True)
        self.rt.service.purge_tombstones()
        if self.rt.onboarding is not None:
            self.rt.onboarding.prune()

    def stop(self) -> None:
        """Finish work in flight and stop, within STOP_WITHIN seconds."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping.set()
        self.notifier.stopping()
        log.info("stopping: finishing work in flight")
        done = threading.Event()

        def shutdown() -> None:
            self.scheduler.shutdown(wait=True)
            done.set()
        if self.api_server is not None:
            self.api_server.should_exit = True
        threading.Thread(target=shutdown, daemon=True).start()
        if not done.wait(STOP_WITHIN):
            log.warning("work still running after %.0fs; exiting anyway (it is replayed on the next start)",
                        STOP_WITHIN)
        if self._api_thread is not None:
            self._api_thread.join(max(0.5, STOP_WITHIN / 2))
        try:
            self.rt.agreement.leave()
        except SyncdError as exc:  # the database is away: the heartbeat simply ages out
            log.debug("leaving the replicas: %s", exc)
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

