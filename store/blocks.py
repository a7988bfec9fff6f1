"""OOO blocks, and the events they are mirrored as in each calendar (the event links).

A block row holds an `OooContent` (`content_of` / `content_columns` are the one mapping
between the two). Deleted blocks stay as tombstones until their deletion has reached every
calendar. An event link pairs a block with an event of one calendar link and keeps the
fingerprint both had when last in step: the base of the three-way merge.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from store.models import BlockRow, EventLinkRow
from syncd.core import reconcile as rc
from syncd.core.availability import Period
from syncd.core.ooo import OooContent

__all__ = [
    "add", "by_id", "confirm_writes", "content_columns", "content_of", "end_now", "from_calendar",
    "insert_from_calendar", "link_event", "linked_in_window", "live", "live_between", "live_periods",
    "live_periods_of", "live_rows",
    "mark_deleted", "pairs", "pairs_of_links", "period", "purge_tombstones", "revise", "set_content",
    "unconfirmed_writes", "unlink_block", "unlink_event", "views_of", "views_of_users",
]

_PAIRS = cast(Table, EventLinkRow.__table__)
_VIEW_COLUMNS = (BlockRow.id, BlockRow.user_id, BlockRow.start, BlockRow.end, BlockRow.all_day, BlockRow.start_date,
                 BlockRow.end_date, BlockRow.timezone, BlockRow.title, BlockRow.updated_at, BlockRow.deleted_at)


# -- the mapping -----------------------------------------------------------------------------------


def content_of(row: Any) -> OooContent:
    """A block row's (or a row of its columns') content."""
    return OooContent(start=row.start, end=row.end, all_day=row.all_day, start_date=row.start_date,
                      end_date=row.end_date, timezone=row.timezone, title=row.title)


def content_columns(content: OooContent) -> dict[str, Any]:
    """A block's columns that hold its content."""
    return {"start": content.start, "end": content.end, "all_day": content.all_day,
            "start_date": content.start_date, "end_date": content.end_date, "timezone": content.timezone,
            "title": content.title}


def set_content(row: BlockRow, content: OooContent) -> None:
    for column, value in content_columns(content).items():
        setattr(row, column, value)


def _view(row: Any) -> rc.BlockView:
    return rc.BlockView(row.id, content_of(row), row.updated_at, row.deleted_at is not None)


# -- blocks ----------------------------------------------------------------------------------------


def by_id(session: Session, block_id: str) -> BlockRow | None:
    """The block, live or a tombstone."""
    return session.get(BlockRow, block_id)


def live(session: Session, block_id: str) -> BlockRow | None:
    row = session.get(BlockRow, block_id)
    return None if row is None or row.deleted_at is not None else row


def live_rows(session: Session, user_id: str) -> list[BlockRow]:
    """The user's live blocks, in order of start."""
    return list(session.scalars(select(BlockRow).where(BlockRow.user_id == user_id, BlockRow.deleted_at.is_(None))
                                .order_by(BlockRow.start, BlockRow.id)))


def live_periods(session: Session, user_id: str) -> list[Period]:
    """The periods of the user's live blocks: four columns, not ORM objects (a user with a
    long import has thousands, and every edit evaluates them)."""
    rows = session.execute(select(BlockRow.id, BlockRow.start, BlockRow.end, BlockRow.title)
                           .where(BlockRow.user_id == user_id, BlockRow.deleted_at.is_(None)))
    return [Period(block_id, start, end, title) for block_id, start, end, title in rows]


_LIVE_PERIODS = select(BlockRow.id, BlockRow.user_id, BlockRow.start, BlockRow.end, BlockRow.title).where(
    BlockRow.user_id.in_(bindparam("ids", expanding=True)), BlockRow.deleted_at.is_(None))


def live_periods_of(session: Session, user_ids: Sequence[str]) -> dict[str, list[Period]]:
    """The periods of many users' live blocks, in one query."""
    periods: dict[str, list[Period]] = {u: [] for u in user_ids}
    session.flush()  # then the connection's plain rows, as in `status.users_with_state`
    for b in session.connection().execute(_LIVE_PERIODS, {"ids": list(user_ids)}):
        periods[b.user_id].append(Period(b.id, b.start, b.end, b.title))
    return periods


def period(session: Session, block_id: str) -> Period | None:
    row = session.get(BlockRow, block_id)
    return None if row is None else Period(row.id, row.start, row.end, row.title)


def add(session: Session, user_id: str, content: OooContent, source: str, now: datetime, *,
        replacement: str | None = None) -> BlockRow:
    row = BlockRow(id=uuid.uuid4().hex, user_id=user_id, source=source, revision=1, created_at=now, updated_at=now,
                   replacement=replacement)
    set_content(row, content)
    session.add(row)
    session.flush()
    return row


def revise(row: BlockRow, content: OooContent, now: datetime, *, undelete: bool = False) -> None:
    set_content(row, content)
    row.revision += 1
    row.updated_at = now
    if undelete:
        row.deleted_at = None


def mark_deleted(row: BlockRow, now: datetime) -> None:
    row.deleted_at, row.updated_at, row.revision = now, now, row.revision + 1


def end_now(rows: Iterable[BlockRow], now: datetime) -> None:
    """Every block of ``rows`` ends now; one that began this very instant is gone altogether."""
    for row in rows:
        if row.start >= now:
            row.deleted_at = now
        else:
            set_content(row, content_of(row).with_end(now))
        row.revision += 1
        row.updated_at = now


def purge_tombstones(session: Session, cutoff: datetime) -> int:
    """Drop blocks deleted before ``cutoff`` whose deletion has reached every calendar."""
    rows = list(session.scalars(select(BlockRow).where(BlockRow.deleted_at.is_not(None), BlockRow.deleted_at < cutoff,
                                                       BlockRow.id.not_in(select(EventLinkRow.block_id)))))
    for row in rows:
        session.delete(row)
    return len(rows)


# -- the sync engine's view ------------------------------------------------------------------------


def views_of(session: Session, user_id: str) -> dict[str, rc.BlockView]:
    """Every block of the user, tombstones too, as the reconcile plan sees them (columns, not
    ORM objects: a calendar with thousands of events loads them every pass)."""
    return {r.id: _view(r) for r in session.execute(select(*_VIEW_COLUMNS).where(BlockRow.user_id == user_id))}


def views_of_users(session: Session, user_ids: Iterable[str]) -> dict[str, dict[str, rc.BlockView]]:
    found: dict[str, dict[str, rc.BlockView]] = {}
    for r in session.execute(select(*_VIEW_COLUMNS).where(BlockRow.user_id.in_(list(user_ids)))):
        found.setdefault(r.user_id, {})[r.id] = _view(r)
    return found


def from_calendar(user_id: str, link_id: int, source: str, content: OooContent, event_id: str, etag: str,
                  now: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rows of a block made from a calendar's event, and of its event link, for
    `insert_from_calendar` (one statement for thousands on a first sync)."""
    block_id = uuid.uuid4().hex
    block = {"id": block_id, "user_id": user_id, "source": source, "revision": 1, "created_at": now,
             "updated_at": now, "deleted_at": None, **content_columns(content)}
    pair = {"link_id": link_id, "block_id": block_id, "event_id": event_id, "etag": etag,
            "base_hash": content.fingerprint(), "synced_at": now}
    return block, pair


def insert_from_calendar(session: Session, blocks: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> None:
    if blocks:
        session.execute(insert(BlockRow), blocks)
        session.execute(insert(EventLinkRow), pairs)


# -- event links -----------------------------------------------------------------------------------


def pairs(session: Session, link_id: int) -> list[rc.Pair]:
    return [rc.Pair(*p) for p in session.execute(
        select(EventLinkRow.block_id, EventLinkRow.event_id, EventLinkRow.etag, EventLinkRow.base_hash)
        .where(EventLinkRow.link_id == link_id))]


def pairs_of_links(session: Session, link_ids: Sequence[int]) -> tuple[dict[int, list[rc.Pair]], set[int]]:
    """The pairs of many links, and which of those links have writes of ours not yet seen listed."""
    found: dict[int, list[rc.Pair]] = {}
    unconfirmed: set[int] = set()
    for p in session.execute(select(EventLinkRow.link_id, EventLinkRow.block_id, EventLinkRow.event_id,
                                    EventLinkRow.etag, EventLinkRow.base_hash, EventLinkRow.unconfirmed)
                             .where(EventLinkRow.link_id.in_(list(link_ids)))):
        found.setdefault(p.link_id, []).append(rc.Pair(p.block_id, p.event_id, p.etag, p.base_hash))
        if p.unconfirmed:
            unconfirmed.add(p.link_id)
    return found, unconfirmed


def link_event(session: Session, link_id: int, block_id: str, event_id: str, etag: str | None, base: str,
               now: datetime, *, replaces: str | None = None, ours: bool = False) -> None:
    """Record that ``block_id`` is ``event_id`` in this calendar, replacing whatever either was
    linked to (and the event it replaces); ``ours`` when the event is what syncd just wrote."""
    session.execute(delete(EventLinkRow).where(
        EventLinkRow.link_id == link_id,
        (EventLinkRow.block_id == block_id) | (EventLinkRow.event_id == event_id)
        | (EventLinkRow.event_id == (replaces or event_id))))
    session.add(EventLinkRow(link_id=link_id, block_id=block_id, event_id=event_id, etag=etag, base_hash=base,
                             synced_at=now, unconfirmed=ours))


def unlink_event(session: Session, link_id: int, event_id: str) -> None:
    session.execute(delete(EventLinkRow).where(EventLinkRow.link_id == link_id, EventLinkRow.event_id == event_id))


def unlink_block(session: Session, link_id: int, block_id: str) -> None:
    session.execute(delete(EventLinkRow).where(EventLinkRow.link_id == link_id, EventLinkRow.block_id == block_id))


def linked_in_window(session: Session, link_id: int) -> list[tuple[str, datetime, datetime]]:
    """(event id, start, end) of the link's events whose blocks are live."""
    rows = session.execute(select(EventLinkRow.event_id, BlockRow.start, BlockRow.end)
                           .join(BlockRow, BlockRow.id == EventLinkRow.block_id)
                           .where(EventLinkRow.link_id == link_id, BlockRow.deleted_at.is_(None)))
    return [(event_id, start, end) for event_id, start, end in rows]


def unconfirmed_writes(session: Session, link_id: int) -> list[tuple[str, str | None]]:
    """(event id, etag) of events syncd wrote in this calendar that no listing has shown since."""
    return [(event_id, etag) for event_id, etag in session.execute(
        select(EventLinkRow.event_id, EventLinkRow.etag).where(EventLinkRow.link_id == link_id,
                                                               EventLinkRow.unconfirmed.is_(True)))]


def confirm_writes(session: Session, link_id: int, seen: Sequence[tuple[str, str | None]]) -> None:
    """Those writes were listed (or read back) since; one written again meanwhile stays unconfirmed."""
    params = [{"e": event_id, "t": etag} for event_id, etag in seen if etag is not None]
    if params:
        session.connection().execute(update(_PAIRS).where(
            _PAIRS.c.link_id == link_id, _PAIRS.c.event_id == bindparam("e"), _PAIRS.c.etag == bindparam("t"))
            .values(unconfirmed=False), params)


def live_between(session: Session, user_ids: Sequence[str], start: datetime, end: datetime,
                 limit: int) -> list[BlockRow]:
    """The users' live blocks that overlap [start, end), earliest first, at most ``limit``."""
    return list(session.scalars(select(BlockRow).where(
        BlockRow.user_id.in_(list(user_ids)), BlockRow.deleted_at.is_(None), BlockRow.start < end,
        BlockRow.end > start).order_by(BlockRow.start, BlockRow.id).limit(limit)))
