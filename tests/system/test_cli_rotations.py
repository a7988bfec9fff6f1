"""`syncd rotation list/show/member/cap-window` against a config file's database (SQLite and
PostgreSQL), with the rotation made and assigned from over the HTTP API."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.system.test_cli_feeds import A, api, config_path, run  # noqa: F401 - fixtures


def test_rotation_commands_end_to_end(api: TestClient, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    made = api.post("/v1/rotations", json={"name": "Chat queue", "members": ["ada", "bo"]}, headers=A)
    assert made.status_code == 201, made.text
    rid = made.json()["id"]

    code, out, _ = run(capsys, "rotation", "list")
    assert code == 0 and out.startswith(f"{rid}  Chat queue  reset  2 member(s)  next ")
    code, out, err = run(capsys, "rotation", "member", rid, "bo", "--cap", "1")
    assert code == 2 and "has none; give one" in err and err.count("\n") == 1
    code, out, _ = run(capsys, "rotation", "cap-window", rid, "8h")
    assert code == 0 and out.startswith("Chat queue (reset, caps per 8h)")
    code, out, _ = run(capsys, "rotation", "member", rid, "bo", "--weight", "2", "--cap", "1")
    assert code == 0
    assert [line.split()[:7] for line in out.splitlines()[1:]] == [
        ["ada", "0", "assignments", "weight", "1", "no", "cap"],
        ["bo", "0", "assignments", "weight", "2", "cap", "1"]]

    for key in ("t1", "t2", "t3"):
        assert api.post(f"/v1/rotations/{rid}/assign", json={"idempotency_key": key}, headers=A).status_code == 200
    code, out, _ = run(capsys, "rotation", "show", rid, "--json")
    shown = {m["user"]: m for m in json.loads(out)["members"]}
    assert code == 0 and shown["bo"]["assignments"] == 1 and shown["ada"]["assignments"] == 2
    assert shown["bo"]["reason"] == "capacity" and shown["bo"]["available_at"]
    code, out, _ = run(capsys, "rotation", "show", rid)
    assert code == 0 and f"capacity until {shown['bo']['available_at']}" in out and "next: ada" in out

    code, out, _ = run(capsys, "rotation", "member", rid, "bo", "--no-cap", "--unavailable")
    assert code == 0 and "toggled_off" in out
    code, out, _ = run(capsys, "rotation", "cap-window", rid, "none")
    assert code == 0 and out.startswith("Chat queue (reset); next: ada")


@pytest.mark.parametrize(("argv", "needle"), [
    (["rotation", "show", "nope"], "no rotation 'nope'"),
    (["rotation", "cap-window", "{rid}", "soon"], "cap window: bad duration 'soon'"),
    (["rotation", "cap-window", "{rid}", "100d"], "cap_window must be from 1m to 90d"),
    (["rotation", "member", "{rid}", "ada", "--weight", "0"], "weight must be a number above 0"),
    (["rotation", "member", "{rid}", "ada", "--weight", "nan"], "weight must be a number above 0"),
    (["rotation", "member", "{rid}", "ada"], "give --weight, --cap"),
    (["rotation", "member", "{rid}", "cy", "--weight", "2"], "cy is not a member"),
])
def test_rotation_command_errors_are_one_line(api: TestClient, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                              argv: list[str], needle: str) -> None:
    rid = api.post("/v1/rotations", json={"name": "x", "members": ["ada"]}, headers=A).json()["id"]
    code, _, err = run(capsys, *[a.format(rid=rid) for a in argv])
    assert code == 2 and err.startswith("syncd: ") and err.count("\n") == 1 and needle in err, err
