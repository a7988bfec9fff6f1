"""`syncd feed add/list/revoke` against a config file's database (SQLite and PostgreSQL), with
the team and its blocks made over the HTTP API and the feed fetched by its URL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from fastapi.testclient import TestClient

from store.db import Database
from syncd.api import create_app
from syncd.cli import main
from syncd.config import load_config
from syncd.service import Syncd
from tests.conftest import pg_url_for
from tests.known_secrets import register

PUBLIC = "https://syncd.example.com"
A = {"Authorization": "Bearer admin-token-of-24-characters"}

CONFIG = """
[daemon]
database_url = "{url}"

[api]
public_url = "{public}"
tokens = [{{ name = "root", token = "admin-token-of-24-characters", scopes = ["admin"] }}]

[[users]]
id = "ada"
email = "ada@example.com"
timezone = "Europe/Stockholm"

[[users]]
id = "bo"
email = "bo@example.com"
timezone = "America/New_York"
"""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def config_path(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    url = f"sqlite:///{tmp_path / 'syncd.db'}" if request.param == "sqlite" else \
        pg_url_for(request.getfixturevalue("pg_schema"))
    path = tmp_path / "syncd.toml"
    path.write_text(CONFIG.format(url=url, public=PUBLIC))
    path.chmod(0o600)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return path


@pytest.fixture
def api(config_path: Path) -> Iterator[TestClient]:
    """The same deployment's HTTP API, in-process."""
    config = load_config(config_path)
    db = Database(config.daemon.database_url)
    service = Syncd(config, db)
    service.prepare()
    client_log = logging.getLogger("httpx2")  # it would log the feed's URL; syncd does not
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    try:
        with TestClient(create_app(service)) as client:
            yield client
    finally:
        client_log.setLevel(level)
        db.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_feed_commands_end_to_end(api: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert api.put("/v1/teams/support", json={"members": ["ada", "bo"]}, headers=A).status_code == 201
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    made = api.post("/v1/users/ada/ooo", json={"start": start.isoformat(), "end": (start + timedelta(hours=5))
                                                 .isoformat(), "title": "Conference"}, headers=A)
    assert made.status_code == 201, made.text

    code, out, err = run(capsys, "feed", "add", "support", "--show-titles")
    assert code == 0, err
    url = out.strip()
    register(url.rsplit("/", 1)[1].removesuffix(".ics"))
    assert url.startswith(f"{PUBLIC}/feeds/") and url.endswith(".ics")
    assert "keep it secret" in err and url not in err
    feed = api.get(url.removeprefix(PUBLIC))
    assert feed.status_code == 200
    (event,) = icalendar.Calendar.from_ical(feed.content).walk("VEVENT")
    assert str(event["SUMMARY"]) == "ada — away: Conference" and str(event["UID"]) == f"{made.json()['id']}@syncd"

    code, out, _ = run(capsys, "feed", "list", "support", "--json")
    assert code == 0
    (listed,) = json.loads(out)
    assert listed["show_titles"] is True and "url" not in listed
    code, out, _ = run(capsys, "feed", "list", "support")
    assert code == 0 and out.startswith(listed["id"]) and "titles shown" in out

    code, out, _ = run(capsys, "feed", "revoke", "support", listed["id"])
    assert code == 0 and "no longer works" in out
    assert api.get(url.removeprefix(PUBLIC)).status_code == 404
    code, out, _ = run(capsys, "feed", "list", "support")
    assert code == 0 and out == ""


def test_feed_command_errors_are_one_line(api: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "feed", "add", "ghosts")
    assert code == 2 and err == "syncd: no team 'ghosts'; create it with PUT /v1/teams/ghosts\n"
    api.put("/v1/teams/support", json={"members": ["ada"]}, headers=A)
    code, _, err = run(capsys, "feed", "revoke", "support", "nope")
    assert code == 2 and err.count("\n") == 1 and "has no feed 'nope'" in err


def test_feed_add_without_public_url_names_the_key(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_path.write_text(config_path.read_text().replace(f'public_url = "{PUBLIC}"\n', ""))
    code, _, err = run(capsys, "feed", "add", "support")
    assert code == 2 and err.count("\n") == 1 and "set api.public_url" in err
