"""The rotation engine on a real database (SQLite and PostgreSQL): members and teams, the
counting policies, eligibility at the meeting's start, idempotent and concurrent assigns."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from store.models import AssignmentRow, RotationSeatRow
from syncd.core.errors import NotFoundInStore, TransientError, UserInputError
from syncd.core.ooo import timed_content
from syncd.service.directory import Directory
from syncd.service.rotations import Assignment, NobodyEligible, RotationEngine
from tests.conftest import Harness, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: a Monday

Factory = Callable[..., Harness]


def at(hours: float, days: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def setup(harness_factory: Factory, *names: str) -> tuple[Harness, RotationEngine, Directory]:
    h = harness_factory([user(n) for n in names or ("a", "b", "c")])
    engine = RotationEngine(h.service, rng=random.Random(7))
    return h, engine, Directory(h.service, engine)


def members(engine: RotationEngine, rid: str) -> dict[str, dict[str, Any]]:
    return {m["user"]: m for m in engine.get(rid)["members"]}


def counts(engine: RotationEngine, rid: str) -> dict[str, float]:
    return {u: m["assignments"] for u, m in members(engine, rid).items()}


def assign_many(engine: RotationEngine, rid: str, n: int, prefix: str, **kw: Any) -> list[str]:
    return [engine.assign(rid, f"{prefix}-{i}", **kw).member for i in range(n)]


def seats(h: Harness, rid: str) -> set[str]:
    with h.service.db.session() as s:
        return set(s.scalars(select(RotationSeatRow.user_id).where(RotationSeatRow.rotation_id == rid)))


# -- rotations, users and teams ----------------------------------------------------------------

def test_create_with_users_and_teams(harness_factory: Factory) -> None:
    h, engine, directory = setup(harness_factory, "a", "b", "c", "d")
    directory.put_team("support", ["b", "c"])
    made = engine.create("  Demos ", members=["a", "b", "a"], teams=["support"])
    assert made["name"] == "Demos" and made["policy"] == "reset"
    assert made["users"] == ["a", "b"] and made["teams"] == ["support"]
    assert sorted(members(engine, made["id"])) == ["a", "b", "c"]  # b is in directly and through the team
    for m in made["members"]:
        assert m["available"] is True and m["eligible"] is True and m["reason"] is None
        assert m["assignments"] == 0 and m["recent"] == 0 and m["last_assigned_at"] is None
    assert made["next"] in {"a", "b", "c"}
    assert engine.ids() == [made["id"]]
    assert {k: v for k, v in engine.get(made["id"]).items() if k != "next"} == \
        {k: v for k, v in made.items() if k != "next"}

    with pytest.raises(NotFoundInStore, match="nobody"):
        engine.create("x", members=["nobody"])
    with pytest.raises(NotFoundInStore, match="PUT /v1/teams/ghosts"):
        engine.create("x", teams=["ghosts"])
    with pytest.raises(UserInputError, match="policy"):
        engine.create("x", members=["a"], policy="fifo")
    with pytest.raises(UserInputError, match="name"):
        engine.create("   ", members=["a"])
    assert engine.ids() == [made["id"]]  # nothing half-made
    with pytest.raises(NotFoundInStore):
        engine.get("no-such-rotation")


def test_team_members_follow_the_team(harness_factory: Factory) -> None:
    h, engine, directory = setup(harness_factory, "a", "b", "c", "d")
    directory.put_team("t", ["a", "b"])
    rid = engine.create("R", members=["c"], teams=["t"])["id"]
    assert seats(h, rid) == {"a", "b", "c"}

    directory.put_team("t", ["b", "d"])  # a leaves the team, d joins
    assert seats(h, rid) == {"b", "c", "d"}
    assert engine.get(rid)["teams"] == ["t"] and engine.get(rid)["users"] == ["c"]

    directory.put_team("t", [])
    assert seats(h, rid) == {"c"}
    directory.put_team("t", ["a", "c"])  # c both directly and through the team: one seat
    assert seats(h, rid) == {"a", "c"}


def test_removing_a_team_only_member_directly_is_refused(harness_factory: Factory) -> None:
    h, engine, directory = setup(harness_factory, "a", "b", "c")
    directory.put_team("t", ["a", "b"])
    rid = engine.create("R", members=["b", "c"], teams=["t"])["id"]

    with pytest.raises(UserInputError, match="through a team") as caught:
        engine.remove_member(rid, "a")
    assert not isinstance(caught.value, NotFoundInStore)  # it is a member, just not removable here
    assert "remove them from the team" in str(caught.value) and "toggle" in str(caught.value)
    assert seats(h, rid) == {"a", "b", "c"}

    after = engine.remove_member(rid, "b")  # direct and through the team: the team keeps them in
    assert after["users"] == ["c"] and seats(h, rid) == {"a", "b", "c"}
    after = engine.remove_member(rid, "c")
    assert after["users"] == [] and seats(h, rid) == {"a", "b"}
    with pytest.raises(NotFoundInStore, match="not a member"):
        engine.remove_member(rid, "c")


# -- counting policies -------------------------------------------------------------------------

def test_adding_a_member_under_reset_resets_every_count(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c", "d")
    rid = engine.create("R", members=["a", "b", "c"])["id"]
    assert engine.get(rid)["counts_since"] == iso(T0)
    h.clock.advance(timedelta(minutes=1))
    assert sorted(assign_many(engine, rid, 3, "before")) == ["a", "b", "c"]
    assert counts(engine, rid) == {"a": 1, "b": 1, "c": 1}

    # In the same instant (the real clock has whole seconds): those three must not count any more.
    view = engine.add_member(rid, "d")
    assert view["counts_since"] == iso(h.clock())
    assert counts(engine, rid) == {"a": 0, "b": 0, "c": 0, "d": 0}
    assert {u: m["recent"] for u, m in members(engine, rid).items()} == {"a": 1, "b": 1, "c": 1, "d": 0}

    h.clock.advance(timedelta(minutes=1))
    after = assign_many(engine, rid, 4, "after")
    assert after[0] == "d"  # equal counts: the fewest recent assignments wins
    assert sorted(after) == ["a", "b", "c", "d"]
    assert counts(engine, rid) == {"a": 1, "b": 1, "c": 1, "d": 1}

    again = engine.add_member(rid, "d")  # already a member: nothing is reset
    assert again["counts_since"] == view["counts_since"]
    assert counts(engine, rid) == {"a": 1, "b": 1, "c": 1, "d": 1}


def test_adding_a_member_under_calibrate_starts_them_at_the_average(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("R", members=["a", "b"], policy="calibrate")["id"]
    since = engine.get(rid)["counts_since"]
    h.clock.advance(timedelta(minutes=1))
    assert assign_many(engine, rid, 3, "x").count("a") in (1, 2)
    before = counts(engine, rid)
    assert sorted(before.values()) == [1, 2]

    view = engine.add_member(rid, "c")
    assert view["counts_since"] == since  # nobody's count is reset
    assert counts(engine, rid) == before | {"c": 1.5}

    h.clock.advance(timedelta(minutes=1))
    later = assign_many(engine, rid, 3, "y")
    assert later.count("c") <= 2  # the newcomer is not flooded
    assert max(counts(engine, rid).values()) - min(counts(engine, rid).values()) <= 1

    # Leaving and coming back: the returning member starts at the others' average again, their
    # earlier assignments are not counted on top of it.
    assert counts(engine, rid)["a"] >= 2
    engine.remove_member(rid, "a")
    others = counts(engine, rid)
    assert engine.add_member(rid, "a")["counts_since"] == since
    assert counts(engine, rid)["a"] == pytest.approx(round(sum(others.values()) / 2, 3))


def test_calibrate_credits_an_away_member_so_they_are_not_flooded_on_return(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("R", members=["a", "b", "c"], policy="calibrate")["id"]
    h.service.add_block("c", timed_content(at(-1), at(3), "Vacation"))
    h.clock.advance(timedelta(minutes=1))

    handed = assign_many(engine, rid, 6, "away")
    assert "c" not in handed and Counter(handed) == {"a": 3, "b": 3}
    view = members(engine, rid)
    assert view["c"]["eligible"] is False and view["c"]["available_at"] == iso(at(3))
    assert view["c"]["assignments"] == pytest.approx(6 * (1 / 2))  # 1/len(eligible) per assignment

    h.clock.set(at(4))  # c is back
    back = assign_many(engine, rid, 6, "back")
    assert Counter(back) == {"a": 2, "b": 2, "c": 2}  # a fair share, not the next six
    assert counts(engine, rid) == pytest.approx({"a": 5, "b": 5, "c": 5})

    # The same absence under `reset` floods the returning member: the contrast the policy exists for.
    reset = engine.create("plain", members=["a", "b", "c"])["id"]
    h.service.add_block("c", timed_content(at(5), at(6)))
    h.clock.set(at(5, 0) + timedelta(minutes=1))
    assert "c" not in assign_many(engine, reset, 6, "r-away")
    h.clock.set(at(7))
    assert assign_many(engine, reset, 3, "r-back") == ["c", "c", "c"]


# -- eligibility -------------------------------------------------------------------------------

def test_toggled_off_member_is_never_chosen(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("R", members=["a", "b", "c"])["id"]
    view = engine.set_available(rid, "b", False)
    b = next(m for m in view["members"] if m["user"] == "b")
    assert b["available"] is False and b["eligible"] is False and b["reason"] == "toggled_off"
    assert [i.reason for i in engine.preview(rid).ineligible if i.user_id == "b"] == ["toggled_off"]

    for i in range(8):
        assert engine.assign(rid, f"k{i}").member != "b"
        h.clock.advance(timedelta(minutes=5))
    engine.set_available(rid, "b", True)
    assert engine.preview(rid).member == "b"  # on again, and the fewest assignments

    with pytest.raises(NotFoundInStore, match="not a member"):
        engine.set_available(rid, "zed", False)
    with pytest.raises(NotFoundInStore, match="no rotation"):
        engine.set_available("nope", "a", False)


def test_eligibility_is_judged_at_the_meetings_start(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b")
    rid = engine.create("R", members=["a", "b"])["id"]
    h.service.add_block("a", timed_content(at(24), at(48), "Conference"))
    h.service.add_block("b", timed_content(at(-1), at(1), "Dentist"))  # away now, back at 10:00

    during = at(25)
    choice = engine.preview(rid, during)
    assert choice.member == "b" and [(i.user_id, i.available_at) for i in choice.ineligible] == [("a", at(48))]
    for i in range(2):  # a would be next on counts the second time, but is out at the start
        done = engine.assign(rid, f"conf-{i}", start=during, end=during + timedelta(hours=1))
        assert done.member == "b" and done.start == during and done.end == during + timedelta(hours=1)

    # Now b is OOO, but back by the meeting's start: eligible for it, not for "now".
    assert [i.user_id for i in engine.preview(rid).ineligible] == ["b"]
    later = at(2)
    assert set(engine.preview(rid, later).eligible) == {"a", "b"}
    assert engine.assign(rid, "later", start=later).member == "a"  # the fewest assignments
    assert engine.assign(rid, "later-2", start=later).member == "a"
    assert engine.assign(rid, "now").member == "a"  # without a start: b is away now

    with pytest.raises(UserInputError, match="end must be after start"):
        engine.assign(rid, "bad", start=later, end=later)


def test_nobody_eligible_says_why_and_when(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("Crew", members=["a", "b", "c"])["id"]
    engine.set_available(rid, "a", False)
    h.service.add_block("b", timed_content(at(-1), at(5)))
    h.service.add_block("c", timed_content(at(0), at(2)))

    with pytest.raises(NobodyEligible) as caught:
        engine.assign(rid, "k")
    choice = caught.value.choice
    assert choice.member is None and choice.eligible == ()
    reasons = {i.user_id: i for i in choice.ineligible}
    assert reasons["a"].reason == "toggled_off" and reasons["a"].available_at is None
    assert reasons["b"].reason not in ("toggled_off", "available") and reasons["b"].available_at == at(5)
    assert reasons["c"].available_at == at(2)
    assert choice.next_available_at == at(2)  # when the first one is back
    text = str(caught.value)
    assert "a (toggled_off)" in text and iso(at(2)) in text and "Crew" in text
    assert isinstance(caught.value, UserInputError)
    with h.service.db.session() as s:  # never a silent pick
        assert s.scalar(select(func.count()).select_from(AssignmentRow)) == 0

    assert engine.get(rid)["next"] is None
    assert engine.assign(rid, "k", start=at(3)).member == "c"  # c is back by then

    empty = engine.create("Empty")["id"]
    with pytest.raises(NobodyEligible, match="no members"):
        engine.assign(empty, "k")


def test_eligible_endpoint_logic(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    h.service.add_block("b", timed_content(at(1), at(3)))
    h.service.add_block("c", timed_content(at(-1), at(0.5)))

    now = engine.eligible(["a", "b", "c", "ghost", "a"])
    assert now["eligible"] == ["a", "b"]
    assert [(i["user"], i["available_at"]) for i in now["ineligible"]] == [("c", iso(at(0.5))),
                                                                            ("ghost", None)]
    assert now["ineligible"][1]["reason"] == "unknown_user"

    then = engine.eligible(["a", "b", "c"], at(2))
    assert then["eligible"] == ["a", "c"]
    assert [(i["user"], i["available_at"]) for i in then["ineligible"]] == [("b", iso(at(3)))]
    assert then["ineligible"][0]["reason"] != "unknown_user"
    assert engine.eligible([]) == {"eligible": [], "ineligible": []}


# -- assignments -------------------------------------------------------------------------------

def test_idempotency_key_returns_the_same_assignment(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("R", members=["a", "b", "c"])["id"]
    first = engine.assign(rid, "ticket-42", start=at(1))
    assert first.replayed is False
    h.clock.advance(timedelta(minutes=3))
    again = engine.assign(rid, "ticket-42", start=at(1))
    assert again.replayed is True
    assert (again.id, again.member, again.created_at, again.start) == (first.id, first.member,
                                                                      first.created_at, first.start)
    assert sum(counts(engine, rid).values()) == 1  # counted once
    assert again.as_json()["replayed"] is True and again.as_json()["assignment_id"] == first.id

    other = engine.create("Other", members=["a", "b", "c"])["id"]  # keys are per rotation
    assert engine.assign(other, "ticket-42").replayed is False
    for bad in ("", "k" * 301):
        with pytest.raises(UserInputError, match="idempotency_key"):
            engine.assign(rid, bad)
    with pytest.raises(NotFoundInStore, match="no rotation"):
        engine.assign("nope", "k")


def test_ties_go_to_fewest_recent_then_least_recently_assigned(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "z")
    other = {"a": "b", "b": "a"}

    def only(rid: str, member: str, key: str) -> None:
        engine.set_available(rid, other[member], False)
        assert engine.assign(rid, key).member == member
        engine.set_available(rid, other[member], True)

    # Both orders of the same story, so that no outcome is down to chance: `first` has two
    # assignments in the window and the older last one; `second` has one, more recent.
    rotations = {first: engine.create(f"R-{first}", members=["a", "b"])["id"] for first in ("a", "b")}
    for step, key in enumerate(("f1", "f2", "s1"), start=1):
        h.clock.set(at(step))
        for first, rid in rotations.items():
            only(rid, first if key != "s1" else other[first], key)
    h.clock.set(at(4))
    for rid in rotations.values():
        engine.add_member(rid, "z")  # resets the counts (reset policy); the recent window is untouched
        engine.set_available(rid, "z", False)
        assert counts(engine, rid) == {"a": 0, "b": 0, "z": 0}

    for first, rid in rotations.items():
        second = other[first]
        assert engine.preview(rid).eligible == (second, first)  # fewer recent beats least recently assigned
        assert engine.assign(rid, "tie-1").member == second
    h.clock.set(at(5))
    for first, rid in rotations.items():
        assert engine.assign(rid, "tie-2").member == first  # the fewest assignments

    # Counts 1:1. Eight days on nothing is recent any more: the one assigned least recently goes first.
    h.clock.advance(timedelta(days=8))
    for first, rid in rotations.items():
        second = other[first]
        view = members(engine, rid)
        assert (view["a"]["recent"], view["b"]["recent"]) == (0, 0)
        assert (view[first]["last_assigned_at"], view[second]["last_assigned_at"]) == (iso(at(5)), iso(at(4)))
        assert engine.preview(rid).eligible == (second, first)
        assert engine.assign(rid, "tie-3").member == second


# -- deleting users ----------------------------------------------------------------------------

def test_deleting_a_user_removes_their_seats(harness_factory: Factory) -> None:
    h, engine, directory = setup(harness_factory, "a", "b")
    for uid in ("x", "y"):
        directory.put_user(uid, {"email": f"{uid}@example.com", "timezone": "Europe/Oslo"})
    directory.put_team("t", ["b", "y"])
    direct = engine.create("Direct", members=["a", "x", "y"])["id"]
    via_team = engine.create("Team", members=["a"], teams=["t"])["id"]
    assert engine.assign(direct, "k").member in {"a", "x", "y"}

    directory.delete_user("x")
    assert seats(h, direct) == {"a", "y"} and engine.get(direct)["users"] == ["a", "y"]
    directory.delete_user("y")
    assert seats(h, direct) == {"a"} and engine.get(direct)["users"] == ["a"]
    assert seats(h, via_team) == {"a", "b"} and directory.get_team("t")["members"] == ["b"]
    assert engine.assign(direct, "k2").member == "a"
    assert engine.assign(via_team, "k").member in {"a", "b"}
    with pytest.raises(NotFoundInStore):
        directory.get_user("x")


# -- concurrency -------------------------------------------------------------------------------

THREADS, PER_THREAD, SHARED = 8, 10, 3


def test_concurrent_assigns_never_double_count(harness_factory: Factory) -> None:
    h, engine, _ = setup(harness_factory, "a", "b", "c")
    rid = engine.create("Busy", members=["a", "b", "c"])["id"]
    barrier = threading.Barrier(THREADS)
    results: list[tuple[str, Assignment]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def keys(t: int) -> list[str]:  # each thread: its own keys, plus keys every thread sends
        own = [f"t{t}-{i}" for i in range(PER_THREAD - SHARED)]
        shared = [f"shared-{i}" for i in range(SHARED)]
        return own[: t % 4] + shared + own[t % 4:]

    def client(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            for key in keys(t):
                for _attempt in range(5):
                    try:
                        done = engine.assign(rid, key)
                        break
                    except TransientError:  # a locked SQLite: the client retries the same key
                        continue
                else:
                    raise AssertionError(f"{key}: still locked after retries")
                with lock:
                    results.append((key, done))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == THREADS * PER_THREAD

    distinct = {key for key, _ in results}
    assert len(distinct) == THREADS * (PER_THREAD - SHARED) + SHARED
    by_key: dict[str, set[tuple[str, str]]] = {}
    for key, done in results:
        by_key.setdefault(key, set()).add((done.id, done.member))
    assert all(len(v) == 1 for v in by_key.values())  # every caller of a key got the same member
    fresh = Counter(key for key, done in results if not done.replayed)
    assert set(fresh) == distinct and set(fresh.values()) == {1}

    with h.service.db.session() as s:
        rows = list(s.execute(select(AssignmentRow.idempotency_key, AssignmentRow.user_id)
                              .where(AssignmentRow.rotation_id == rid)))
    assert len(rows) == len(distinct)
    assert len({k for k, _ in rows}) == len(rows)  # no key assigned twice
    per_member = Counter(u for _, u in rows)
    assert set(per_member) == {"a", "b", "c"}
    assert max(per_member.values()) - min(per_member.values()) <= 1
    assert counts(engine, rid) == {u: float(n) for u, n in per_member.items()}
