"""OOO blocks as the helpdesk edits them: each edit, with the status before and after it,
and the calendars told to hear of it, in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from store import blocks, users
from store.db import Transaction
from store.models import BlockRow, UserRow
from syncd.core.errors import StaleRevision, UserInputError
from syncd.core.ooo import OooContent
from syncd.core.time import format_utc
from syncd.service.base import BlockInfo, ServiceBase

__all__ = ["KEEP", "BlockOperations", "Keep"]


class Keep:
    """An edit leaves this as it is."""


KEEP = Keep()


class BlockOperations(ServiceBase):
    def list_blocks(self, user_id: str) -> list[BlockInfo]:
        def work(session: Transaction) -> list[BlockInfo]:
            self._user(session, user_id)
            return [BlockInfo.of(r) for r in blocks.live_rows(session, user_id)]
        return self.db.run(work)

    def get_block(self, block_id: str) -> BlockInfo:
        return self.db.read(lambda s: BlockInfo.of(self._block(s, block_id)))

    def add_block(self, user_id: str, content: OooContent, *, source: str = "helpdesk",
                  replacement: str | None = None) -> BlockInfo:
        """A new block; ``replacement`` takes the user's work while it covers."""
        def work(session: Transaction) -> BlockInfo:
            now = self.clock()
            user = self._user(session, user_id)
            named = self._replacement(session, user.id, replacement)
            self.recorder.advance(session, user, now)  # transitions before the edit keep their own time
            row = blocks.add(session, user.id, content.in_zone(user.timezone), source, now, replacement=named)
            self.recorder.advance(session, user, now)
            users.touch_links(session, user.id, now)
            return BlockInfo.of(row)
        return self.db.run(work)

    def _change_block(self, block_id: str, expected_revision: int | None,
                      change: Callable[[Transaction, BlockRow, UserRow, datetime], None], *,
                      ended_early: bool = False) -> BlockInfo:
        """One edit of an existing block, with the status before and after it, in one transaction."""
        def work(session: Transaction) -> BlockInfo:
            now = self.clock()
            row = self._block(session, block_id)
            _check_revision(row, expected_revision)
            user = self._user(session, row.user_id)
            self.recorder.advance(session, user, now)  # transitions before the edit keep their own time
            change(session, row, user, now)
            self.recorder.advance(session, user, now, ended_early=ended_early)
            users.touch_links(session, user.id, now)
            return BlockInfo.of(row)
        return self.db.run(work)

    def edit_block(self, block_id: str, content: OooContent, *, expected_revision: int | None = None,
                   replacement: str | None | Keep = KEEP) -> BlockInfo:
        """A block's new content; ``replacement`` a new one (None: nobody), or `KEEP` it."""
        def edit(session: Transaction, row: BlockRow, user: UserRow, now: datetime) -> None:
            blocks.revise(row, content.in_zone(user.timezone), now)
            if not isinstance(replacement, Keep):
                row.replacement = self._replacement(session, user.id, replacement)
        return self._change_block(block_id, expected_revision, edit)

    def delete_block(self, block_id: str, *, expected_revision: int | None = None) -> BlockInfo:
        def delete(_session: Transaction, row: BlockRow, _user: UserRow, now: datetime) -> None:
            blocks.mark_deleted(row, now)
        return self._change_block(block_id, expected_revision, delete)

    def end_block_early(self, block_id: str) -> BlockInfo:
        def end(_session: Transaction, row: BlockRow, _user: UserRow, now: datetime) -> None:
            if row.start > now:
                raise UserInputError(f"OOO block {block_id} starts at {format_utc(row.start)} and has not begun; "
                                     f"delete it instead (`syncd ooo delete {block_id}`)")
            if row.end <= now:
                raise UserInputError(f"OOO block {block_id} already ended at {format_utc(row.end)}")
            blocks.end_now([row], now)
        return self._change_block(block_id, None, end, ended_early=True)

    def purge_tombstones(self, older_than: timedelta = timedelta(days=30)) -> int:
        """Drop deleted blocks whose deletion has reached every calendar."""
        return self.db.run(lambda s: blocks.purge_tombstones(s, self.clock() - older_than))


def _check_revision(row: BlockRow, expected: int | None) -> None:
    if expected is not None and expected != row.revision:
        raise StaleRevision(f"OOO block {row.id} is at revision {row.revision}, not {expected}; "
                            "re-read it and apply your change again", row.revision)


def confirmation_text(user_id: str, covering: Sequence[BlockRow]) -> str:
    names = ", ".join(f"{b.id} ({b.title!r}, {format_utc(b.start)} to {format_utc(b.end)})" for b in covering)
    return (f"{user_id} is out of office now: {names}. Setting available ends "
            f"{'that block' if len(covering) == 1 else 'those blocks'} early; confirm with --end-ooo-early "
            "(API: \"end_ooo_early\": true), or keep the status away")
