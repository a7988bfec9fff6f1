"""Team coverage intervals and their crossings of the minimum (`syncd.core.coverage`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from syncd.core.coverage import COVERAGE_LOW, COVERAGE_RESTORED, coverage, crossings

T0 = datetime(2026, 12, 7, tzinfo=UTC)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    status: str


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def test_a_member_away_for_a_while_takes_the_team_below_its_minimum() -> None:
    timelines = {
        "ada": [Span(hours(0), hours(48), "available")],
        "bo": [Span(hours(0), hours(10), "available"), Span(hours(10), hours(20), "away"),
               Span(hours(20), hours(48), "available")],
    }
    out = coverage(timelines, hours(0), hours(48), 2)
    assert [(i.start, i.end, i.members_available, i.below_min) for i in out] == [
        (hours(0), hours(10), ("ada", "bo"), False),
        (hours(10), hours(20), ("ada",), True),
        (hours(20), hours(48), ("ada", "bo"), False),
    ]
    assert [(c.kind, c.at, c.available) for c in crossings(out)] == [
        (COVERAGE_LOW, hours(10), 1), (COVERAGE_RESTORED, hours(20), 2)]


def test_the_span_is_covered_even_where_nobody_is_available() -> None:
    out = coverage({"ada": [Span(hours(5), hours(6), "available")]}, hours(0), hours(10), 1)
    assert [(i.start, i.end, i.available) for i in out] == [
        (hours(0), hours(5), 0), (hours(5), hours(6), 1), (hours(6), hours(10), 0)]


def test_an_empty_team_is_one_interval_below_any_positive_minimum() -> None:
    out = coverage({}, hours(0), hours(3), 1)
    assert [(i.start, i.end, i.available, i.below_min) for i in out] == [(hours(0), hours(3), 0, True)]
    assert coverage({}, hours(3), hours(3), 1) == []


def test_a_crossing_at_the_start_counts_against_what_was_announced_before() -> None:
    out = coverage({"ada": [Span(hours(0), hours(2), "away")]}, hours(0), hours(2), 1)
    assert crossings(out) == []
    assert [c.kind for c in crossings(out, below_at_start=False)] == [COVERAGE_LOW]
    assert crossings(out, below_at_start=True) == []


MEMBERS = ["ada", "bo", "cy", "di"]


@st.composite
def timelines(draw: st.DrawFn) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for member in draw(st.lists(st.sampled_from(MEMBERS), unique=True)):
        cuts = sorted(set(draw(st.lists(st.integers(0, 100), max_size=8))) | {0, 100})
        out[member] = [Span(hours(a), hours(b), draw(st.sampled_from(["available", "away"])))
                       for a, b in zip(cuts, cuts[1:], strict=False)]
    return out


@given(timelines(), st.integers(0, 99), st.integers(1, 100), st.integers(0, 4), st.data())
def test_coverage_at_any_instant_is_who_is_available_then(team: dict[str, list[Span]], first: int, length: int,
                                                         minimum: int, data: st.DataObject) -> None:
    start, end = hours(first), hours(min(100, first + length))
    out = coverage(team, start, end, minimum)
    if start >= end:
        assert out == []
        return
    # Contiguous, covering the span, and each boundary is a real change of who is available.
    assert out[0].start == start and out[-1].end == end
    for before, after in zip(out, out[1:], strict=False):
        assert before.end == after.start and before.members_available != after.members_available
    at = start + (end - start) * data.draw(st.floats(0, 0.999))
    here = next(i for i in out if i.start <= at < i.end)
    expected = tuple(sorted(m for m, spans in team.items()
                            if any(s.start <= at < s.end and s.status == "available" for s in spans)))
    assert here.members_available == expected
    assert here.below_min == (len(expected) < minimum)
    # Crossings alternate, and each is where below_min flips.
    kinds = [c.kind for c in crossings(out)]
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    assert len(kinds) == sum(a.below_min != b.below_min for a, b in zip(out, out[1:], strict=False))
