"""Working hours in a zone of their own (a mailbox's), and joining a day's ranges."""

from __future__ import annotations

from datetime import UTC, datetime, time

from syncd.core.availability import StatusPolicy, auto_status, boundaries, next_boundary
from syncd.core.hours import merge_ranges

WEEKDAYS_8_16 = {d: ((time(8), time(16)),) for d in range(5)}


def test_hours_follow_their_own_zone_not_the_users() -> None:
    # The user lives in Stockholm; the mailbox's hours are New York's (UTC-4 in late March).
    policy = StatusPolicy("Europe/Stockholm", WEEKDAYS_8_16, True, hours_timezone="America/New_York")
    assert auto_status([], policy, datetime(2026, 3, 30, 11, 59, tzinfo=UTC))[0] == "away"  # 07:59 in New York
    assert auto_status([], policy, datetime(2026, 3, 30, 12, tzinfo=UTC))[0] == "available"
    assert auto_status([], policy, datetime(2026, 3, 30, 20, tzinfo=UTC))[0] == "away"
    assert next_boundary([], policy, datetime(2026, 3, 30, 9, tzinfo=UTC)) == datetime(2026, 3, 30, 12, tzinfo=UTC)
    # Without a zone of their own, the hours are the user's.
    mine = StatusPolicy("Europe/Stockholm", WEEKDAYS_8_16, True)
    assert next_boundary([], mine, datetime(2026, 3, 30, 5, tzinfo=UTC)) == datetime(2026, 3, 30, 6, tzinfo=UTC)
    assert datetime(2026, 3, 30, 12, tzinfo=UTC) in boundaries(
        [], policy, datetime(2026, 3, 30, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))


def test_a_days_ranges_are_sorted_and_overlapping_or_touching_ones_joined() -> None:
    assert merge_ranges([(time(13), time(17)), (time(8), time(12)), (time(12), time(13))]) == ((time(8), time(17)),)
    assert merge_ranges([(time(8), time(10)), (time(9), time(9, 30)), (time(11), time.max)]) == \
        ((time(8), time(10)), (time(11), time.max))
    assert merge_ranges([]) == ()
