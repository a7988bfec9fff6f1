"""The mailbox's automatic replies as a second, read-only OOO source.

With ``automatic_replies = true``, the mailbox's scheduled automatic replies are one more OOO
event for the user while they are scheduled, with the id ``automatic-replies`` (`AUTOMATIC_REPLIES`)
and their content's fingerprint as the etag. They are read from
``/users/<email>/mailboxSettings/automaticRepliesSetting`` (which needs ``MailboxSettings.Read``).
syncd never changes them: an update is refused as a stale etag (the schedule wins), and a delete
only drops the pairing. The cursor keeps the fingerprint reported last, so a listing reports
them only when they change, and reports them removed when they stop being scheduled.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.outlook.client import GraphClient, segment
from connectors.outlook.mapping import parse_instant
from syncd.core.calendars import ChangeSet, RemoteEvent
from syncd.core.errors import BadEventData
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import zone

__all__ = ["AUTOMATIC_REPLIES", "RepliesPart", "replies_content"]

AUTOMATIC_REPLIES = "automatic-replies"


def replies_content(setting: Mapping[str, Any], tz_name: str) -> OooContent | None:
    """Scheduled automatic replies as OOO content (status compared case-insensitively)."""
    if str(setting.get("status", "")).lower() != "scheduled":
        return None
    try:
        start = parse_instant(setting.get("scheduledStartDateTime"), "scheduled start")
        end = parse_instant(setting.get("scheduledEndDateTime"), "scheduled end")
    except (BadEventData, ValueError):
        return None
    if end <= start:
        return None
    tz = zone(tz_name)
    first, last = start.astimezone(tz), end.astimezone(tz)
    if first.time() == last.time() == datetime.min.time():
        return all_day_content(first.date(), last.date(), tz_name, "Automatic replies")
    return timed_content(start, end, "Automatic replies")


class RepliesPart(GraphClient):
    """Reads a mailbox's automatic replies, for `get` and for a listing."""

    def _read_replies(self, owner: str, tz_name: str) -> OooContent | None:
        answer = self._call("GET", f"/users/{segment(owner, 'user')}/mailboxSettings/automaticRepliesSetting",
                            owner=owner, headers={"Prefer": self._prefer(tz_name)},
                            what=f"reading {owner}'s automatic replies")
        return replies_content(answer.body, tz_name)

    def _replies_event(self, owner: str, tz_name: str) -> RemoteEvent | None:
        """The automatic replies as the read-only event `get` answers, or None when not scheduled."""
        content = self._read_replies(owner, tz_name)
        return None if content is None else RemoteEvent(AUTOMATIC_REPLIES, content.fingerprint(), content,
                                                        read_only=True)

    def _replies_changes(self, owner: str, tz_name: str, out: ChangeSet, previous: str | None) -> str | None:
        """Adds the automatic replies to ``out`` if they changed since ``previous`` (the
        fingerprint the cursor kept) or ``out`` is a full listing; returns the fingerprint to keep."""
        content = self._read_replies(owner, tz_name)
        if content is None:
            if previous is not None:
                out.removed.append(AUTOMATIC_REPLIES)
            return None
        fingerprint = content.fingerprint()
        if previous != fingerprint or out.full:
            out.events.append(RemoteEvent(AUTOMATIC_REPLIES, fingerprint, content, read_only=True))
        return fingerprint
