"""Weights and caps in the rotation engine on a real database (SQLite and PostgreSQL): the
shares follow the weights, a weight change applies from then on, caps hold within their
window and free a slot when they say, and concurrent assigns never take a member past their
cap (real threads against the store)."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from store.models import AssignmentRow
from syncd.core.errors import NotFoundInStore, TransientError, UserInputError
from syncd.core.ooo import timed_content
from syncd.service.rotations import NobodyEligible, RotationEngine
from tests.conftest import Harness, user

Factory = Callable[..., Harness]
NAMES = ("a", "b", "c", "d", "e")


def setup(harness_factory: Factory) -> tuple[Harness, RotationEngine]:
    h = harness_factory([user(n) for n in NAMES])
    return h, RotationEngine(h.service, rng=random.Random(3))


def members(engine: RotationEngine, rid: str) -> dict[str, dict[str, object]]:
    return {m["user"]: m for m in engine.get(rid)["members"]}


def test_weights_set_the_shares(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    made = engine.create("Chats", members=["a", "b", "c"], terms={"a": {"weight": 2}, "c": {"weight": 0.5}})
    assert {u: m["weight"] for u, m in members(engine, made["id"]).items()} == {"a": 2.0, "b": 1.0, "c": 0.5}
    got = Counter(engine.assign(made["id"], f"k{i}").member for i in range(70))
    # 2 : 1 : 0.5 of 70 is 40 : 20 : 10, and loads never drift more than a step apart.
    assert abs(got["a"] - 40) <= 4 and abs(got["b"] - 20) <= 2 and abs(got["c"] - 10) <= 1, got


def test_a_weight_change_applies_from_then_on(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    rid = engine.create("Chats", members=["a", "b"])["id"]
    for i in range(10):
        engine.assign(rid, f"before-{i}")
    assert {u: m["assignments"] for u, m in members(engine, rid).items()} == {"a": 5, "b": 5}
    view = engine.update_member(rid, "a", {"weight": 2})
    assert {m["user"]: m["assignments"] for m in view["members"]} == {"a": 10, "b": 5}  # load kept at 5
    got = Counter(engine.assign(rid, f"after-{i}").member for i in range(30))
    assert abs(got["a"] - 20) <= 2, got  # not a run of catching up: two of every three from now on


def test_bad_weights_and_caps_are_refused_clearly(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    rid = engine.create("Chats", members=["a", "b"])["id"]
    for bad in (0, -1, float("nan"), float("inf"), 1001, True, "2"):
        with pytest.raises(UserInputError, match="weight must be a number above 0"):
            engine.update_member(rid, "a", {"weight": bad})
    with pytest.raises(UserInputError, match="has none; give one"):
        engine.update_member(rid, "a", {"cap": 3})  # no cap window yet
    engine.set_cap_window(rid, timedelta(days=1))
    for bad_cap in (0, 10_001, 2.5, True):
        with pytest.raises(UserInputError, match="cap must be a whole number"):
            engine.update_member(rid, "a", {"cap": bad_cap})
    with pytest.raises(UserInputError, match="cap_window must be from 1m to 90d"):
        engine.set_cap_window(rid, timedelta(seconds=5))
    with pytest.raises(UserInputError, match="only available, weight, cap"):
        engine.update_member(rid, "a", {"count": 0})
    with pytest.raises(NotFoundInStore, match="not a member"):
        engine.update_member(rid, "c", {"weight": 2})
    with pytest.raises(UserInputError, match="not among the members"):
        engine.create("x", members=["a"], terms={"b": {"weight": 2}})
    engine.update_member(rid, "a", {"cap": 2})
    with pytest.raises(UserInputError, match="remove their caps first"):
        engine.set_cap_window(rid, None)
    engine.update_member(rid, "a", {"cap": None})
    assert engine.set_cap_window(rid, None)["cap_window"] is None


def test_cap_makes_a_member_ineligible_until_the_window_frees_a_slot(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    rid = engine.create("Demos", members=["a", "b"], cap_window=timedelta(hours=2),
                        terms={"a": {"cap": 2, "weight": 10}})["id"]
    first = h.clock.now  # within everyone's working hours, to the end of this test
    engine.set_available(rid, "b", False)
    assert engine.assign(rid, "k1").member == "a"
    h.clock.advance(timedelta(minutes=30))
    assert engine.assign(rid, "k2").member == "a"
    engine.set_available(rid, "b", True)
    h.clock.advance(timedelta(minutes=30))
    view = members(engine, rid)["a"]
    assert view["eligible"] is False and view["reason"] == "capacity"
    assert view["available_at"] == (first + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert engine.assign(rid, "k3").member == "b"  # though a is far behind by weight
    h.clock.set(first + timedelta(hours=2))  # the first assignment leaves the window
    assert engine.assign(rid, "k4").member == "a"


def test_nobody_below_their_cap_is_refused_with_when(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    rid = engine.create("Demos", members=["a", "b"], cap_window=timedelta(days=1),
                        terms={"a": {"cap": 1}, "b": {"cap": 1}})["id"]
    engine.assign(rid, "k1")
    engine.assign(rid, "k2")
    with pytest.raises(NobodyEligible, match=r"a \(capacity\), b \(capacity\); the first is expected back") as info:
        engine.assign(rid, "k3")
    assert info.value.choice.next_available_at == h.clock.now + timedelta(days=1)


def test_calibrate_credits_an_away_member_by_weight(harness_factory: Factory) -> None:
    h, engine = setup(harness_factory)
    rid = engine.create("Chats", members=["a", "b", "c"], policy="calibrate",
                        terms={"a": {"weight": 3}, "b": {"weight": 1}, "c": {"weight": 2}})["id"]
    h.service.add_block("c", timed_content(h.clock.now - timedelta(hours=1), h.clock.now + timedelta(days=2)),
                        source="helpdesk")
    for i in range(12):
        engine.assign(rid, f"k{i}")
    view = members(engine, rid)
    assert view["c"]["assignments"] == pytest.approx(12 * 2 / 4)  # c's weight's share of each
    loads = [view[u]["assignments"] / view[u]["weight"] for u in "abc"]
    assert max(loads) - min(loads) <= 1 + 1e-9


# -- concurrent assigns against the cap ---------------------------------------------------------------

THREADS, PER_THREAD = 6, 4


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(caps=st.lists(st.none() | st.integers(1, 6), min_size=2, max_size=4),
       weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=4, max_size=4))
def test_concurrent_assigns_never_pass_a_cap(harness_factory: Factory, caps: list[int | None],
                                             weights: list[float]) -> None:
    h, engine = _shared(harness_factory)
    names = NAMES[:len(caps)]
    terms = {u: {"weight": w, "cap": c} for u, w, c in zip(names, weights, caps, strict=False)}
    rid = engine.create("Busy", members=list(names), cap_window=timedelta(hours=1), terms=terms)["id"]
    barrier = threading.Barrier(THREADS)
    made: list[str] = []
    refused: list[NobodyEligible] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(PER_THREAD):
                for _attempt in range(10):
                    try:
                        done = engine.assign(rid, f"t{t}-{i}")
                        with lock:
                            made.append(done.member)
                        break
                    except NobodyEligible as exc:
                        with lock:
                            refused.append(exc)
                        break
                    except TransientError:  # a locked SQLite: the client retries the same key
                        continue
                else:
                    raise AssertionError("still locked after retries")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with h.service.db.session() as s:
        stored = Counter(s.scalars(select(AssignmentRow.user_id).where(AssignmentRow.rotation_id == rid)))
    assert stored == Counter(made)
    for name, cap in zip(names, caps, strict=False):
        if cap is not None:
            assert stored[name] <= cap, (name, stored, caps)
    requests = THREADS * PER_THREAD
    if any(c is None for c in caps):
        assert not refused and len(made) == requests
    else:  # every member capped: exactly the caps' total is handed out, the rest refused for capacity
        assert len(made) == min(requests, sum(c for c in caps if c is not None))
        assert len(refused) == requests - len(made)
        assert all({i.reason for i in r.choice.ineligible} == {"capacity"} for r in refused)


def _shared(harness_factory: Factory) -> tuple[Harness, RotationEngine]:
    """One service per test (per database) across Hypothesis's examples, kept on the test's own
    factory; each example makes a rotation of its own."""
    kept: tuple[Harness, RotationEngine] | None = getattr(harness_factory, "rotation_setup", None)
    if kept is None:
        kept = setup(harness_factory)
        setattr(harness_factory, "rotation_setup", kept)  # noqa: B010 - a function's attribute
    return kept
