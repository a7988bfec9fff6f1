"""Per-user secrets (OAuth refresh tokens), stored only as ciphertext, by account and user id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.models import CredentialRow, UserRow

__all__ = ["all_rows", "get", "listing", "put", "remove"]


def get(session: Session, account: str, user_id: str) -> CredentialRow | None:
    return session.get(CredentialRow, (account, user_id))


def put(session: Session, account: str, user_id: str, ciphertext: str, now: datetime) -> None:
    row = session.get(CredentialRow, (account, user_id))
    if row is None:
        session.add(CredentialRow(account=account, user_id=user_id, ciphertext=ciphertext, updated_at=now))
    else:
        row.ciphertext, row.updated_at = ciphertext, now


def remove(session: Session, account: str, user_id: str) -> bool:
    done = session.execute(delete(CredentialRow).where(CredentialRow.account == account,
                                                       CredentialRow.user_id == user_id))
    return bool(getattr(done, "rowcount", 0))


def all_rows(session: Session) -> list[CredentialRow]:
    return list(session.scalars(select(CredentialRow)))


def listing(session: Session, account: str | None = None) -> list[tuple[str, str, datetime]]:
    """(account, the user's email, stored at) of every stored secret; never the secret."""
    query = select(CredentialRow.account, UserRow.email, CredentialRow.updated_at).join(
        UserRow, UserRow.id == CredentialRow.user_id)
    if account is not None:
        query = query.where(CredentialRow.account == account)
    return [(a, e.lower(), t) for a, e, t in session.execute(query.order_by(CredentialRow.account, UserRow.email))]
