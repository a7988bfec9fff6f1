"""The mailbox's automatic replies as a second, read-only OOO source.

With ``automatic_replies = true``, the mailbox's scheduled automatic replies are one more OOO
event for the user while they are scheduled, with the id ``automatic-replies`` (`AUTOMATIC_REPLIES`)
and their content's fingerprint as the etag. They are read from
``/users/<email>/mailboxSettings/automaticRepliesSetting`` (which needs ``MailboxSettings.Read``).
syncd never changes them: an update is refused as a stale etag (the schedule wins), and a delete
only drops the pairing. The cursor keeps the fingerprint reported last, so a listing reports
them only when they change, and reports them removed when they stop being scheduled.

Exchange may also put an OOF event for the same period in the mailbox's calendar when the
replies are scheduled. Both are one absence: while such an event (the same start and end) is
there, the automatic replies are not reported (or reported removed), and the event alone
becomes the block. Whether it is there is asked when the replies change, on a full listing
and when the listing removed events; the cursor remembers the answer in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from connectors.outlook.client import GraphClient, segment
from connectors.outlook.mapping import event_content, is_ooo, parse_instant
from syncd.core.calendars import ChangeSet, RemoteEvent
from syncd.core.errors import BadEventData
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import format_utc, zone

__all__ = ["AUTOMATIC_REPLIES", "RepliesPart", "replies_content"]

AUTOMATIC_REPLIES = "automatic-replies"
_COVERED = "covered:"  # a cursor's fingerprint of replies that an OOF event of the same period stands for


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

    def _same_period_event(self, owner: str, content: OooContent, tz_name: str) -> bool:
        """Whether the mailbox's calendar has an OOF event over exactly the replies' period."""
        query = urlencode({"startDateTime": format_utc(content.start), "endDateTime": format_utc(content.end),
                           "$select": "showAs,isCancelled,isAllDay,start,end", "$top": "50"})
        answer = self._call("GET", f"/users/{segment(owner, 'user')}/calendarView?{query}", owner=owner,
                            headers={"Prefer": self._prefer(tz_name)},
                            what=f"looking for {owner}'s OOF event of the automatic replies")
        return any(_same_period(item, content, tz_name) for item in answer.body.get("value") or ()
                   if isinstance(item, dict))

    def _replies_event(self, owner: str, tz_name: str) -> RemoteEvent | None:
        """The automatic replies as the read-only event `get` answers, or None when not
        scheduled or when an OOF event of the same period stands for them."""
        content = self._read_replies(owner, tz_name)
        if content is None or self._same_period_event(owner, content, tz_name):
            return None
        return RemoteEvent(AUTOMATIC_REPLIES, content.fingerprint(), content, read_only=True)

    def _replies_changes(self, owner: str, tz_name: str, out: ChangeSet, previous: str | None) -> str | None:
        """Adds the automatic replies to ``out`` if they changed since ``previous`` (the
        fingerprint the cursor kept) or ``out`` is a full listing, unless an OOF event of the
        same period stands for them; returns the fingerprint to keep."""
        content = self._read_replies(owner, tz_name)
        was_reported = previous is not None and not previous.startswith(_COVERED)
        if content is None:
            if was_reported:
                out.removed.append(AUTOMATIC_REPLIES)
            return None
        fingerprint = content.fingerprint()
        listed = any(not e.read_only and (e.content.start, e.content.end) == (content.start, content.end)
                     for e in out.events)
        if listed:
            covered = True
        elif previous in (fingerprint, _COVERED + fingerprint) and not out.full and not out.removed:
            covered = previous == _COVERED + fingerprint  # nothing that could change the answer happened
        else:
            covered = self._same_period_event(owner, content, tz_name)
        if covered:
            if was_reported:
                out.removed.append(AUTOMATIC_REPLIES)
            return _COVERED + fingerprint
        if previous != fingerprint or out.full:
            out.events.append(RemoteEvent(AUTOMATIC_REPLIES, fingerprint, content, read_only=True))
        return fingerprint


def _same_period(item: Mapping[str, Any], content: OooContent, tz_name: str) -> bool:
    if not is_ooo(item):
        return False
    try:
        found = event_content(item, tz_name)
    except (BadEventData, ValueError, KeyError):
        return False
    return (found.start, found.end) == (content.start, content.end)
