"""A second replica cannot disagree with the first: replicas run one config, and a replica's
own clock cannot let two replicas sync one link."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from connectors.memory.connector import MemoryConnector
from connectors.registry import Connectors
from store.db import Database
from store.models import CalendarLinkRow
from syncd.config import Config
from syncd.core.errors import ConfigError
from syncd.service import Syncd
from syncd.service.replicas import ConfigAgreement
from syncd.sync import LinkSyncer
from tests.conftest import Clock, Harness, make_config, user

HarnessFactory = Callable[..., Harness]


def agreement(db: Database, config: Config, name: str, clock: Clock) -> ConfigAgreement:
    db.migrate()
    return ConfigAgreement(db, config, name, clock)


def test_a_replica_with_another_config_is_refused_while_one_with_the_agreed_config_runs(
        database: Database, clock: Clock) -> None:
    first = make_config([user("alice", "work")])
    second = make_config([user("alice", "work"), user("mallory", "work")])
    agreement(database, first, "host-a:1", clock).join(daemon=True)
    with pytest.raises(ConfigError) as refused:
        agreement(database, second, "host-b:2", clock).join(daemon=True)
    assert "replica(s) host-a:1" in str(refused.value) and "users" in str(refused.value)
    assert "accounts" not in str(refused.value).split("in its")[1].split(";")[0]
    assert "--adopt-config" in str(refused.value) and "\n" not in str(refused.value)


def test_adopting_a_new_config_stops_the_replicas_running_the_old(database: Database, clock: Clock) -> None:
    first = make_config([user("alice", "work")])
    second = dataclasses.replace(first, users=(user("alice", "work", tz="Europe/Oslo"),))
    old = agreement(database, first, "host-a:1", clock)
    old.join(daemon=True)
    agreement(database, second, "host-b:2", clock).join(adopt=True, daemon=True)
    assert old.beat() is False  # the old replica sees it and stops


def test_with_no_replica_alive_a_changed_config_is_simply_adopted(database: Database, clock: Clock) -> None:
    first = make_config([user("alice", "work")])
    old = agreement(database, first, "host-a:1", clock)
    old.join(daemon=True)
    old.leave()  # it stopped (or died long ago: seen_at ages out)
    second = make_config([user("alice", "work"), user("bob", "work")])
    agreement(database, second, "host-a:2", clock).join(daemon=True)


def test_token_keys_are_agreed_on_by_id_never_by_value(database: Database, clock: Clock) -> None:
    from syncd.config import AccountConfig, Options
    from syncd.service.replicas import config_parts

    def with_key(key: str) -> Config:
        account = AccountConfig(name="gw", provider="google",
                                options=Options({"token_key": key, "client_id": "c", "client_secret": "s"},
                                                secret=("token_key", "client_secret")))
        return make_config([user("alice")], accounts={"gw": account})
    one, two = config_parts(with_key("key-one")), config_parts(with_key("key-two"))
    assert one["token keys"] != two["token keys"] and one["accounts"] == two["accounts"]
    assert "key-one" not in repr(one)


@pytest.mark.postgres
def test_leases_are_judged_by_the_databases_clock_not_a_replicas(harness_factory: HarnessFactory,
                                                                  database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite serves one replica: its own clock is the only one")
    h = harness_factory([user("alice", "work")])
    now = datetime.now(UTC)
    with database.session() as session:
        session.execute(update(CalendarLinkRow).values(next_poll_at=now - timedelta(minutes=1)))
    connectors = Connectors(h.service.config.accounts, overrides={"mem": MemoryConnector()})

    def replica(name: str, clock_ahead: timedelta, database_clock: bool) -> LinkSyncer:
        service = Syncd(h.service.config, database, clock=Clock(now + clock_ahead))
        return LinkSyncer(service, connectors, replica=name, database_clock=database_clock)
    assert len(replica("a", timedelta(0), True).claim_due()) == 1  # leased for a minute by the database's clock
    # A replica whose own clock runs two minutes ahead: by its clock the lease ran out.
    assert replica("b", timedelta(minutes=2), True).claim_due() == []
    assert len(replica("c", timedelta(minutes=2), False).claim_due()) == 1  # what trusting its own clock does
