"""Reading one event and writing syncd's events: `get`, `find_by_block_id`, `create`, `update`, `delete`.

Events syncd writes say ``showAs: oof``, ``isReminderOn: false``, carry the block's title (or
the account's ``summary``), the block id in a single-value extended property and a
``transactionId`` derived from it, so a POST retried after a crash does not make a second
event; before a POST the connector also looks for an earlier one with a ``$filter`` on the
extended property. All-day blocks are all-day events in the user's zone. Updates and deletes
send ``If-Match``; a PATCH never sends the extended property (an occurrence of a person's
series cannot take one). Deleting an event that is gone counts as done.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from connectors.outlook.mapping import BLOCK_PROPERTY, block_id_of, graph_times, is_ooo, remote_event, transaction_id
from connectors.outlook.replies import AUTOMATIC_REPLIES, RepliesPart
from syncd.core.calendars import EventDraft, RemoteEvent
from syncd.core.errors import NotFound, PreconditionFailed

__all__ = ["WritingPart"]


class WritingPart(RepliesPart):
    """One event at a time, read or written; the automatic replies are read-only."""

    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        tz_name = self._zones.get(calendar, "UTC")
        if event_id == AUTOMATIC_REPLIES:
            return self._replies_event(owner, tz_name)
        try:
            answer = self._call("GET", self._event_path(owner, calendar_id, event_id), owner=owner,
                                params={"$expand": f"singleValueExtendedProperties($filter=id eq '{BLOCK_PROPERTY}')"},
                                headers={"Prefer": self._prefer(tz_name)}, what=f"reading event {event_id}")
        except NotFound:
            return None
        return remote_event(answer.body, tz_name) if is_ooo(answer.body) else None

    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        owner, calendar_id = self._split(calendar)
        tz_name = self._zones.get(calendar, "UTC")
        quoted = block_id.replace("'", "''")
        answer = self._call("GET", self._events_path(owner, calendar_id), owner=owner, params={
            "$filter": f"singleValueExtendedProperties/any(ep: ep/id eq '{BLOCK_PROPERTY}' and ep/value eq '{quoted}')",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{BLOCK_PROPERTY}')",
            "$top": "5"}, headers={"Prefer": self._prefer(tz_name)}, what=f"finding the event of block {block_id}")
        for item in answer.body.get("value") or ():
            if is_ooo(item) and block_id_of(item) == block_id:
                return remote_event(item, tz_name)
        return None

    def _body(self, draft: EventDraft) -> dict[str, Any]:
        return {"subject": draft.content.title or self.options.summary, "showAs": "oof", "isReminderOn": False,
                **graph_times(draft.content, draft.timezone),
                "singleValueExtendedProperties": [{"id": BLOCK_PROPERTY, "value": draft.block_id}]}

    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        self._zones.setdefault(calendar, draft.timezone)
        earlier = self.find_by_block_id(calendar, draft.block_id)  # a POST made just before a crash
        if earlier is not None:
            return earlier
        answer = self._call("POST", self._events_path(owner, calendar_id), owner=owner,
                            json_body={**self._body(draft), "transactionId": transaction_id(draft.block_id)},
                            headers={"Prefer": self._prefer(draft.timezone)},
                            what=f"creating the event of block {draft.block_id}")
        return replace(remote_event(answer.body, draft.timezone), block_id=draft.block_id)

    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        owner, calendar_id = self._split(calendar)
        if event_id == AUTOMATIC_REPLIES:
            raise PreconditionFailed("outlook: the automatic replies are read-only; their schedule wins")
        body = self._body(draft)
        # Our own events carry the property since their creation, and an occurrence of a
        # person's series cannot take one: a PATCH never sends it.
        body.pop("singleValueExtendedProperties")
        answer = self._call("PATCH", self._event_path(owner, calendar_id, event_id), owner=owner,
                            json_body=body, headers={"Prefer": self._prefer(draft.timezone),
                                                     **({"If-Match": etag} if etag else {})},
                            what=f"updating event {event_id}")
        return replace(remote_event(answer.body, draft.timezone), block_id=draft.block_id)

    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        owner, calendar_id = self._split(calendar)
        if event_id == AUTOMATIC_REPLIES:
            return  # read-only: the mailbox's schedule stays; syncd forgets the pairing
        try:
            self._call("DELETE", self._event_path(owner, calendar_id, event_id), owner=owner,
                       headers={"If-Match": etag} if etag else {}, what=f"deleting event {event_id}")
        except NotFound:
            return
