"""Replicas agree on one config.

Replicas that share a database must run the same accounts, users and token keys: one with
another file would write other users' links, or fail to decrypt what the others stored. The
database keeps the fingerprint of the config the replicas agreed on, in parts (accounts,
users, token keys: for the keys, only an id of each, never a key). A replica (or a command)
starting with a different config is refused while a replica with the agreed one is alive,
with one line naming the parts that differ; `syncd run --adopt-config` makes the new file
the agreed one, and the replicas running the old one stop. With no other replica alive, the
new file is simply adopted (one replica restarted after an edit).

Every live daemon renews its heartbeat; on PostgreSQL "alive" is judged by the database's
clock, so a replica whose own clock is off cannot misjudge the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from store import replicas
from store.db import Database, Transaction
from syncd.config import Config
from syncd.core.errors import ConfigError
from syncd.core.hours import hours_to_json

__all__ = ["ALIVE_FOR", "HEARTBEAT", "ConfigAgreement", "config_parts"]

log = logging.getLogger(__name__)
HEARTBEAT = timedelta(seconds=30)
ALIVE_FOR = 3 * HEARTBEAT  # a replica not seen for this long is taken for dead


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_parts(config: Config) -> dict[str, str]:
    """The config's fingerprint in parts: what replicas must agree on."""
    accounts = {name: {"provider": a.provider, "domains": list(a.domains), "ooo_rules": repr(a.ooo_rules),
                       "options": {k: v for k, v in a.options.items() if k not in getattr(a.options, "secret_keys",
                                                                                            ())}}
                for name, a in sorted(config.accounts.items())}
    # where hours come from is named only when not the default, so that configs written
    # before it existed keep their fingerprint (replicas upgraded one by one still agree)
    users = [{"id": u.id, "email": u.email.lower(), "timezone": u.timezone, "hours": hours_to_json(u.working_hours),
              "calendars": [[c.account, c.calendar, c.sync_ooo, c.direction] for c in u.calendars],
              **({"hours_from": u.working_hours_from} if u.working_hours_from != "config" else {})}
             for u in config.users]
    keys = {name: [hashlib.sha256(k.strip().encode()).hexdigest()[:12] for k in str(a.options["token_key"]).split(",")
                   if k.strip()]
            for name, a in sorted(config.accounts.items()) if a.options.get("token_key")}
    return {"accounts": _digest(accounts), "users": _digest(users), "token keys": _digest(keys)}


class ConfigAgreement:
    def __init__(self, db: Database, config: Config, name: str, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.name = name  # this replica, as `syncd links` shows it
        self.clock = clock
        self.parts = config_parts(config)
        self.fingerprint = _digest(self.parts)

    def _now(self, session: Transaction) -> datetime:
        return replicas.db_now(session) or self.clock()

    def join(self, *, adopt: bool = False, daemon: bool = False) -> None:
        """Check this config against the agreed one (adopting it when allowed), and, for a
        daemon, say we are alive. Raises ConfigError naming the parts that differ."""
        def work(session: Transaction) -> str | None:
            now = self._now(session)
            agreed = replicas.agreed_config(session)
            if agreed is not None and agreed.get("fingerprint") != self.fingerprint:
                others = [n for n, f in replicas.alive(session, now - ALIVE_FOR)
                          if n != self.name and f == agreed.get("fingerprint")]
                differ = [part for part, value in self.parts.items() if agreed.get("parts", {}).get(part) != value]
                if others and not adopt:
                    raise ConfigError(
                        f"this config differs from the one replica(s) {', '.join(others[:3])} run in its "
                        f"{', '.join(differ) or 'content'}; use the same file, or start with "
                        "`syncd run --adopt-config` to make this one the truth (the others then stop)")
                changed = ", ".join(differ) or "content"
            else:
                changed = None
            replicas.set_agreed_config(session, {"fingerprint": self.fingerprint, "parts": self.parts}, now)
            if daemon:
                replicas.heartbeat(session, self.name, self.fingerprint, now)
            return changed
        changed = self.db.run(work, what="checking the config against the other replicas")
        if changed:
            log.info("the config changed since the last start (%s); this file is now the one replicas agree on",
                     changed)

    def beat(self) -> bool:
        """Renew this daemon's heartbeat; False when the replicas have agreed on another config since."""
        def work(session: Transaction) -> bool:
            replicas.heartbeat(session, self.name, self.fingerprint, self._now(session))
            agreed = replicas.agreed_config(session)
            return agreed is None or agreed.get("fingerprint") == self.fingerprint
        return self.db.run(work, what="replica heartbeat")

    def live(self) -> int:
        """How many daemons are alive now (by their heartbeats), to share the sinks' partitions."""
        def work(session: Transaction) -> int:
            return len(replicas.alive(session, self._now(session) - ALIVE_FOR))
        return self.db.read(work, what="replica heartbeats")

    def leave(self) -> None:
        self.db.run(lambda s: replicas.leave(s, self.name), what="leaving the replicas")
