"""Replacements: whom users and their OOO blocks name to take their work, and who names whom."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import BlockRow, UserRow
from syncd.core.route import BlockReplacement, replacement_at

__all__ = ["anyone_named", "at_instant", "emails_of", "forget", "naming"]


def anyone_named(session: Session) -> bool:
    """Whether any user or live block names a replacement at all (most deployments at first: none)."""
    by_user = select(UserRow.id).where(UserRow.replacement.is_not(None)).limit(1)
    by_block = select(BlockRow.id).where(BlockRow.replacement.is_not(None), BlockRow.deleted_at.is_(None)).limit(1)
    return session.scalars(by_user).first() is not None or session.scalars(by_block).first() is not None


def at_instant(session: Session, user_ids: Collection[str], at: datetime) -> dict[str, str | None]:
    """Each known user's replacement at ``at``: a covering block's, else their default."""
    ids = list(user_ids)
    if not ids:
        return {}
    defaults = {r.id: r.replacement for r in session.execute(select(UserRow.id, UserRow.replacement)
                                                              .where(UserRow.id.in_(ids)))}
    named: dict[str, list[BlockReplacement]] = defaultdict(list)
    for b in session.execute(select(BlockRow.id, BlockRow.user_id, BlockRow.start, BlockRow.end, BlockRow.replacement)
                             .where(BlockRow.user_id.in_(ids), BlockRow.deleted_at.is_(None),
                                    BlockRow.replacement.is_not(None), BlockRow.start <= at, BlockRow.end > at)):
        named[b.user_id].append(BlockReplacement(b.id, b.start, b.end, b.replacement))
    return {u: replacement_at(default, named.get(u, ()), at) for u, default in defaults.items()}


def naming(session: Session, user_ids: Collection[str], since: datetime, until: datetime) -> set[str]:
    """Users who may name one of ``user_ids`` at some instant of ``[since, until]``: by default,
    or by a block covering one (a superset: a block naming someone else may hide the default)."""
    ids = list(user_ids)
    if not ids:
        return set()
    by_default = session.scalars(select(UserRow.id).where(UserRow.replacement.in_(ids)))
    by_block = session.scalars(select(BlockRow.user_id).where(
        BlockRow.replacement.in_(ids), BlockRow.deleted_at.is_(None), BlockRow.start <= until, BlockRow.end > since))
    return set(by_default) | set(by_block)


def emails_of(session: Session, user_ids: Collection[str]) -> dict[str, str]:
    ids = list(user_ids)
    if not ids:
        return {}
    return {r.id: r.email for r in session.execute(select(UserRow.id, UserRow.email).where(UserRow.id.in_(ids)))}


def forget(session: Session, user_id: str) -> None:
    """A user is deleted: nobody names them any more (users' defaults and blocks)."""
    session.execute(update(UserRow).where(UserRow.replacement == user_id).values(replacement=None))
    session.execute(update(BlockRow).where(BlockRow.replacement == user_id).values(replacement=None))
