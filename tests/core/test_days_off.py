"""Public holidays and company days off in the status rules (`syncd.core.daysoff`,
`syncd.core.availability`): whole local days, in the user's zone, below OOO blocks and above
working hours. Every instant is fixed; nothing reads a clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from syncd.core.availability import (
    AVAILABLE,
    AWAY,
    Period,
    StatusChange,
    StatusPolicy,
    advance,
    auto_status,
    first_seen_away,
    initial_state,
    next_boundary,
    next_change,
    set_manual,
)
from syncd.core.daysoff import (
    DaysOff,
    DaysOffProblem,
    DaysOffSpec,
    HolidayRule,
    days_off_of,
    holiday_names,
    parse_dates,
    parse_holidays,
    spec_from_json,
    spec_to_json,
)

SE = HolidayRule("SE")
NO = HolidayRule("NO")
WEEKDAYS_9_17 = {d: [(time(9), time(17))] for d in range(5)}


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def local(tz: str, y: int, mo: int, d: int, h: int = 0) -> datetime:
    return datetime(y, mo, d, h, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def stockholm(**kw: object) -> StatusPolicy:
    return StatusPolicy("Europe/Stockholm", days_off=DaysOff(SE, frozenset({date(2026, 12, 24)})), **kw)  # type: ignore[arg-type]


# -- the holiday data ---------------------------------------------------------------------------------


def test_holidays_are_named_in_the_countrys_language() -> None:
    assert holiday_names(SE, 2026)[date(2026, 12, 25)] == "Juldagen"
    assert holiday_names(NO, 2026)[date(2026, 5, 17)] == "Grunnlovsdag"
    assert holiday_names(HolidayRule("US", "NY"), 2026)[date(2026, 11, 26)] == "Thanksgiving Day"


def test_observed_moves_a_weekend_holiday_to_a_weekday_only_when_asked() -> None:
    # 2026-07-04 is a Saturday: the United States observe it on Friday the 3rd.
    assert "observed" in DaysOff(HolidayRule("US", "", True)).on(date(2026, 7, 3)).name  # type: ignore[union-attr]
    assert DaysOff(HolidayRule("US", "", False)).on(date(2026, 7, 3)) is None


def test_a_holiday_wins_over_a_company_day_off_on_the_same_date() -> None:
    both = DaysOff(SE, frozenset({date(2026, 12, 25), date(2026, 12, 24)}))
    assert both.on(date(2026, 12, 25)).kind == "holiday"  # type: ignore[union-attr]
    assert both.on(date(2026, 12, 24)).kind == "day_off"  # type: ignore[union-attr]
    assert [d.day.day for d in both.between(date(2026, 12, 23), date(2026, 12, 27))] == [24, 25, 26]


def test_the_holiday_calendar_is_cached_and_the_cache_bounded() -> None:
    holiday_names.cache_clear()
    for _ in range(3):
        DaysOff(SE).on(date(2026, 12, 25))
    info = holiday_names.cache_info()
    assert (info.misses, info.hits, info.maxsize) == (1, 2, 512)


def test_years_far_out_cost_nothing_and_hold_no_holidays() -> None:
    assert DaysOff(SE).on(date(9999, 12, 25)) is None
    assert list(DaysOff(SE).between(date(3000, 1, 1), date(9999, 12, 31))) == []


def test_own_rule_replaces_the_default_and_days_off_add_up() -> None:
    default = DaysOffSpec(SE, frozenset({date(2026, 12, 24)}))
    assert days_off_of(None, default) == DaysOff(SE, frozenset({date(2026, 12, 24)}))
    assert days_off_of(DaysOffSpec(NO, frozenset({date(2026, 6, 1)})), default) == \
        DaysOff(NO, frozenset({date(2026, 12, 24), date(2026, 6, 1)}))
    assert days_off_of(DaysOffSpec(False), default) == DaysOff(None, frozenset({date(2026, 12, 24)}))
    assert not days_off_of(None, None)


def test_specs_round_trip_through_their_stored_form() -> None:
    for spec in (DaysOffSpec(), DaysOffSpec(False), DaysOffSpec(HolidayRule("US", "NY", False),
                                                                frozenset({date(2026, 12, 31)}))):
        assert spec_from_json(spec_to_json(spec)) == spec


@pytest.mark.parametrize(("value", "key", "message"), [
    ({"country": "XX"}, "country", "unknown country 'XX'"),
    ({"country": ""}, "country", "missing"),
    ({"country": "US", "subdivision": "ZZ"}, "subdivision", "US has no subdivision 'ZZ'"),
    ({"country": "SE", "observed": "yes"}, "observed", "expected true or false"),
    ({"country": "SE", "region": "x"}, "region", "unknown key"),
    ("SE", "", "expected a table"),
])
def test_bad_holiday_rules_name_the_key(value: object, key: str, message: str) -> None:
    with pytest.raises(DaysOffProblem) as caught:
        parse_holidays(value)
    assert caught.value.key == key and message in caught.value.message


def test_holiday_rules_are_normalised() -> None:
    assert parse_holidays({"country": "us", "subdivision": "New York"}) == HolidayRule("US", "NY", True)
    assert parse_holidays(False) is False


@pytest.mark.parametrize(("value", "key"), [(["2026-12-24", "24/12"], "[1]"), (["2026-02-30"], "[0]"),
                                            ([20261224], "[0]"), ("2026-12-24", ""), (["2026-12-24"] * 2001, "")])
def test_bad_days_off_name_the_entry(value: object, key: str) -> None:
    with pytest.raises(DaysOffProblem) as caught:
        parse_dates(value)
    assert caught.value.key == key


# -- the status rules ---------------------------------------------------------------------------------


def test_a_holiday_is_the_whole_local_day_in_the_users_zone() -> None:
    policy = stockholm()
    christmas_starts, christmas_ends = local("Europe/Stockholm", 2026, 12, 25), local("Europe/Stockholm", 2026, 12, 26)
    assert christmas_starts == utc(2026, 12, 24, 23)
    assert auto_status([], policy, christmas_starts) == (AWAY, "holiday", None)
    assert auto_status([], policy, christmas_starts - timedelta(seconds=1)) == (AWAY, "day_off", None)
    assert auto_status([], policy, christmas_ends) == (AWAY, "holiday", None)  # Annandag jul
    assert auto_status([], policy, local("Europe/Stockholm", 2026, 12, 27)) == (AVAILABLE, "ooo_ended", None)
    # The same UTC instant is still the 24th in New York: not their Christmas.
    new_york = StatusPolicy("America/New_York", days_off=DaysOff(HolidayRule("US")))
    assert auto_status([], new_york, christmas_starts)[0] == AVAILABLE


def test_a_day_off_on_the_dst_day_is_23_hours_long() -> None:
    policy = StatusPolicy("Europe/Stockholm", days_off=DaysOff(None, frozenset({date(2026, 3, 29)})))
    state = initial_state([], policy, utc(2026, 3, 28, 12))
    changes = advance(state, [], policy, utc(2026, 3, 30)).changes
    assert [(c.status, c.reason, c.effective_at) for c in changes] == [
        (AWAY, "day_off", utc(2026, 3, 28, 23)), (AVAILABLE, "day_off", utc(2026, 3, 29, 22))]


def test_holiday_changes_carry_the_name_when_it_starts_and_when_it_ends() -> None:
    policy = StatusPolicy("Europe/Oslo", days_off=DaysOff(NO))
    state = initial_state([], policy, utc(2026, 5, 16, 12))
    changes = advance(state, [], policy, utc(2026, 5, 18, 12)).changes
    assert changes == [
        StatusChange(AWAY, AVAILABLE, "holiday", local("Europe/Oslo", 2026, 5, 17), None, "Grunnlovsdag"),
        StatusChange(AVAILABLE, AWAY, "holiday", local("Europe/Oslo", 2026, 5, 18), None, "Grunnlovsdag"),
    ]


def test_consecutive_days_off_are_one_absence() -> None:
    state = initial_state([], stockholm(), utc(2026, 12, 23, 12))
    changes = advance(state, [], stockholm(), utc(2026, 12, 28)).changes
    assert [(c.status, c.reason, c.effective_at, c.holiday) for c in changes] == [
        (AWAY, "day_off", utc(2026, 12, 23, 23), None),
        (AVAILABLE, "holiday", utc(2026, 12, 26, 23), "Annandag jul"),
    ]


def test_an_ooo_block_on_a_holiday_keeps_its_reason_and_the_holiday_follows_it() -> None:
    policy = stockholm()
    block = Period("b", utc(2026, 12, 22, 8), utc(2026, 12, 25, 11))  # into Christmas Day
    state = initial_state([block], policy, utc(2026, 12, 22, 7))
    assert auto_status([block], policy, utc(2026, 12, 25, 10)) == (AWAY, "ooo_started", "b")
    evaluation = advance(state, [block], policy, utc(2026, 12, 28))
    assert [(c.status, c.reason, c.effective_at) for c in evaluation.changes] == [
        (AWAY, "ooo_started", utc(2026, 12, 22, 8)), (AVAILABLE, "holiday", utc(2026, 12, 26, 23))]
    # In between, the block's end hands the absence over to the holiday without a change.
    middle = advance(state, [block], policy, utc(2026, 12, 25, 12)).state
    assert (middle.effective, middle.reason, middle.block_id) == (AWAY, "holiday", None)


def test_a_manual_change_on_a_holiday_holds_until_the_next_automatic_transition() -> None:
    policy = StatusPolicy("Europe/Oslo", days_off=DaysOff(NO))
    state = advance(initial_state([], policy, utc(2026, 5, 16)), [], policy, utc(2026, 5, 17, 8)).state
    manual = set_manual(state, AVAILABLE, utc(2026, 5, 17, 8)).state
    assert advance(manual, [], policy, utc(2026, 5, 17, 20)).state.effective == AVAILABLE
    # The holiday's end is a transition (away -> available): nothing to publish, the manual change ends.
    after = advance(manual, [], policy, utc(2026, 5, 18, 12))
    assert after.changes == [] and after.state.manual is None
    # Then Pentecost takes over again.
    assert next_change(after.state, [], policy) == StatusChange(
        AWAY, AVAILABLE, "holiday", local("Europe/Oslo", 2026, 5, 24), None, "Første pinsedag")


def test_away_until_after_a_holiday_monday() -> None:
    # Pinse: Monday 2026-05-25 is 2. pinsedag in Norway. OOO Friday to Sunday, back Tuesday.
    policy = StatusPolicy("Europe/Oslo", days_off=DaysOff(NO))
    ooo = Period("b", local("Europe/Oslo", 2026, 5, 22), local("Europe/Oslo", 2026, 5, 25))
    state = initial_state([ooo], policy, utc(2026, 5, 22, 9))
    upcoming = next_change(state, [ooo], policy)
    assert upcoming is not None and upcoming.effective_at == local("Europe/Oslo", 2026, 5, 26)
    assert (upcoming.reason, upcoming.holiday) == ("holiday", "Andre pinsedag")


def test_away_until_the_first_working_hour_after_a_holiday_monday() -> None:
    policy = StatusPolicy("Europe/Oslo", WEEKDAYS_9_17, True, DaysOff(NO))
    ooo = Period("b", local("Europe/Oslo", 2026, 5, 22, 9), local("Europe/Oslo", 2026, 5, 22, 17))
    state = initial_state([ooo], policy, utc(2026, 5, 22, 9))
    upcoming = next_change(state, [ooo], policy)
    assert upcoming is not None
    assert (upcoming.effective_at, upcoming.reason) == (local("Europe/Oslo", 2026, 5, 26, 9), "working_hours")


def test_the_next_boundary_finds_a_holiday_months_ahead() -> None:
    policy = StatusPolicy("Europe/Stockholm", days_off=DaysOff(SE))
    assert next_boundary([], policy, utc(2026, 6, 21)) == local("Europe/Stockholm", 2026, 10, 31)
    assert next_boundary([], StatusPolicy("Europe/Stockholm"), utc(2026, 6, 21)) is None


def test_without_holidays_or_days_off_nothing_changes() -> None:
    plain = StatusPolicy("Europe/Stockholm")
    assert not plain.uses_days_off
    assert auto_status([], plain, utc(2026, 12, 25, 12))[0] == AVAILABLE
    assert next_change(initial_state([], plain, utc(2026, 12, 20)), [], plain) is None


def test_a_user_first_seen_on_a_holiday_is_announced_with_its_name() -> None:
    policy = StatusPolicy("Europe/Stockholm", days_off=DaysOff(SE))
    state = initial_state([], policy, utc(2026, 12, 25, 9))
    assert first_seen_away(state, policy) == StatusChange(AWAY, AVAILABLE, "holiday", utc(2026, 12, 25, 9), None,
                                                          "Juldagen")
