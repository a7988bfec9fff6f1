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
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.db import Database
from store.models import CalendarLinkRow, CredentialRow, UserRow
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
        row = self.db.read(lambda s: s.get(CredentialRow, (account, subject.lower())), what="reading credentials")
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

        def work(session: Session) -> None:
            row = session.get(CredentialRow, (account, subject.lower()))
            if row is not None:
                row.ciphertext, row.updated_at = ciphertext, self.clock()
        self.db.run(work, what="storing a rotated refresh token")

    def store(self, account: str, user: str, token: str) -> str:
        """Encrypt and keep ``token`` for ``user`` (an id or email); their links are polled soon."""
        token = token.strip()
        if not token or any(c.isspace() for c in token):
            raise UserInputError("a refresh token is one word with no spaces; paste it on standard input")
        ciphertext = self._cipher(account).encrypt(token.encode()).decode()

        def work(session: Session) -> str:
            email = _email_of(session, user)
            now = self.clock()
            row = session.get(CredentialRow, (account, email))
            if row is None:
                session.add(CredentialRow(account=account, subject=email, ciphertext=ciphertext, updated_at=now))
            else:
                row.ciphertext, row.updated_at = ciphertext, now
            _poll_soon(session, account, email, now)
            return email
        return self.db.run(work, what="storing credentials")

    def remove(self, account: str, user: str) -> bool:
        def work(session: Session) -> bool:
            email = _email_of(session, user)
            done = session.execute(delete(CredentialRow).where(CredentialRow.account == account,
                                                               CredentialRow.subject == email))
            return bool(getattr(done, "rowcount", 0))
        return self.db.run(work, what="removing credentials")

    def rotate(self) -> int:
        """Re-encrypt every stored token with its account's first key; how many were."""
        def work(session: Session) -> int:
            count = 0
            for row in session.scalars(select(CredentialRow)):
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
        def work(session: Session) -> list[tuple[str, str, datetime]]:
            query = select(CredentialRow.account, CredentialRow.subject, CredentialRow.updated_at)
            if account is not None:
                query = query.where(CredentialRow.account == account)
            return [(a, s, t) for a, s, t in session.execute(query.order_by(CredentialRow.account,
                                                                            CredentialRow.subject))]
        return self.db.read(work)


def _email_of(session: Session, user: str) -> str:
    row = session.get(UserRow, user)
    if row is None:
        row = session.scalars(select(UserRow).where(UserRow.email == user)).first()
    if row is None:
        raise NotFoundInStore(f"no user {user!r} (give a user id or email from the config file)")
    return row.email.lower()


def _poll_soon(session: Session, account: str, email: str, now: datetime) -> None:
    """A user waiting for new credentials should not wait for the hour-long reauth backoff."""
    users = select(UserRow.id).where(UserRow.email == email)
    session.execute(update(CalendarLinkRow).where(CalendarLinkRow.account == account,
                                                  CalendarLinkRow.user_id.in_(users))
                    .values(next_poll_at=now))
