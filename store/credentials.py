"""Per-user secrets (OAuth refresh tokens), stored only as ciphertext, keyed by account and email."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.models import CredentialRow

__all__ = ["all_rows", "get", "listing", "put", "remove"]


def get(session: Session, account: str, subject: str) -> CredentialRow | None:
    return session.get(CredentialRow, (account, subject))


def put(session: Session, account: str, subject: str, ciphertext: str, now: datetime) -> None:
    row = session.get(CredentialRow, (account, subject))
    if row is None:
        session.add(CredentialRow(account=account, subject=subject, ciphertext=ciphertext, updated_at=now))
    else:
        row.ciphertext, row.updated_at = ciphertext, now


def remove(session: Session, account: str, subject: str) -> bool:
    done = session.execute(delete(CredentialRow).where(CredentialRow.account == account,
                                                       CredentialRow.subject == subject))
    return bool(getattr(done, "rowcount", 0))


def all_rows(session: Session) -> list[CredentialRow]:
    return list(session.scalars(select(CredentialRow)))


def listing(session: Session, account: str | None = None) -> list[tuple[str, str, datetime]]:
    """(account, subject, stored at) of every stored secret; never the secret."""
    query = select(CredentialRow.account, CredentialRow.subject, CredentialRow.updated_at)
    if account is not None:
        query = query.where(CredentialRow.account == account)
    return [(a, s, t) for a, s, t in session.execute(query.order_by(CredentialRow.account, CredentialRow.subject))]
