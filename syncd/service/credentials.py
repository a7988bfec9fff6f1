"""Per-user secrets (OAuth refresh tokens) kept encrypted in the store.

Each account that uses refresh tokens has a key (``token_key`` / ``token_key_env`` in its
config table): a Fernet key, i.e. 32 random bytes in URL-safe base64, as printed by
``syncd credentials new-key``. Only ciphertext reaches the database, kept by account and
user id; the plaintext names the user it was stored for, so a row moved to another user
does not decrypt for them. A token is decrypted when the connector needs it and never logged.

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
from store.models import UserRow
from syncd.core.errors import AuthError, ConfigError, NotFoundInStore, UserInputError

__all__ = ["CredentialVault", "new_key"]

_BOUND = "syncd-user:"  # the plaintext is "<_BOUND><user id>\n<token>": the token names its user


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
        """The token stored for the user with this email, if any. The ciphertext names the
        user it was stored for: a row moved to another user does not decrypt for them."""
        def read(session: Transaction) -> tuple[str, str] | None:
            user = users.by_email(session, subject)
            row = credentials.get(session, account, user.id) if user is not None else None
            return None if user is None or row is None else (user.id, row.ciphertext)
        found = self.db.read(read, what="reading credentials")
        if found is None:
            return None
        user_id, ciphertext = found
        try:
            plain = self._cipher(account).decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise AuthError(f"the stored refresh token of {subject} cannot be decrypted with accounts.{account}'s "
                            "token_key (the key changed?); store the token again with `syncd credentials set`") from exc
        owner, token = _unbind(plain)
        if owner is None:  # stored before tokens named their user: bind it now
            self.replace_refresh_token(account, subject, token)
        elif owner != user_id:
            raise AuthError(f"the refresh token stored for {subject} (accounts.{account}) was stored for another "
                            "user; store this user's own token with `syncd credentials set`")
        return token

    def replace_refresh_token(self, account: str, subject: str, token: str) -> None:
        """Keep the token a provider issued in place of the one just used (Entra ID rotates them)."""
        def work(session: Transaction) -> None:
            user = users.by_email(session, subject)
            row = credentials.get(session, account, user.id) if user is not None else None
            if user is not None and row is not None:
                row.ciphertext, row.updated_at = self._seal(account, user.id, token), self.clock()
        self.db.run(work, what="storing a rotated refresh token")

    def store(self, account: str, user: str, token: str) -> str:
        """Encrypt and keep ``token`` for ``user`` (an id or email); their links are polled soon."""
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise UserInputError("a refresh token is one word with no spaces; paste it on standard input")

        def work(session: Transaction) -> str:
            row = _user(session, user)
            now = self.clock()
            credentials.put(session, account, row.id, self._seal(account, row.id, token), now)
            # A user waiting for new credentials should not wait for the hour-long reauth backoff.
            links.due_soon(session, account, [row.id], now)
            return row.email.lower()
        return self.db.run(work, what="storing credentials")

    def remove(self, account: str, user: str) -> bool:
        return self.db.run(lambda s: credentials.remove(s, account, _user(s, user).id), what="removing credentials")

    def rotate(self) -> int:
        """Re-encrypt every stored token with its account's first key; how many were."""
        def work(session: Transaction) -> int:
            count = 0
            for row in credentials.all_rows(session):
                try:
                    row.ciphertext = self._cipher(row.account).rotate(row.ciphertext.encode()).decode()
                except InvalidToken as exc:
                    raise ConfigError(f"the stored token of user {row.user_id} ({row.account}) decrypts with none "
                                      f"of accounts.{row.account}'s token keys; add the old key after the new one "
                                      "and run `syncd secrets rotate` again") from exc
                row.updated_at = self.clock()
                count += 1
            return count
        return self.db.run(work, what="re-encrypting credentials")

    def _seal(self, account: str, user_id: str, token: str) -> str:
        return self._cipher(account).encrypt(f"{_BOUND}{user_id}\n{token}".encode()).decode()

    def subjects(self, account: str | None = None) -> list[tuple[str, str, datetime]]:
        """(account, email, stored at) of every stored token; never the token itself."""
        return self.db.read(lambda s: credentials.listing(s, account))


def _user(session: Transaction, user: str) -> UserRow:
    row = users.by_id_or_email(session, user)
    if row is None:
        raise NotFoundInStore(f"no user {user!r} (give a user id or email from the config file)")
    return row


def _unbind(plain: str) -> tuple[str | None, str]:
    """(the user the token was stored for, the token); no user for a token stored before
    tokens named theirs."""
    if not plain.startswith(_BOUND):
        return None, plain
    owner, _, token = plain[len(_BOUND):].partition("\n")
    return owner, token
