"""Choosing a user's working hours, and calendars that keep none (the memory connector stands
for Google Calendar here: neither offers working hours)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, time

import pytest

from connectors.base import WorkingHoursSource
from connectors.google.connector import GoogleConnector
from connectors.memory.connector import MemoryConnector
from syncd.core.hours import CONFIG_SOURCE, CalendarHours, EffectiveHours, choose_hours
from tests.conftest import Harness, user

NINE_TO_FIVE = {0: ((time(9), time(17)),)}
EIGHT_TO_FOUR = CalendarHours({0: ((time(8), time(16)),)}, "Europe/Berlin")


def test_the_first_calendar_with_hours_wins_else_the_config() -> None:
    mine = EffectiveHours(NINE_TO_FIVE, "Europe/Oslo", CONFIG_SOURCE)
    assert choose_hours(NINE_TO_FIVE, "Europe/Oslo", False, [("outlook:m365", EIGHT_TO_FOUR)]) == mine
    assert choose_hours(NINE_TO_FIVE, "Europe/Oslo", True, [("google:ws", None)]) == mine
    assert choose_hours(NINE_TO_FIVE, "Europe/Oslo", True, [("google:ws", None), ("outlook:m365", EIGHT_TO_FOUR),
                                                           ("caldav:nc", CalendarHours(NINE_TO_FIVE, "UTC"))]) == \
        EffectiveHours(EIGHT_TO_FOUR.hours, "Europe/Berlin", "outlook:m365")
    with pytest.raises(ValueError, match="at least one working day"):
        CalendarHours({}, "UTC")


def test_providers_without_working_hours_do_not_offer_them() -> None:
    assert not issubclass(GoogleConnector, WorkingHoursSource)
    assert not issubclass(MemoryConnector, WorkingHoursSource)


def test_a_calendar_without_hours_falls_back_said_once_and_shown_in_links(
        harness_factory: Callable[..., Harness], caplog: pytest.LogCaptureFixture) -> None:
    h = harness_factory([user("alice", "work", working_hours=NINE_TO_FIVE, working_hours_from="calendar")],
                        away_outside_working_hours=True)
    h.clock.set(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))  # a Monday, 10:30 in Stockholm
    with caplog.at_level(logging.INFO):
        h.sync()
        h.clock.set(datetime(2026, 3, 2, 12, tzinfo=UTC))
        h.sync()  # read again an hour later: nothing new is said
    said = [r.getMessage() for r in caplog.records if "keeps no working hours" in r.getMessage()]
    assert said == ["link alice/mem/work: the provider keeps no working hours; the config's apply"]
    [link] = h.service.links()
    assert link["working_hours"] == {"state": "unsupported",
                                     "problem": "the provider keeps no working hours; the config's apply"}
    assert h.service.working_hours("alice") == {"working_hours": {"mon": ["09:00-17:00"]},
                                                "timezone": "Europe/Stockholm", "source": "config"}
    assert h.service.status("alice").status == "available"


def test_back_to_config_hours_forgets_what_the_calendars_said(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory([user("alice", "work", working_hours=NINE_TO_FIVE, working_hours_from="calendar")])
    h.sync()
    assert h.service.links()[0]["working_hours"]["state"] == "unsupported"
    again = harness_factory([user("alice", "work", working_hours=NINE_TO_FIVE)])  # the config file changed
    assert again.service.links()[0]["working_hours"] == {"state": None, "problem": None}
    assert again.service.working_hours("alice")["source"] == "config"
