"""The mailbox's working hours read from the fake Microsoft Graph: zones, batches, bad settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time

import pytest

from connectors.base import WorkingHoursSource
from connectors.outlook.hours import iana_zone, working_hours_of
from syncd.core.errors import AuthError, BadEventData
from syncd.core.hours import CalendarHours
from tests.connectors.outlook.support import connector_for
from tests.fakes.graph import FakeGraph

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


def test_windows_and_iana_names_map_to_iana() -> None:
    assert iana_zone("W. Europe Standard Time") == "Europe/Berlin"
    assert iana_zone("Pacific Standard Time") == "America/Los_Angeles"
    assert iana_zone("Europe/Oslo") == "Europe/Oslo"
    with pytest.raises(BadEventData, match="unknown time zone 'Mars Standard Time'"):
        iana_zone("Mars Standard Time")


@pytest.mark.parametrize(("data", "problem"), [
    ({"daysOfWeek": ["monday"], "startTime": "17:00:00", "endTime": "09:00:00", "timeZone": {"name": "UTC"}},
     "not after the start"),
    ({"daysOfWeek": ["funday"], "startTime": "09:00:00", "endTime": "17:00:00", "timeZone": {"name": "UTC"}},
     "unknown day"),
    ({"daysOfWeek": ["monday"], "startTime": "9 am", "endTime": "17:00:00", "timeZone": {"name": "UTC"}},
     "not a time of day"),
    ({"daysOfWeek": ["monday"], "startTime": "09:00:00", "endTime": "17:00:00",
      "timeZone": {"@odata.type": "#microsoft.graph.customTimeZone", "name": "Customized Time Zone", "bias": -60}},
     "custom time zone"),
    ({"daysOfWeek": ["monday"] * 50, "startTime": "09:00:00", "endTime": "17:00:00", "timeZone": {"name": "UTC"}},
     "not a list of weekdays"),
])
def test_unreadable_working_hours_are_refused(data: dict[str, object], problem: str) -> None:
    with pytest.raises(BadEventData, match=problem):
        working_hours_of(data)


def test_no_working_day_is_no_hours() -> None:
    assert working_hours_of({"daysOfWeek": [], "startTime": "09:00:00", "endTime": "17:00:00",
                             "timeZone": {"name": "UTC"}}) is None


def test_many_mailboxes_in_batches_each_with_its_own_answer(fake: FakeGraph) -> None:
    users = [f"agent{n}@contoso.com" for n in range(25)]  # two $batch requests
    for n, user in enumerate(users):
        fake.set_working_hours(user, WEEKDAYS[: 1 + n % 5], "08:30", "16:00", "W. Europe Standard Time")
    fake.set_working_hours(users[3], ["monday"], "09:00", "17:00", "Nowhere Standard Time")
    fake.block_mailbox(users[4])
    connector = connector_for(fake)
    try:
        assert isinstance(connector, WorkingHoursSource)
        fake.reset_counts()
        answers = connector.working_hours_many([f"{u}/primary" for u in users], NOW)
        # 25 mailboxes, 20 a batch; the blocked mailbox's refusal is its answer, not asked again
        assert fake.request_count("POST", "$batch") == 2
    finally:
        connector.close()
        fake.unblock_mailbox(users[4])
    assert answers[0] == CalendarHours({0: ((time(8, 30), time(16)),)}, "Europe/Berlin")
    assert answers[24] == CalendarHours({d: ((time(8, 30), time(16)),) for d in range(5)}, "Europe/Berlin")
    assert isinstance(answers[3], BadEventData) and "Nowhere Standard Time" in str(answers[3])
    assert isinstance(answers[4], AuthError)
    assert all(isinstance(a, CalendarHours) for n, a in enumerate(answers) if n not in (3, 4))


def test_one_mailbox_is_read_alone(fake: FakeGraph) -> None:
    fake.set_working_hours("solo@contoso.com", ["saturday", "sunday"], "10:00", "14:00", "Europe/Stockholm")
    connector = connector_for(fake)
    try:
        fake.reset_counts()
        [answer] = connector.working_hours_many(["solo@contoso.com/primary"], NOW)
        assert fake.request_count("POST", "$batch") == 0
    finally:
        connector.close()
    assert answer == CalendarHours({5: ((time(10), time(14)),), 6: ((time(10), time(14)),)}, "Europe/Stockholm")
