"""Identity is bound: an email is one user's, an account acts only for its domains, and a
stored refresh token decrypts only for the user it was stored for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import update

from store.db import Database
from store.models import CredentialRow, UserRow
from syncd.api import create_app
from syncd.config import AccountConfig, ApiConfig, ApiToken, load_config
from syncd.core.errors import AuthError, ConfigError
from syncd.service import Syncd
from syncd.service.credentials import CredentialVault
from tests.conftest import Clock, make_config, user

ADMIN = {"Authorization": "Bearer admin-token-of-at-least-24-chars"}
TOKENS = (ApiToken("root", "admin-token-of-at-least-24-chars", ("admin",)),)


@pytest.fixture
def client(database: Database, clock: Clock) -> TestClient:
    accounts = {"mem": AccountConfig(name="mem", provider="memory"),
                "corp": AccountConfig(name="corp", provider="memory", domains=("example.com",))}
    config = dataclasses.replace(make_config([user("alice", "work")], accounts=accounts), api=ApiConfig(tokens=TOKENS))
    service = Syncd(config, database, clock=clock)
    service.prepare()
    return TestClient(create_app(service))


def put(client: TestClient, uid: str, email: str, *calendars: dict[str, str]) -> int:
    body = {"email": email, "timezone": "UTC", "calendars": list(calendars)}
    return client.put(f"/v1/users/{uid}", json=body, headers=ADMIN).status_code


def test_an_email_is_one_users_whatever_its_case(client: TestClient) -> None:
    answer = client.put("/v1/users/mallory", json={"email": "ALICE@example.com", "timezone": "UTC"}, headers=ADMIN)
    assert answer.status_code == 409 and answer.json()["error"] == "conflict"
    assert "alice" in answer.json()["message"]
    assert put(client, "mallory", "mallory@example.com") == 201
    assert put(client, "mallory", "Mallory@Example.com") == 200  # one's own email, in another case


def test_two_users_of_the_config_file_with_one_email_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text('[[users]]\nid = "a"\nemail = "ada@example.com"\ntimezone = "UTC"\n'
                    '[[users]]\nid = "b"\nemail = "Ada@Example.com"\ntimezone = "UTC"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (f"{path}: users[1].email: 'Ada@Example.com' is also the email of users[0]; an "
                                  "email belongs to one user")


def test_an_account_with_domains_acts_for_nobody_outside_them(client: TestClient, tmp_path: Path) -> None:
    outside = client.put("/v1/users/eve", json={"email": "eve@evil.example", "timezone": "UTC",
                                                "calendars": [{"account": "corp", "calendar": "eve"}]}, headers=ADMIN)
    assert outside.status_code == 422 and "domains" in outside.json()["message"]
    assert put(client, "bob", "bob@example.com", {"account": "corp", "calendar": "bob"}) == 201
    path = tmp_path / "syncd.toml"
    path.write_text('[[accounts]]\nname = "corp"\nprovider = "memory"\ndomains = ["example.com"]\n'
                    '[[users]]\nid = "eve"\nemail = "eve@evil.example"\ntimezone = "UTC"\n'
                    'calendars = [{ account = "corp", calendar = "eve" }]\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).startswith(f"{path}: users[0].calendars[0].account: eve@evil.example is outside "
                                         "accounts.corp.domains (example.com)")


def test_a_refresh_token_moved_to_another_user_does_not_decrypt_for_them(database: Database, clock: Clock) -> None:
    service = Syncd(make_config([user("alice"), user("mallory")]), database, clock=clock)
    service.prepare()
    vault = CredentialVault(database, {"gw": Fernet.generate_key().decode()}, clock)
    vault.store("gw", "alice", "alice-refresh-token")
    assert vault.refresh_token("gw", "alice@example.com") == "alice-refresh-token"
    with database.session() as session:  # somebody with write access to the database moves the row
        session.execute(update(CredentialRow).values(user_id="mallory"))
    with pytest.raises(AuthError, match="stored for another user"):
        vault.refresh_token("gw", "mallory@example.com")
    assert vault.refresh_token("gw", "alice@example.com") is None


def test_tokens_are_kept_by_user_id_not_by_email(database: Database, clock: Clock) -> None:
    service = Syncd(make_config([user("alice")]), database, clock=clock)
    service.prepare()
    vault = CredentialVault(database, {"gw": Fernet.generate_key().decode()}, clock)
    vault.store("gw", "alice", "alice-refresh-token")
    with database.session() as session:  # her email changes: her token stays hers
        session.execute(update(UserRow).values(email="alice.smith@example.com", email_key="alice.smith@example.com"))
    assert vault.refresh_token("gw", "alice.smith@example.com") == "alice-refresh-token"
    assert vault.refresh_token("gw", "alice@example.com") is None
