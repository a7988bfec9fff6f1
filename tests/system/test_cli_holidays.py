"""Holidays and days off through the `syncd` command line, in-process against a config file:
`check-config` names a bad country, `availability` shows the timeline, `status --at` the
"away until" after a holiday. The CLI reads the real clock, so the dates are next year's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.cli import main

NEXT = datetime.now(UTC).year + 1

CONFIG = f"""
[daemon]
database_url = "sqlite:///syncd.db"
holidays = {{ country = "SE" }}
days_off = ["{NEXT}-12-24"]

[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "dana"
email = "dana@example.com"
timezone = "America/New_York"
holidays = {{ country = "US", subdivision = "NY" }}

[[sinks]]
type = "stdout"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "syncd.toml").write_text(CONFIG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def local(tz: str, month: int, day: int, hour: int = 0) -> str:
    value = datetime(NEXT, month, day, hour, tzinfo=ZoneInfo(tz)).astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def test_availability_over_christmas_in_two_zones(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "availability", "alice", "--from", local("Europe/Stockholm", 12, 23),
                       "--to", local("Europe/Stockholm", 12, 27), "--json")
    assert code == 0
    got = json.loads(out)
    assert [(i["start"], i["reason"], i.get("holiday")) for i in got["intervals"]] == [
        (local("Europe/Stockholm", 12, 23), None, None),
        (local("Europe/Stockholm", 12, 24), "day_off", None),
        (local("Europe/Stockholm", 12, 25), "holiday", "Juldagen"),
        (local("Europe/Stockholm", 12, 26), "holiday", "Annandag jul"),
    ]
    code, out, _ = run(capsys, "availability", "dana", "--from", local("America/New_York", 12, 25),
                       "--to", local("America/New_York", 12, 27))
    assert code == 0
    assert out.splitlines() == [
        f"{local('America/New_York', 12, 25)}  {local('America/New_York', 12, 26)}  away       holiday        "
        "Christmas Day",
        f"{local('America/New_York', 12, 26)}  {local('America/New_York', 12, 27)}  available  -",
    ]


def test_status_at_says_away_until_after_the_holiday(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "status", "alice", "--at", local("Europe/Stockholm", 12, 25, 12), "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["status"], row["reason"], row["until"]) == ("away", "holiday", local("Europe/Stockholm", 12, 27))


def test_bad_timelines_and_countries_are_one_line_errors(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "availability", "alice", "--from", f"{NEXT}-01-01T00:00:00Z",
                       "--to", f"{NEXT}-06-01T00:00:00Z")
    assert code == 2 and "at most 90 days" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "availability", "alice", "--from", f"{NEXT}-01-01T00:00:00", "--to",
                       f"{NEXT}-01-02T00:00:00Z")
    assert code == 2 and "no UTC offset" in err
    (workdir / "syncd.toml").write_text(CONFIG.replace('country = "US", subdivision = "NY"', 'country = "UK"'
                                                       ', subdivision = "Atlantis"'))
    code, _, err = run(capsys, "check-config")
    assert code == 2
    assert err.strip() == ("syncd: syncd.toml: users[1].holidays.subdivision: UK has no subdivision 'Atlantis' "
                           "(known: ENG, NIR, SCT, WLS)")
    (workdir / "syncd.toml").write_text(CONFIG.replace('{ country = "SE" }', '{ country = "XX" }'))
    code, _, err = run(capsys, "check-config")
    assert code == 2 and err.startswith("syncd: syncd.toml: daemon.holidays.country: unknown country 'XX'")
