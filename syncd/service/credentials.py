"""Per-user secrets (OAuth refresh tokens) kept encrypted in the store.

Each account that uses refresh tokens has a key (``token_key`` / ``token_key_env`` in its
config table): a Fernet key, i.e. 32 random bytes in URL-safe base64, as printed by
``syncd credentials new-key``. Only ciphertext reaches the database; a token is decrypted
when the connector needs it and never logged.

Rotation: put the new key first and the old ones after it, comma-separated
(``token_key = "NEW,OLD"``); tokens encrypted with any of them still decrypt, new ones use the
first, and ``syncd secrets rotate`` re-encrypts every stored token with the first key, after
which the old keys can be dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from store import credentials, links, users
from store.db import Database, Transaction
from syncd.core.errors import AuthError, ConfigError, NotFoundInStore, UserInputError

__all__ = ["CredentialVault", "new_key"]


def new_key() -> str:
    return Fernet.generate_key().decode()


def _fernet(account: str, keys: str) -> MultiFernet:
    """The account's keys: the first encrypts, all of them decrypt (during a rotation)."""
    parts = [k.strip() for k in keys.split(",") if k.strip()]
    try:
        return MultiFernet([Fernet(k.encode()) for k in parts])
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"accounts.{account}: token_key is not a valid key (32 bytes, URL-safe base64; "
                          "several separated by commas while rotating); make one with "
                          "`syncd credentials new-key`") from exc


class CredentialVault:
    """Stores and hands out refresh tokens; the connectors' `RefreshTokens`."""

    def __init__(self, db: Database, keys: Mapping[str, str], clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._keys = dict(keys)  # account -> key text
        self._fernets: dict[str, MultiFernet] = {}
        self._lock = threading.Lock()

    def _cipher(self, account: str) -> MultiFernet:
        with self._lock:
            cipher = self._fernets.get(account)
            if cipher is None:
                key = self._keys.get(account)
                if not key:
                    raise ConfigError(f"accounts.{account}: set token_key (or token_key_env) to keep refresh "
                                      "tokens encrypted; make one with `syncd credentials new-key`")
                cipher = self._fernets[account] = _fernet(account, key)
            return cipher

    def refresh_token(self, account: str, subject: str) -> str | None:
        row = self.db.read(lambda s: credentials.get(s, account, subject.lower()), what="reading credentials")
        if row is None:
            return None
        try:
            return self._cipher(account).decrypt(row.ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise AuthError(f"the stored refresh token of {subject} cannot be decrypted with accounts.{account}'s "
                            "token_key (the key changed?); store the token again with `syncd credentials set`") from exc

    def replace_refresh_token(self, account: str, subject: str, token: str) -> None:
        """Keep the token a provider issued in place of the one just used (Entra ID rotates them)."""
        ciphertext = self._cipher(account).encrypt(token.encode()).decode()

        def work(session: Transaction) -> None:
            row = credentials.get(session, account, subject.lower())
            if row is not None:
                row.ciphertext, row.updated_at = ciphertext, self.clock()
        self.db.run(work, what="storing a rotated refresh token")

    def store(self, account: str, user: str, token: str) -> str:
        """Encrypt and keep ``token`` for ``user`` (an id or email); their links are polled soon."""
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise UserInputError("a refresh token is one word with no spaces; paste it on standard input")
        ciphertext = self._cipher(account).encrypt(token.encode()).decode()

        def work(session: Transaction) -> str:
            email = _email_of(session, user)
            now = self.clock()
            credentials.put(session, account, email, ciphertext, now)
            # A user waiting for new credentials should not wait for the hour-long reauth backoff.
            links.due_soon(session, account, users.ids_with_email(session, email), now)
            return email
        return self.db.run(work, what="storing credentials")

    def remove(self, account: str, user: str) -> bool:
        def work(session: Transaction) -> bool:
            return credentials.remove(session, account, _email_of(session, user))
        return self.db.run(work, what="removing credentials")

    def rotate(self) -> int:
        """Re-encrypt every stored token with its account's first key; how many were."""
        def work(session: Transaction) -> int:
            count = 0
            for row in credentials.all_rows(session):
                try:
                    row.ciphertext = self._cipher(row.account).rotate(row.ciphertext.encode()).decode()
                except InvalidToken as exc:
                    raise ConfigError(f"the stored token of {row.subject} ({row.account}) decrypts with none of "
                                      f"accounts.{row.account}'s token keys; add the old key after the new one "
                                      "and run `syncd secrets rotate` again") from exc
                row.updated_at = self.clock()
                count += 1
            return count
        return self.db.run(work, what="re-encrypting credentials")

    def subjects(self, account: str | None = None) -> list[tuple[str, str, datetime]]:
        """(account, email, stored at) of every stored token; never the token itself."""
        return self.db.read(lambda s: credentials.listing(s, account))


def _email_of(session: Transaction, user: str) -> str:
    row = users.by_id_or_email(session, user)
    if row is None:
        raise NotFoundInStore(f"no user {user!r} (give a user id or email from the config file)")
    return row.email.lower()
