"""`syncd route` and `syncd ooo add --replacement`, run in-process against a config file whose
users name replacements, on SQLite and PostgreSQL; and `check-config` refusing a replacement
that is the user themselves or nobody in the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.cli import main
from tests.conftest import pg_url_for

CONFIG = """
[daemon]
database_url = "{url}"

[[users]]
id = "ada"
email = "ada@example.com"
timezone = "Europe/Stockholm"
replacement = "bo"

[[users]]
id = "bo"
email = "bo@example.com"
timezone = "Europe/Stockholm"
replacement = "cy"

[[users]]
id = "cy"
email = "cy@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "dee"
email = "dee@example.com"
timezone = "Europe/Stockholm"

[[sinks]]
type = "stdout"
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def workdir(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if request.param == "sqlite":
        url = "sqlite:///syncd.db"
    else:
        url = pg_url_for(request.getfixturevalue("pg_schema"))
    (tmp_path / "syncd.toml").write_text(CONFIG.format(url=url))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def test_route_follows_the_chain_and_the_blocks_replacement(workdir: Path, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    now = datetime.now(UTC)
    code, out, _ = run(capsys, "route", "ada", "--json")
    assert code == 0
    assert json.loads(out) == {"user": "ada", "status": "available", "route_to": "ada", "chain": [],
                               "reason": "available"}
    start, end = iso(now - timedelta(hours=1)), iso(now + timedelta(hours=2))
    assert run(capsys, "ooo", "add", "ada", "--start", start, "--end", end)[0] == 0
    assert run(capsys, "ooo", "add", "bo", "--start", start, "--end", end)[0] == 0
    code, out, _ = run(capsys, "route", "ada")
    assert code == 0 and out == "ada           away       route to cy  (replacement)  via bo -> cy\n"
    # A later block of ada's names dee: while it covers, dee takes her work.
    later_start, later_end = now + timedelta(days=1), now + timedelta(days=2)
    code, out, _ = run(capsys, "ooo", "add", "ada", "--start", iso(later_start), "--end", iso(later_end),
                       "--replacement", "dee")
    assert code == 0
    code, out, _ = run(capsys, "ooo", "list", "ada", "--json")
    assert [b.get("replacement") for b in json.loads(out)] == [None, "dee"]
    code, out, _ = run(capsys, "route", "ada", "--at", iso(later_start + timedelta(hours=1)), "--json")
    assert json.loads(out) == {"user": "ada", "status": "away", "route_to": "dee", "chain": ["dee"],
                               "reason": "replacement"}
    assert run(capsys, "ooo", "add", "cy", "--start", start, "--end", end)[0] == 0
    code, out, _ = run(capsys, "route", "ada")
    assert out == "ada           away       route to nobody  (no_replacement_available)  via bo -> cy\n"
    code, out, _ = run(capsys, "route", "cy", "--json")
    assert json.loads(out)["reason"] == "no_replacement"


def test_bad_replacements_and_users_exit_2_with_one_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    span = ("--start", iso(now + timedelta(hours=1)), "--end", iso(now + timedelta(hours=2)))
    code, out, err = run(capsys, "ooo", "add", "ada", *span, "--replacement", "ada")
    assert (code, out) == (2, "")
    assert err == "syncd: replacement: ada cannot replace themselves; name another user\n"
    code, _, err = run(capsys, "ooo", "add", "ada", *span, "--replacement", "zed")
    assert code == 2 and err.startswith("syncd: replacement: no user 'zed'") and err.count("\n") == 1
    code, _, err = run(capsys, "route", "zed")
    assert code == 2 and err.startswith("syncd: no user 'zed'") and err.count("\n") == 1
    code, _, err = run(capsys, "route", "ada", "--at", "tomorrow")
    assert code == 2 and err.count("\n") == 1
    code, out, _ = run(capsys, "ooo", "list", "ada")
    assert out == ""  # nothing was added


def test_check_config_names_the_key_of_a_bad_replacement(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = (workdir / "syncd.toml").read_text()
    (workdir / "syncd.toml").write_text(config.replace('replacement = "cy"', 'replacement = "bo"'))
    code, _, err = run(capsys, "check-config")
    assert code == 2
    assert err == "syncd: syncd.toml: users[1].replacement: bo cannot replace themselves; name another user\n"
    (workdir / "syncd.toml").write_text(config.replace('replacement = "cy"', 'replacement = "zed"'))
    code, _, err = run(capsys, "check-config")
    assert code == 2
    assert err == "syncd: syncd.toml: users[1].replacement: no user 'zed' in this file; name one of its users\n"
    (workdir / "syncd.toml").write_text(config.replace('replacement = "cy"', "replacement = 3"))
    code, _, err = run(capsys, "check-config")
    assert code == 2 and "users[1].replacement" in err
