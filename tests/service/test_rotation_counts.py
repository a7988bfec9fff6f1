"""What the rotation engine keeps between assignments (`syncd.service.rotation_counts`) is
what it would read: after any change, by any path or replica, and as the clock moves on.
And a batch of requests (`RotationEngine.assign_many`) is answered as if one by one."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest

from syncd.service.rotations import NobodyEligible, RotationEngine, assignment_request
from tests.service.test_rotations import Factory, members, setup

NAMES = ("a", "b", "c", "d")


def view(engine: RotationEngine, rid: str) -> dict[str, dict[str, Any]]:
    """The members as `get` shows them, without the choice (which draws on the engine's rng)."""
    return members(engine, rid)


def read_afresh(engine: RotationEngine, rid: str) -> dict[str, dict[str, Any]]:
    """The same, from an engine that keeps nothing yet: what the database says."""
    return view(RotationEngine(engine.service), rid)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_what_is_kept_is_what_would_be_read(harness_factory: Factory, seed: int) -> None:
    h, engine, directory = setup(harness_factory, *NAMES)
    replica = RotationEngine(h.service, rng=random.Random(seed))  # another replica: keeps its own
    rid = engine.create("R", members=list(NAMES), cap_window=timedelta(hours=6),
                        terms={"a": {"cap": 3}, "b": {"weight": 2.0}})["id"]
    rng = random.Random(seed)
    keys: list[str] = []

    def key() -> str:
        if keys and rng.random() < 0.2:
            return rng.choice(keys)  # a retried request
        keys.append(f"k{len(keys)}")
        return keys[-1]

    def assign(by: RotationEngine) -> None:
        try:
            by.assign(rid, key())
        except NobodyEligible:
            pass

    steps = {
        "assign": lambda: assign(engine),
        "batch": lambda: engine.assign_many(rid, [assignment_request(key()) for _ in range(rng.randint(2, 6))]),
        "replica assigns": lambda: assign(replica),
        "weight": lambda: engine.update_member(rid, rng.choice(NAMES), {"weight": rng.choice((0.5, 1.0, 3.0))}),
        "cap": lambda: engine.update_member(rid, rng.choice(NAMES), {"cap": rng.choice((None, 1, 2, 5))}),
        "toggle": lambda: replica.set_available(rid, rng.choice(NAMES), rng.random() < 0.7),
        "cap window": lambda: engine.set_cap_window(rid, timedelta(hours=rng.choice((1, 6, 30)))),
        "clock": lambda: h.clock.advance(timedelta(minutes=rng.choice((1, 50, 400, 3000, 9000)))),
    }
    for step in range(60):
        name = rng.choice(list(steps))
        steps[name]()
        assert view(engine, rid) == read_afresh(engine, rid), f"step {step}: after {name}"
        assert view(replica, rid) == read_afresh(engine, rid), f"step {step}: after {name}, the replica"

    # A member who is deleted (their seat goes by a cascade, no engine involved) is gone from what is kept.
    directory.put_user("e", {"email": "e@example.com", "timezone": "Europe/Oslo"})
    engine.add_member(rid, "e")
    engine.assign(rid, "before the deletion")
    assert "e" in view(engine, rid)
    directory.delete_user("e")
    assert "e" not in view(engine, rid)
    assert view(engine, rid) == read_afresh(engine, rid)


def test_the_recent_window_slides_with_the_clock(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b")
    rid = engine.create("R", members=["a", "b"])["id"]
    for i in range(4):
        engine.assign(rid, f"k{i}")
        h.clock.advance(timedelta(days=2))
    assert sum(m["recent"] for m in view(engine, rid).values()) == 3  # 6, 4 and 2 days ago; 8 is not recent
    h.clock.advance(timedelta(days=3))
    assert sum(m["recent"] for m in view(engine, rid).values()) == 2  # 7 days ago is still recent
    h.clock.advance(timedelta(minutes=1))
    assert sum(m["recent"] for m in view(engine, rid).values()) == 1
    assert view(engine, rid) == read_afresh(engine, rid)


def test_a_cap_counts_what_is_kept_and_frees_as_the_window_passes(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b")
    rid = engine.create("R", members=["a", "b"], cap_window=timedelta(hours=1), terms={"a": {"cap": 1}})["id"]
    engine.set_available(rid, "b", False)
    assert engine.assign(rid, "k1").member == "a"
    with pytest.raises(NobodyEligible, match="cap"):
        engine.assign(rid, "k2")
    h.clock.advance(timedelta(minutes=61))
    assert engine.assign(rid, "k2").member == "a"


def test_a_batch_is_answered_as_one_request_after_another(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("R", members=["a", "b", "c"], cap_window=timedelta(days=1),
                        terms={name: {"cap": 1} for name in ("a", "b", "c")})["id"]
    answers = engine.assign_many(rid, [assignment_request(k) for k in ("k1", "k2", "k1", "k3", "k4")])
    first, second, again, third, fourth = answers
    assert not isinstance(first, NobodyEligible) and not isinstance(second, NobodyEligible)
    assert not isinstance(third, NobodyEligible) and not isinstance(again, NobodyEligible)
    assert {first.member, second.member, third.member} == {"a", "b", "c"}  # each sees the ones before it
    assert again.replayed and (again.id, again.member) == (first.id, first.member)
    assert isinstance(fourth, NobodyEligible)  # every cap is used: a refusal for this one only
    assert {m: v["assignments"] for m, v in view(engine, rid).items()} == {"a": 1, "b": 1, "c": 1}
    # The refused key was not taken: asked again once a cap frees, it gets a member.
    h.clock.advance(timedelta(days=1, minutes=1))
    assert engine.assign(rid, "k4").replayed is False
    # And a replay of a key is answered even when nobody could take a new one.
    for name in ("a", "b", "c"):
        engine.set_available(rid, name, False)
    replay = engine.assign_many(rid, [assignment_request("k2")])[0]
    assert not isinstance(replay, NobodyEligible) and replay.replayed and replay.member == second.member
