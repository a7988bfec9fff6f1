"""Route resolution in `syncd.core.route`: named cases pin each rule; Hypothesis drives
random replacement graphs (cycles, self-loops, dangling names, long chains) and checks that
a walk terminates, never routes to an away or unknown person nor back to the user, looks at
most `MAX_CHAIN` replacements, and finds the first available person when the chain is short
enough to reach them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.availability import Status
from syncd.core.route import MAX_CHAIN, BlockReplacement, Route, replacement_at, resolve_route, resolve_routes

PROPS = settings(max_examples=300, deadline=None)
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def route(user: str, statuses: dict[str, Status], names: dict[str, str | None], **kw: int) -> Route:
    return resolve_route(user, statuses.get, lambda u: names.get(u), **kw)


def test_available_user_takes_their_own_work() -> None:
    r = route("ada", {"ada": "available", "bo": "available"}, {"ada": "bo"})
    assert r == Route("ada", "available", "ada", (), "available")


def test_away_user_routes_to_their_replacement() -> None:
    r = route("ada", {"ada": "away", "bo": "available"}, {"ada": "bo"})
    assert (r.route_to, r.chain, r.reason) == ("bo", ("bo",), "replacement")


def test_away_replacement_passes_on_to_theirs() -> None:
    r = route("ada", {"ada": "away", "bo": "away", "cy": "available"}, {"ada": "bo", "bo": "cy"})
    assert (r.route_to, r.chain, r.reason) == ("cy", ("bo", "cy"), "replacement")


def test_nobody_named() -> None:
    r = route("ada", {"ada": "away"}, {})
    assert (r.route_to, r.chain, r.reason) == (None, (), "no_replacement")


def test_everyone_on_the_chain_away() -> None:
    r = route("ada", {"ada": "away", "bo": "away"}, {"ada": "bo"})
    assert (r.route_to, r.chain, r.reason) == (None, ("bo",), "no_replacement_available")


def test_a_loop_ends_the_walk() -> None:
    r = route("ada", {"ada": "away", "bo": "away", "cy": "away"}, {"ada": "bo", "bo": "cy", "cy": "ada"})
    assert (r.route_to, r.chain, r.reason) == (None, ("bo", "cy"), "no_replacement_available")


def test_an_unknown_replacement_ends_the_walk() -> None:
    r = route("ada", {"ada": "away"}, {"ada": "gone"})
    assert (r.route_to, r.chain, r.reason) == (None, ("gone",), "no_replacement_available")


def test_chain_stops_after_ten() -> None:
    people = [f"p{i}" for i in range(12)]
    statuses: dict[str, Status] = {p: "away" for p in people}
    statuses["p11"] = "available"
    names: dict[str, str | None] = {a: b for a, b in zip(people, people[1:], strict=False)}
    assert route("p0", statuses, names).reason == "no_replacement_available"
    assert len(route("p0", statuses, names).chain) == MAX_CHAIN
    statuses["p10"] = "available"  # the tenth link
    assert route("p0", statuses, names).route_to == "p10"


def test_unknown_user_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        route("ghost", {}, {})


def test_the_block_covering_the_instant_names_the_replacement() -> None:
    week = BlockReplacement("b1", T0, T0 + timedelta(days=7), "cy")
    day = BlockReplacement("b2", T0 + timedelta(days=1), T0 + timedelta(days=2), "dee")
    assert replacement_at("bo", [week, day], T0 - timedelta(seconds=1)) == "bo"
    assert replacement_at("bo", [week, day], T0) == "cy"
    assert replacement_at("bo", [week, day], T0 + timedelta(days=1)) == "cy"  # the week ends last
    assert replacement_at(None, [day], T0 + timedelta(days=1, hours=3)) == "dee"
    assert replacement_at("bo", [week], T0 + timedelta(days=7)) == "bo"  # half-open


people = st.sampled_from([f"u{i}" for i in range(14)])
graphs = st.tuples(
    st.dictionaries(people, st.sampled_from(["available", "away"])),
    st.dictionaries(people, st.one_of(st.none(), people, st.just("ghost"))),
)


@PROPS
@given(graphs, people, st.integers(min_value=1, max_value=MAX_CHAIN))
def test_properties_of_any_graph(graph: tuple[dict[str, Status], dict[str, str | None]], user: str,
                                 limit: int) -> None:
    statuses, names = graph
    statuses = {**statuses, user: statuses.get(user, "away")}
    lookups: list[str] = []

    def replacement_of(u: str) -> str | None:
        lookups.append(u)
        return names.get(u)

    r = resolve_route(user, statuses.get, replacement_of, limit=limit)
    assert len(lookups) <= limit and len(r.chain) <= limit
    if statuses[user] == "available":
        assert r.route_to == user and r.reason == "available"
        return
    assert user not in r.chain and len(set(r.chain)) == len(r.chain)
    assert r.route_to != user
    if r.route_to is not None:
        assert statuses.get(r.route_to) == "available" and r.chain[-1] == r.route_to
        assert all(statuses.get(p) != "available" for p in r.chain[:-1])
    else:
        assert all(statuses.get(p) != "available" for p in r.chain)
        assert r.reason == ("no_replacement" if not r.chain else "no_replacement_available")
    # Compared with a plain walk: the first available person within reach is found.
    walk, seen, current = [], {user}, user
    while len(walk) < limit and names.get(current) not in (None, *seen):
        current = names[current]  # type: ignore[assignment]
        walk.append(current)
        seen.add(current)
        if statuses.get(current) != "away":
            break
    reachable = [p for p in walk if statuses.get(p) == "available"]
    assert r.route_to == (reachable[0] if reachable else None)


@PROPS
@given(graphs, st.lists(people, min_size=1, max_size=6, unique=True))
def test_many_at_once_agree_with_one_at_a_time(graph: tuple[dict[str, Status], dict[str, str | None]],
                                               users: list[str]) -> None:
    statuses, names = graph
    calls = {"statuses": 0, "replacements": 0}

    def statuses_of(ids: object) -> dict[str, Status]:
        calls["statuses"] += 1
        return {u: statuses[u] for u in ids if u in statuses}  # type: ignore[attr-defined]

    def replacements_of(ids: object) -> dict[str, str | None]:
        calls["replacements"] += 1
        return {u: names.get(u) for u in ids}  # type: ignore[attr-defined]

    many = resolve_routes(users, statuses_of, replacements_of)
    assert set(many) == {u for u in users if u in statuses}
    for user, r in many.items():
        assert r == route(user, statuses, names)
    assert calls["statuses"] <= MAX_CHAIN + 1 and calls["replacements"] <= MAX_CHAIN
