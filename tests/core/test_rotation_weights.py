"""Weights and caps in `syncd.core.rotation`: "fewest assignments" per unit of weight, caps
within a window, and the ``calibrate`` and ``reset`` policies with weights.

The simulation is the one in test_rotation.py, with time: each step is a minute, the chosen
member's assignment is remembered for their cap, and under ``calibrate`` away members are
credited before each assignment.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.rotation import (
    CAPACITY,
    Choice,
    Member,
    Policy,
    away_credits,
    choose,
    ineligibility,
    reweighed_count,
    slot_frees_at,
    starting_count,
)

T0 = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
PROPS = settings(max_examples=150, deadline=None)


def m(user_id: str, count: float = 0, *, weight: float = 1.0, cap: int | None = None,
      times: tuple[datetime, ...] = (), status: str = "available") -> Member:
    return Member(user_id=user_id, toggled_on=True, status=status, count=count, weight=weight, cap=cap,
                  in_window=times, away_reason="ooo_started" if status == "away" else None)


def step(members: list[Member], policy: Policy, rng: random.Random, now: datetime,
         window: timedelta | None = None) -> tuple[list[Member], Choice]:
    credits = away_credits(members, policy, now, window)
    members = [replace(x, count=x.count + credits.get(x.user_id, 0.0)) for x in members]
    choice = choose(members, rng, now, window)
    if choice.member is not None:
        members = [replace(x, count=x.count + 1, recent=x.recent + 1, last_assigned_at=now,
                           in_window=(*x.in_window, now)) if x.user_id == choice.member else x for x in members]
    return members, choice


# --- named rules --------------------------------------------------------------------------

def test_fewest_assignments_per_unit_of_weight_wins() -> None:
    # a has 3 at weight 2 (1.5 each), b has 2 at weight 1: a is further behind.
    assert choose([m("a", 3, weight=2), m("b", 2)], random.Random(0)).member == "a"
    assert choose([m("a", 5, weight=2), m("b", 2)], random.Random(0)).member == "b"


def test_equal_load_falls_to_the_old_tiebreaks() -> None:
    a = replace(m("a", 4, weight=2), recent=1)
    b = replace(m("b", 2), recent=0)
    assert choose([a, b], random.Random(0)).member == "b"  # same load 2.0: fewest recent


def test_member_at_cap_is_ineligible_until_a_slot_frees() -> None:
    times = (T0, T0 + timedelta(hours=2), T0 + timedelta(hours=5))
    full = m("a", 3, cap=3, times=times)
    now = T0 + timedelta(hours=6)
    why = ineligibility(full, now, DAY)
    assert why is not None and why.reason == CAPACITY and why.available_at == T0 + DAY
    choice = choose([full, m("b", 9)], random.Random(0), now, DAY)
    assert choice.member == "b" and choice.ineligible[0].reason == CAPACITY
    assert ineligibility(full, T0 + DAY, DAY) is None  # the oldest left the window at that instant
    assert ineligibility(full, now) is None  # no window: no cap


def test_slot_frees_after_enough_have_left_when_over_the_cap() -> None:
    # Cap lowered to 2 with 4 in the window: three must leave to get below it, so the third
    # oldest decides.
    times = tuple(T0 + timedelta(hours=h) for h in (0, 1, 2, 3))
    assert slot_frees_at(m("a", cap=2, times=times), T0 + timedelta(hours=4), DAY) == T0 + timedelta(hours=26)
    assert slot_frees_at(m("a", cap=5, times=times), T0 + timedelta(hours=4), DAY) is None
    # Assignments older than the window do not count.
    assert slot_frees_at(m("a", cap=2, times=times), T0 + DAY + timedelta(minutes=90), DAY) == \
        T0 + timedelta(hours=26)
    assert slot_frees_at(m("a", cap=2, times=times), T0 + DAY + timedelta(minutes=150), DAY) is None


def test_nobody_below_their_cap_says_when_the_first_slot_frees() -> None:
    a = m("a", cap=1, times=(T0,))
    b = m("b", cap=1, times=(T0 + timedelta(hours=3),))
    choice = choose([a, b], random.Random(0), T0 + timedelta(hours=4), DAY)
    assert choice.member is None and choice.next_available_at == T0 + DAY


def test_away_wins_over_capacity_as_the_reason() -> None:
    why = ineligibility(m("a", cap=1, times=(T0,), status="away"), T0, DAY)
    assert why is not None and why.reason == "ooo_started"


def test_calibrate_starts_a_newcomer_at_the_average_load_times_their_weight() -> None:
    members = [m("a", 4, weight=2), m("b", 2)]  # loads 2 and 2
    assert starting_count(members, "calibrate") == pytest.approx(2.0)
    assert starting_count(members, "calibrate", weight=3) == pytest.approx(6.0)
    assert starting_count(members, "reset", weight=3) == 0


def test_calibrate_credits_an_away_member_their_weights_share() -> None:
    members = [m("a", weight=3), m("b"), m("c", weight=2, status="away")]
    assert away_credits(members, "calibrate") == {"c": pytest.approx(2 / 4)}
    assert away_credits(members, "reset") == {}


def test_a_member_at_cap_is_neither_eligible_nor_credited() -> None:
    members = [m("a", cap=1, times=(T0,)), m("b"), m("c", status="away")]
    assert away_credits(members, "calibrate", T0, DAY) == {"c": pytest.approx(1.0)}


def test_reweighing_keeps_the_load() -> None:
    assert reweighed_count(6, 2, 3) / 3 == pytest.approx(6 / 2)


# --- properties ---------------------------------------------------------------------------

weights = st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 5.0]), min_size=1, max_size=6)


@PROPS
@given(weights, st.integers(1, 400), st.integers(0, 2**32 - 1), st.sampled_from(["reset", "calibrate"]))
def test_loads_stay_within_one_step_of_each_other(ws: list[float], n: int, seed: int, policy: Policy) -> None:
    """Everyone available: the gap between loads never exceeds the largest step (1 / the
    smallest weight), so each member's share is within a bounded number of assignments of
    its weight's share, however long the rotation runs."""
    members = [m(f"u{i}", weight=w) for i, w in enumerate(ws)]
    rng = random.Random(seed)
    for k in range(n):
        members, choice = step(members, policy, rng, T0 + timedelta(minutes=k))
        loads = [x.load for x in members]
        assert max(loads) - min(loads) <= 1 / min(ws) + 1e-9
    total = sum(ws)
    for x in members:
        # count/w within [L, L + 1/min w] for everyone, so the gap to the fair share is bounded.
        assert abs(x.count - n * x.weight / total) <= x.weight / min(ws) + 1e-9


@settings(max_examples=40, deadline=None)
@given(weights.filter(lambda ws: len(ws) >= 2), st.integers(0, 2**32 - 1))
def test_long_run_shares_converge_to_the_weights(ws: list[float], seed: int) -> None:
    members = [m(f"u{i}", weight=w) for i, w in enumerate(ws)]
    rng = random.Random(seed)
    n = 2000
    for k in range(n):
        members, _ = step(members, "reset", rng, T0 + timedelta(minutes=k))
    for x in members:
        assert x.count / n == pytest.approx(x.weight / sum(ws), abs=0.01)


caps = st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0]), st.none() | st.integers(1, 6)),
                min_size=1, max_size=5)


@PROPS
@given(caps, st.integers(1, 300), st.sampled_from([timedelta(minutes=30), timedelta(hours=2), DAY]),
       st.integers(0, 2**32 - 1), st.sampled_from(["reset", "calibrate"]))
def test_nobody_takes_more_than_their_cap_in_any_window(terms: list[tuple[float, int | None]], n: int,
                                                        window: timedelta, seed: int, policy: Policy) -> None:
    members = [m(f"u{i}", weight=w, cap=c) for i, (w, c) in enumerate(terms)]
    rng = random.Random(seed)
    for k in range(n):
        now = T0 + timedelta(minutes=k)
        members, choice = step(members, policy, rng, now, window)
        if choice.member is None:
            # Only when every member is capped and full; and a slot frees at the time it says.
            assert all(x.cap is not None for x in members)
            assert choice.next_available_at is not None and choice.next_available_at > now
            assert {i.reason for i in choice.ineligible} == {CAPACITY}
    for x in members:
        if x.cap is None:
            continue
        for start in x.in_window:  # every window that starts at an assignment holds at most the cap
            assert sum(1 for t in x.in_window if start <= t < start + window) <= x.cap


@PROPS
@given(st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=3, max_size=5), st.integers(0, 40),
       st.integers(0, 80), st.integers(0, 2**32 - 1), st.data())
def test_calibrate_with_weights_a_member_back_from_ooo_is_level(ws: list[float], before: int, during: int,
                                                                 seed: int, data: st.DataObject) -> None:
    members = [m(f"u{i}", weight=w) for i, w in enumerate(ws)]
    rng = random.Random(seed)
    t = T0
    for _ in range(before):
        t += timedelta(minutes=1)
        members, _ = step(members, "calibrate", rng, t)
    i = data.draw(st.integers(0, len(ws) - 1), label="away")
    members[i] = replace(members[i], status="away", away_reason="ooo_started")
    for _ in range(during):
        t += timedelta(minutes=1)
        members, choice = step(members, "calibrate", rng, t)
        assert choice.member != members[i].user_id
    members[i] = replace(members[i], status="available", away_reason=None)
    # Each assignment raises the others' weighted average load (all their assignments ÷ all
    # their weight) by 1 / their total weight, and the credit raises the away member's by the
    # same: they come back as far from it as they left, within one step.
    others = [x for j, x in enumerate(members) if j != i]
    average = sum(x.count for x in others) / sum(x.weight for x in others)
    assert abs(members[i].load - average) <= 1 / min(ws) + 1e-9
