"""The config file's holidays, days off and teams: read, checked, and every mistake named by its key."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from syncd.core.daysoff import DaysOffSpec, HolidayRule
from tests.config.test_config import Files


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Files:
    monkeypatch.chdir(tmp_path)
    return Files(tmp_path)


USERS = """
[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "dana"
email = "dana@example.com"
timezone = "America/New_York"
"""


def test_daemon_default_user_override_and_teams(files: Files) -> None:
    config = files.load("""
        [daemon]
        holidays = { country = "SE" }
        days_off = ["2026-12-24", 2026-12-31]

        [[users]]
        id = "alice"
        email = "alice@example.com"
        timezone = "Europe/Stockholm"
        holidays = false

        [[users]]
        id = "dana"
        email = "dana@example.com"
        timezone = "America/New_York"
        holidays = { country = "us", subdivision = "New York", observed = false }
        days_off = ["2026-11-27"]

        [[teams]]
        id = "support"
        members = ["alice", "dana"]
        timezone = "Europe/Stockholm"
        working_hours = { mon = "09:00-17:00" }
        holidays = { country = "NO" }
        """)
    assert config.daemon.days_off == DaysOffSpec(HolidayRule("SE"), frozenset({date(2026, 12, 24),
                                                                               date(2026, 12, 31)}))
    assert config.users[0].days_off == DaysOffSpec(False)
    assert config.users[1].days_off == DaysOffSpec(HolidayRule("US", "NY", False), frozenset({date(2026, 11, 27)}))
    (team,) = config.teams
    assert (team.id, team.members, team.timezone, dict(team.working_hours), team.days_off) == (
        "support", ("alice", "dana"), "Europe/Stockholm", {0: ((time(9), time(17)),)}, DaysOffSpec(HolidayRule("NO")))


def test_nothing_configured_means_no_days_off(files: Files) -> None:
    config = files.load(USERS)
    assert config.daemon.days_off == DaysOffSpec() and config.teams == ()
    assert all(u.days_off == DaysOffSpec() for u in config.users)


@pytest.mark.parametrize(("text", "expected"), [
    ('[daemon]\nholidays = { country = "XX" }', "daemon.holidays.country: unknown country 'XX'"),
    ('[daemon]\nholidays = { country = "SE", subdivision = "Skåne" }',
     "daemon.holidays.subdivision: SE has no subdivision 'Skåne' (known: none)"),
    ('[daemon]\nholidays = { country = "SE", observed = 1 }', "daemon.holidays.observed: expected true or false"),
    ('[daemon]\nholidays = true', "daemon.holidays: expected a table like"),
    ('[daemon]\ndays_off = "2026-12-24"', "daemon.days_off: expected a list of dates"),
    ('[daemon]\ndays_off = ["2026-12-24", "christmas"]', "daemon.days_off[1]: 'christmas' is not a date"),
    (USERS + 'holidays = { country = "US", subdivision = "XY" }', "users[1].holidays.subdivision: US has no"),
    (USERS + '[[teams]]\nid = "t"\nmembers = ["alice", "zed"]', "teams[0].members[1]: unknown user 'zed'"),
    (USERS + '[[teams]]\nid = "t"\nworking_hours = { mon = "09:00-17:00" }',
     "teams[0].timezone: missing: working hours are local times"),
    (USERS + '[[teams]]\nid = "t"\ntimezone = "Mars/Olympus"', "teams[0].timezone: unknown time zone"),
    (USERS + '[[teams]]\nid = "t"\n[[teams]]\nid = "t"', "teams[1].id: duplicate team id 't'"),
    (USERS + '[[teams]]\nid = "t"\nlead = "alice"', "teams[0].lead: unknown key"),
])
def test_mistakes_name_the_key(files: Files, text: str, expected: str) -> None:
    assert files.error(text).startswith(f"syncd.toml: {expected}")
