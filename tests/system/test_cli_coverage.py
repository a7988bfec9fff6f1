"""`syncd coverage` and the warnings of `syncd ooo add`, in-process against a config file
with a team that has a minimum, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.cli import main
from tests.conftest import pg_url_for

CONFIG = """
[daemon]
database_url = "sqlite:///state/syncd.db"

[[users]]
id = "ada"
email = "ada@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "bo"
email = "bo@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "cy"
email = "cy@example.com"
timezone = "America/New_York"

[[teams]]
id = "support"
members = ["ada", "bo", "cy"]
min_available = 2
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def workdir(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = CONFIG
    if request.param == "postgresql":
        schema = request.getfixturevalue("pg_schema")
        config = config.replace('"sqlite:///state/syncd.db"', json.dumps(pg_url_for(schema)))
    (tmp_path / "syncd.toml").write_text(config)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_coverage_and_the_warning_of_a_block_that_takes_the_team_below(
        workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ooo", "add", "ada", "--start", "2030-03-04T09:00:00Z",
                         "--end", "2030-03-04T17:00:00Z")
    assert code == 0 and err == ""
    code, out, err = run(capsys, "ooo", "add", "bo", "--start", "2030-03-04T13:00:00Z", "--end", "2030-03-05T00:00:00Z")
    assert code == 0 and len(out.split()) == 1  # standard output: the block id alone
    assert err.strip() == ("warning: team support has 1 of its minimum 2 available from 2030-03-04T13:00:00Z to "
                           "2030-03-04T17:00:00Z (the block is added)")

    code, out, _ = run(capsys, "coverage", "support", "--from", "2030-03-04T08:00:00Z", "--to", "2030-03-04T18:00:00Z")
    assert code == 0
    assert out.splitlines() == [
        "team support, minimum 2",
        "2030-03-04T08:00:00Z  2030-03-04T09:00:00Z    3 available: ada, bo, cy",
        "2030-03-04T09:00:00Z  2030-03-04T13:00:00Z    2 available: bo, cy",
        "2030-03-04T13:00:00Z  2030-03-04T17:00:00Z    1 available: cy  below minimum",
        "2030-03-04T17:00:00Z  2030-03-04T18:00:00Z    2 available: ada, cy",
    ]
    code, out, _ = run(capsys, "coverage", "support", "--from", "2030-03-04T12:00:00Z", "--to", "2030-03-04T14:00:00Z",
                       "--json")
    assert code == 0 and json.loads(out) == {"team": "support", "min_available": 2, "intervals": [
        {"start": "2030-03-04T12:00:00Z", "end": "2030-03-04T13:00:00Z", "available": 2,
         "members_available": ["bo", "cy"], "below_min": False},
        {"start": "2030-03-04T13:00:00Z", "end": "2030-03-04T14:00:00Z", "available": 1,
         "members_available": ["cy"], "below_min": True}]}


def test_bad_coverage_requests_exit_2_with_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in (
        (("coverage", "support", "--from", "2030-01-01T00:00:00Z", "--to", "2030-06-01T00:00:00Z"), "at most 90 days"),
        (("coverage", "ghosts", "--from", "2030-01-01T00:00:00Z", "--to", "2030-01-02T00:00:00Z"), "no team 'ghosts'"),
        (("coverage", "support", "--from", "2030-01-01T00:00:00", "--to", "2030-01-02T00:00:00Z"), "offset"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_a_bad_minimum_in_the_config_is_a_one_line_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = workdir / "syncd.toml"
    config.write_text(config.read_text().replace("min_available = 2", "min_available = -1"))
    code, _, err = run(capsys, "check-config")
    assert code == 2 and "min_available" in err and len(err.strip().splitlines()) == 1, err
