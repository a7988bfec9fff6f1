"""Teams of the config file: applied at start like its users, read-only over the API, and the
rotations that include them follow their members across restarts."""

from __future__ import annotations

import dataclasses
import random

import pytest

from store.db import Database
from syncd.config import TeamConfig
from syncd.service import Syncd
from syncd.service.directory import ConfigOwned, Directory
from syncd.service.rotations import RotationEngine
from tests.conftest import Clock, make_config, user


def start(database: Database, clock: Clock, members: tuple[str, ...]) -> tuple[Syncd, RotationEngine, Directory]:
    config = dataclasses.replace(make_config([user("a"), user("b"), user("c")]),
                                 teams=(TeamConfig("support", members, "Europe/Stockholm"),))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    engine = RotationEngine(service, rng=random.Random(7))
    return service, engine, Directory(service, engine)


def test_a_config_teams_rotations_follow_it_across_restarts(database: Database, clock: Clock) -> None:
    _service, engine, directory = start(database, clock, ("a", "b"))
    rotation = engine.create("Standup", teams=["support"])
    assert sorted(m["user"] for m in engine.get(rotation["id"])["members"]) == ["a", "b"]
    # The operator edits the file (b leaves, c joins) and restarts syncd.
    _service, engine, directory = start(database, clock, ("a", "c"))
    assert sorted(m["user"] for m in engine.get(rotation["id"])["members"]) == ["a", "c"]
    team = directory.get_team("support")
    assert (team["origin"], team["members"], team["timezone"]) == ("config", ["a", "c"], "Europe/Stockholm")
    with pytest.raises(ConfigOwned, match="defined in test.toml"):
        directory.put_team("support", ["a"])
