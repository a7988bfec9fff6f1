"""Per-user secrets: encrypted at rest, and re-encrypted when the key is rotated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from store.db import Database
from store.models import CredentialRow, UserRow
from syncd.core.errors import AuthError, ConfigError, NotFoundInStore, UserInputError
from syncd.service.credentials import CredentialVault, new_key

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOKEN = "1//refresh-token-of-alice"


@pytest.fixture
def database_with_alice(database: Database) -> Database:
    with database.session() as session:
        session.add(UserRow(id="alice", email="Alice@Example.com", timezone="UTC", working_hours={},
                            created_at=NOW))
    return database


def vault(db: Database, key: str) -> CredentialVault:
    return CredentialVault(db, {"work": key}, lambda: NOW)


def test_tokens_are_stored_encrypted(database_with_alice: Database) -> None:
    key = new_key()
    email = vault(database_with_alice, key).store("work", "alice", TOKEN + "\n")
    assert email == "alice@example.com"
    stored = database_with_alice.run(lambda s: s.scalars(select(CredentialRow.ciphertext)).one())
    assert TOKEN not in stored
    assert vault(database_with_alice, key).refresh_token("work", "ALICE@example.com") == TOKEN


def test_rotation_re_encrypts_with_the_new_key(database_with_alice: Database) -> None:
    old, new = new_key(), new_key()
    vault(database_with_alice, old).store("work", "alice", TOKEN)
    both = vault(database_with_alice, f"{new},{old}")
    assert both.refresh_token("work", "alice@example.com") == TOKEN  # the old key still reads it
    assert both.rotate() == 1
    assert vault(database_with_alice, new).refresh_token("work", "alice@example.com") == TOKEN
    with pytest.raises(AuthError, match="cannot be decrypted"):
        vault(database_with_alice, old).refresh_token("work", "alice@example.com")


def test_rotating_without_the_old_key_says_what_to_do(database_with_alice: Database) -> None:
    vault(database_with_alice, new_key()).store("work", "alice", TOKEN)
    with pytest.raises(ConfigError, match="add the old key after the new one"):
        vault(database_with_alice, new_key()).rotate()


def test_bad_input_is_refused_clearly(database_with_alice: Database) -> None:
    with pytest.raises(ConfigError, match="not a valid key"):
        vault(database_with_alice, "not-a-key").store("work", "alice", TOKEN)
    with pytest.raises(UserInputError, match="one word"):
        vault(database_with_alice, new_key()).store("work", "alice", "two words")
    with pytest.raises(NotFoundInStore, match="no user 'bob'"):
        vault(database_with_alice, new_key()).store("work", "bob", TOKEN)
    with pytest.raises(ConfigError, match="set token_key"):
        CredentialVault(database_with_alice, {}, lambda: NOW).store("work", "alice", TOKEN)
