"""The `syncd` command line, run in-process against a config file in a temporary folder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.cli import main

CONFIG = """
[daemon]
database_url = "sqlite:///state/syncd.db"

[[accounts]]
name = "folder"
provider = "local"
root = "calendars"

[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"
calendars = [{ account = "folder", calendar = "alice" }, { account = "folder", calendar = "alice-home" }]

[[users]]
id = "bob"
email = "bob@example.com"
timezone = "America/New_York"

[[sinks]]
type = "stdout"
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "syncd.toml").write_text(CONFIG)
    for cal in ("alice", "alice-home"):
        (tmp_path / "calendars" / cal).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNCD_CONFIG", raising=False)
    return tmp_path


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_config_ok_and_bad(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check-config")
    assert code == 0 and "ok (2 users, 1 accounts, 2 calendar links, 1 sinks)" in out
    (workdir / "syncd.toml").write_text(CONFIG.replace("Europe/Stockholm", "Europe/Stokholm"))
    code, out, err = run(capsys, "check-config")
    assert code == 2
    assert err.strip() == "syncd: syncd.toml: users[0].timezone: unknown time zone 'Europe/Stokholm'"
    assert "Traceback" not in err


def test_config_lookup_order(workdir: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    other = workdir / "other.toml"
    other.write_text(CONFIG.replace('id = "bob"', 'id = "carol"').replace("bob@", "carol@"))
    monkeypatch.setenv("SYNCD_CONFIG", str(other))
    assert run(capsys, "status", "--json")[0] == 0  # $SYNCD_CONFIG wins over ./syncd.toml
    code, out, _ = run(capsys, "status", "carol", "--json")
    assert code == 0 and json.loads(out)[0]["user"] == "carol"
    code, _, err = run(capsys, "-c", "missing.toml", "status")
    assert code == 2 and "missing.toml" in err


def test_ooo_add_list_status_and_end(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    code, out, _ = run(capsys, "ooo", "add", "alice", "--start", iso(now - timedelta(hours=1)),
                       "--end", iso(now + timedelta(hours=2)), "--title", "Dentist")
    assert code == 0
    block_id = out.strip()
    assert len(block_id) == 32
    # The change waits in the outbox; the next pass delivers it through the stdout sink.
    code, out, _ = run(capsys, "sync", "--once")
    events = [json.loads(line) for line in out.strip().splitlines() if line.startswith("{")]
    assert [(e["status"], e["reason"], e["block"]["id"]) for e in events] == [("away", "ooo_started", block_id)]
    assert "1 event(s) delivered" in out

    code, out, _ = run(capsys, "ooo", "list", "alice", "--json")
    blocks = json.loads(out)
    assert [b["id"] for b in blocks] == [block_id]
    assert set(blocks[0]) == {"id", "start", "end", "all_day", "title", "source", "replacement"}
    assert blocks[0]["start"].endswith("Z") and blocks[0]["title"] == "Dentist"

    code, out, _ = run(capsys, "status", "alice", "--json")
    [row] = json.loads(out)
    assert row["status"] == "away" and row["reason"] == "ooo_started" and row["blocks"] == [block_id]
    assert set(row) == {"user", "status", "reason", "since", "until", "blocks"}
    assert row["until"] == blocks[0]["end"]

    code, out, _ = run(capsys, "ooo", "end", block_id)
    assert code == 0 and f"ended {block_id}" in out
    code, out, _ = run(capsys, "status", "alice", "--json")
    assert json.loads(out)[0]["status"] == "available"
    assert json.loads(out)[0]["reason"] == "ooo_ended_early"


def test_set_available_while_ooo_needs_confirmation(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = datetime.now(UTC)
    _, out, _ = run(capsys, "ooo", "add", "alice", "--start", iso(now - timedelta(hours=1)),
                    "--end", iso(now + timedelta(days=1)))
    block_id = out.strip().splitlines()[-1]
    code, out, err = run(capsys, "set-status", "alice", "available")
    assert code == 3
    assert block_id in err and "--end-ooo-early" in err and len(err.strip().splitlines()) == 1
    assert json.loads(run(capsys, "status", "alice", "--json")[1])[0]["status"] == "away"
    assert [b["id"] for b in json.loads(run(capsys, "ooo", "list", "alice", "--json")[1])] == [block_id]

    code, out, _ = run(capsys, "set-status", "alice", "available", "--end-ooo-early")
    assert code == 0 and "available" in out and "ooo_ended_early" in out
    [block] = json.loads(run(capsys, "ooo", "list", "alice", "--json")[1])
    assert datetime.fromisoformat(block["end"]) <= datetime.now(UTC)


def test_manual_away_and_back(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "set-status", "bob", "away")
    assert code == 0 and "manual" in out
    assert json.loads(run(capsys, "status", "bob", "--json")[1])[0]["status"] == "away"
    code, out, _ = run(capsys, "set-status", "bob", "available")
    assert code == 0
    assert json.loads(run(capsys, "status", "bob", "--json")[1])[0]["status"] == "available"


def test_all_day_block_in_users_zone(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ooo", "add", "alice", "--date", "2030-03-29", "--to-date", "2030-04-01")
    assert code == 0
    [block] = json.loads(run(capsys, "ooo", "list", "alice", "--json")[1])
    # Stockholm: CET (+1) before 2030-03-31, CEST (+2) after.
    assert block["all_day"] is True
    assert block["start"] == "2030-03-28T23:00:00Z" and block["end"] == "2030-04-01T22:00:00Z"


def test_status_at_future_instant(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "ooo", "add", "bob", "--start", "2030-01-01T10:00:00Z", "--end", "2030-01-02T10:00:00Z")
    [row] = json.loads(run(capsys, "status", "bob", "--at", "2030-01-01T12:00:00+00:00", "--json")[1])
    assert row["status"] == "away" and row["until"] == "2030-01-02T10:00:00Z"
    [row] = json.loads(run(capsys, "status", "bob", "--at", "2030-01-03T00:00:00Z", "--json")[1])
    assert row["status"] == "available" and row["until"] is None


@pytest.mark.parametrize("argv, message", [
    (["ooo", "add", "alice", "--start", "2030-01-01T10:00:00", "--end", "2030-01-01T12:00:00Z"],
     "has no UTC offset"),
    (["ooo", "add", "alice", "--start", "soon", "--end", "2030-01-01T12:00:00Z"], "is not an ISO 8601 time"),
    (["ooo", "add", "alice", "--start", "2030-01-02T10:00:00Z", "--end", "2030-01-01T12:00:00Z"], "before"),
    (["ooo", "add", "alice", "--date", "30/12/2030"], "is not a date"),
    (["ooo", "add", "nobody", "--date", "2030-12-30"], "no user 'nobody'"),
    (["ooo", "delete", "deadbeef"], "no OOO block 'deadbeef'"),
    (["status", "--at", "2030-01-01T10:00:00"], "has no UTC offset"),
])
def test_bad_input_is_one_line(workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                               message: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_sync_once_two_way_and_failures(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    (workdir / "calendars" / "alice" / "trip.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:trip\r\n"
        f"DTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{start + timedelta(days=1):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Trip\r\n"
        "X-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    code, out, err = run(capsys, "sync", "--once")
    assert code == 0, err
    assert "synced 2/2 links" in out
    [block] = json.loads(run(capsys, "ooo", "list", "alice", "--json")[1])
    assert block["title"] == "Trip" and block["source"] == "calendar:folder/alice"
    mirrored = list((workdir / "calendars" / "alice-home").glob("*.ics"))
    assert len(mirrored) == 1 and "X-SYNCD-BLOCK-ID:" + block["id"] in mirrored[0].read_text()

    # A calendar folder that disappears fails that link alone, with one line, exit 1.
    (workdir / "calendars" / "alice-home" / mirrored[0].name).unlink()
    (workdir / "calendars" / "alice-home").rmdir()
    code, out, err = run(capsys, "sync", "--once")
    assert code == 1
    assert "alice/folder/alice-home:" in err and "does not exist" in err
    assert "synced 1/2 links" in out


def test_status_reports_links_that_need_attention(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "calendars" / "alice-home").rmdir()
    assert run(capsys, "sync", "--once")[0] == 1
    code, out, err = run(capsys, "status")
    assert code == 0 and "alice" in out and "bob" in out
    [line] = err.strip().splitlines()
    assert line.startswith("link 2 alice/folder/alice-home: error: ") and "does not exist" in line


def test_status_links_shows_each_links_sync_state(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "calendars" / "alice-home").rmdir()
    assert run(capsys, "sync", "--once")[0] == 1
    code, out, _err = run(capsys, "status", "--links", "alice")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("alice/folder/" in line for line in lines)
    [broken] = [line for line in lines if "alice-home" in line]
    assert "error: " in broken and "does not exist" in broken
    [working] = [line for line in lines if "alice-home" not in line]
    assert "last success 20" in working and "lag " in working
    def without_lag(out: str) -> list[dict[str, object]]:
        return [{k: v for k, v in row.items() if k != "lag_s"} for row in json.loads(out)]
    rows = json.loads(run(capsys, "status", "--links", "--json")[1])
    assert set(rows[0]) >= {"owner", "last_success", "lag_s", "last_error", "state"}
    # every link, as `syncd links` has them
    assert without_lag(run(capsys, "status", "--links", "--json")[1]) == without_lag(run(capsys, "links", "--json")[1])
    code, _out, err = run(capsys, "status", "--links", "nobody")
    assert code != 0 and "no user 'nobody'" in err
