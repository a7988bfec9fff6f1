"""The config keys of working hours read from calendars: working_hours_from, working_hours_poll
and ``timezone = "calendar"``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.config.test_config import Files, files, user  # noqa: F401 - the fixture

__all__: list[str] = []


def test_defaults_then_daemon_wide_then_per_user(files: Files) -> None:  # noqa: F811 - the fixture
    config = files.load(user())
    assert config.daemon.working_hours_from == "config"
    assert config.daemon.working_hours_poll == timedelta(hours=1)
    assert config.users[0].working_hours_from == "config"
    config = files.load('[daemon]\nworking_hours_from = "calendar"\nworking_hours_poll = "15m"\n'
                        + user() + '[[users]]\nid = "bob"\nemail = "bob@example.com"\ntimezone = "UTC"\n'
                        'working_hours_from = "config"\n')
    assert config.daemon.working_hours_poll == timedelta(minutes=15)
    assert [u.working_hours_from for u in config.users] == ["calendar", "config"]
    config = files.load(user(timezone='"calendar"', working_hours_from='"calendar"'))
    assert config.users[0].timezone == "calendar"


@pytest.mark.parametrize(("text", "needle"), [
    (user(working_hours_from='"mailbox"'), "users[0].working_hours_from: must be one of config, calendar"),
    ('[daemon]\nworking_hours_from = "outlook"\n', "daemon.working_hours_from"),
    ('[daemon]\nworking_hours_poll = "often"\n', "daemon.working_hours_poll"),
    (user(timezone='"calendar"'), 'users[0].timezone: "calendar" takes the zone of the hours the calendar keeps'),
])
def test_bad_values_name_the_key(files: Files, text: str, needle: str) -> None:  # noqa: F811 - the fixture
    message = files.error(text)
    assert needle in message, message


def test_replicas_must_agree_on_where_hours_come_from(files: Files) -> None:  # noqa: F811 - the fixture
    from syncd.service.replicas import config_parts

    plain = config_parts(files.load(user()))
    assert config_parts(files.load(user(working_hours_from='"config"'))) == plain
    assert config_parts(files.load(user(working_hours_from='"calendar"')))["users"] != plain["users"]
