"""Everything a command needs, wired from one config: the database, the service, the sync
runner, the publisher and its sinks, the connectors, metrics, credentials and push channels.

Collaborators are passed in at construction. The daemon hurries jobs along (a push
notification: poll now; a batch of status changes committed: deliver now) through
`Wakeups`, whose listeners it registers when it is made.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.registry import Connectors
from store.db import Database
from syncd.config import Config
from syncd.core.errors import SyncdError
from syncd.publish import Publisher, Sink, build_sink
from syncd.service import Syncd, utc_now
from syncd.service.coverage import CoverageWatch
from syncd.service.credentials import CredentialVault
from syncd.service.metrics import Metrics
from syncd.service.notices import LinkNotices
from syncd.service.onboarding import Onboarding
from syncd.service.push import PushChannels
from syncd.service.replicas import ConfigAgreement
from syncd.sync import LinkSyncer
from syncd.sync.replica import this_process

__all__ = ["CountedSink", "Runtime", "Wakeups", "build_runtime"]


class Wakeups:
    """Jobs to run now rather than at their next tick. The service and the push channels
    ring; the daemon listens (nothing listens outside `syncd run`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, list[Callable[[], None]]] = {}

    def listen(self, job: str, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.setdefault(job, []).append(listener)

    def ring(self, job: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(job, ()))
        for listener in listeners:
            listener()


class CountedSink(Sink):
    """A sink as the publisher sees it, counting what it delivers and what fails
    (``syncd_deliveries_total``); everything else is the sink's own."""

    def __init__(self, sink: Sink, metrics: Metrics) -> None:
        self.sink = sink
        self.name = sink.name
        self.concurrency = sink.concurrency
        self.metrics = metrics

    def deliver(self, event: Mapping[str, Any]) -> None:
        try:
            self.sink.deliver(event)
        except SyncdError:
            self.metrics.observe_deliveries(self.name, 0, 1)
            raise
        self.metrics.observe_deliveries(self.name, 1, 0)

    def deliver_all(self, queues: Sequence[Sequence[Mapping[str, Any]]]) -> list[tuple[int, SyncdError | None]]:
        outcomes = self.sink.deliver_all(queues)
        self.metrics.observe_deliveries(self.name, sum(sent for sent, _ in outcomes),
                                        sum(1 for _, failure in outcomes if failure is not None))
        return outcomes

    def prepare(self, events: Sequence[Mapping[str, Any]], at: float) -> None:
        self.sink.prepare(events, at)

    def close(self) -> None:
        self.sink.close()

    def __repr__(self) -> str:
        return repr(self.sink)


@dataclass
class Runtime:
    """Everything a command needs, wired from one config."""

    config: Config
    db: Database
    service: Syncd
    syncer: LinkSyncer
    publisher: Publisher
    connectors: Connectors
    metrics: Metrics
    vault: CredentialVault
    push: PushChannels
    agreement: ConfigAgreement
    sinks: dict[str, Sink] = field(default_factory=dict)
    wakeups: Wakeups = field(default_factory=Wakeups)
    onboarding: Onboarding | None = None
    coverage: CoverageWatch | None = None

    def prepare(self, *, adopt_config: bool = False, daemon: bool = False) -> None:
        """Migrate the schema, check the config against the other replicas' (adopting it when
        allowed), then make the config's users and links current."""
        self.db.migrate()
        self.agreement.join(adopt=adopt_config, daemon=daemon)
        self.service.prepare()

    def close(self) -> None:
        self.publisher.close()
        self.connectors.close()
        self.db.dispose()


def build_runtime(config: Config, *, clock: Callable[[], datetime] = utc_now,
                  connectors: Connectors | None = None, sinks: dict[str, Sink] | None = None) -> Runtime:
    wakeups = Wakeups()
    db = Database(config.daemon.database_url)
    service = Syncd(config, db, clock=clock, on_published=lambda _changes: wakeups.ring("deliver"))
    keys = {name: a.options["token_key"] for name, a in config.accounts.items() if a.options.get("token_key")}
    vault = CredentialVault(db, keys, clock)
    connectors = connectors or Connectors(config.accounts, max_occurrences=config.daemon.max_occurrences,
                                          refresh_tokens=vault)
    sinks = sinks if sinks is not None else {s.name: build_sink(s) for s in config.sinks}
    metrics = Metrics(db, clock)
    metrics.expect(providers=sorted({a.provider for a in config.accounts.values()}), sinks=list(sinks))
    identity = this_process()
    agreement = ConfigAgreement(db, config, identity.name, clock)
    publisher = Publisher(db, {name: CountedSink(sink, metrics) for name, sink in sinks.items()},
                          dead_letter_after=config.daemon.dead_letter_after, clock=clock, replicas=agreement.live)
    onboarding = Onboarding(config, db, vault, clock, wake=lambda: wakeups.ring("poll"))
    notices = LinkNotices(config, service.recorder.sinks, clock, onboarding)
    syncer = LinkSyncer(service, connectors, observe=metrics.observe_sync, lease_ttl=config.daemon.lease_ttl,
                        replica=identity, database_clock=db.dialect == "postgresql", notices=notices)

    def pushed() -> None:  # a push notification made links due
        metrics.push_wakeups.inc()
        wakeups.ring("poll")
    push = PushChannels(service, connectors, wake=pushed)
    return Runtime(config, db, service, syncer, publisher, connectors, metrics, vault, push, agreement, sinks,
                   wakeups, onboarding, CoverageWatch(service))
