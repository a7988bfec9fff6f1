"""Change tracking over a calendar view (``calendarView/delta``): rounds of pages linked by ``$skiptoken``, a final
``$deltatoken`` that stands for what the client has seen, the changes since it (with ``@removed`` stubs), and the
410 answers for tokens that expired or fell out of the cache."""

from __future__ import annotations

import secrets
from typing import Any

from tests.fakes.graph.common import GraphError, _Response
from tests.fakes.graph.listing import ListingMixin
from tests.fakes.graph.state import _DeltaState, _Mailbox, _Round

_DELTA_NAMES = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")


class DeltaMixin(ListingMixin):
    """Delta rounds and tokens per mailbox, and the hook that expires them."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta_token_cache = 50  # per mailbox; older deltaLinks answer 410 syncStateNotFound
        self.report_out_of_window_changes = True

    def expire_delta_tokens(self, user: str, *, status: int = 410, code: str = "resyncRequired") -> None:
        """Every delta/skip token of ``user`` issued so far now fails with ``status``/``code``."""
        with self._lock:
            box = self._mailbox(user, create=True)
            for token, state in box.delta_tokens.items():
                box.expired_tokens[token] = (status, code, state)
            for token, round_ in box.rounds.items():
                box.expired_tokens[token] = (status, code, round_.state)
            box.delta_tokens.clear()
            box.rounds.clear()

    def _delta(self, box: _Mailbox, calendar: str, path: str, query: dict[str, list[str]], raw_query: str,
               tz_name: str, page_pref: int | None) -> _Response:
        for name in ("$select", "$filter", "$expand", "$orderby", "$search"):
            if name in query:
                raise GraphError(400, "ErrorInvalidUrlQuery", f"The query parameter '{name}' is not supported with "
                                                              f"change tracking over a calendarView.")
        size = max(1, page_pref or self.default_page_size)
        skip_token = self._one(query, "$skiptoken")
        delta_token = self._one(query, "$deltatoken")
        if skip_token is not None:
            round_id, _, offset_text = skip_token.rpartition(".")
            round_ = box.rounds.get(round_id)
            if round_ is None or not offset_text.isdigit():
                raise self._gone(box, round_id, path, None)
            return self._serve_round(box, round_id, round_, int(offset_text), size, tz_name)
        if delta_token:
            state = box.delta_tokens.get(delta_token)
            if state is None:
                raise self._gone(box, delta_token, path, None)
            if state.calendar != calendar:
                raise self._gone(box, delta_token, path, state)
            items, new_state = self._changes_since(box, calendar, state)
        else:
            lo, hi = self._window(query)
            current = self._instances(box, calendar, lo, hi)
            items = current
            new_state = _DeltaState(calendar, lo, hi, path, raw_query, {i["id"]: i["_version"] for i in current},
                                    self._seq)
        round_id = secrets.token_urlsafe(18)
        round_ = _Round(new_state, items)
        box.rounds[round_id] = round_
        while len(box.rounds) > self.delta_token_cache:
            box.rounds.popitem(last=False)
        return self._serve_round(box, round_id, round_, 0, size, tz_name)

    def _changes_since(self, box: _Mailbox, calendar: str,
                       state: _DeltaState) -> tuple[list[dict[str, Any]], _DeltaState]:
        """What a deltaLink round delivers: changed and new instances, ``@removed`` stubs for those gone (and, as Graph
        does, for events outside the window that changed since), and the state its deltaLink will stand for."""
        current = self._instances(box, calendar, state.start, state.end)
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        for inst in current:
            seen.add(inst["id"])
            if state.snapshot.get(inst["id"]) != inst["_version"]:
                items.append(inst)
        for gone_id in state.snapshot:
            if gone_id not in seen:
                items.append(self._removed(gone_id))
        if self.report_out_of_window_changes:
            reported = {i["id"] for i in items}
            for item in box.events.values():
                if item["_calendar"] == calendar and item["_seq"] > state.seq and item["id"] not in seen \
                        and item["id"] not in reported and not any(s.startswith(item["id"]) for s in seen):
                    items.append(self._removed(item["id"]))
            for gone_id, seq in box.tombstones.items():
                if seq > state.seq and gone_id not in reported \
                        and not any(s.startswith(gone_id) for s in state.snapshot):
                    items.append(self._removed(gone_id))
        new_state = _DeltaState(calendar, state.start, state.end, state.base, state.query,
                                {i["id"]: i["_version"] for i in current}, self._seq)
        return items, new_state

    @staticmethod
    def _removed(event_id: str) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.event", "id": event_id, "@removed": {"reason": "deleted"}}

    def _serve_round(self, box: _Mailbox, round_id: str, round_: _Round, offset: int, size: int,
                     tz_name: str) -> _Response:
        page = round_.items[offset: offset + size]
        path = round_.state.base
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection(event)",
            "value": [dict(i) if "@removed" in i else self._render(box, i, tz_name, delta=True) for i in page],
        }
        if offset + size < len(round_.items):
            body["@odata.nextLink"] = f"{self.base_url}{path}?$skiptoken={round_id}.{offset + size}"
        else:
            token_id = f"{round_id}d"  # the same round always ends in the same token
            if token_id not in box.delta_tokens:
                box.delta_tokens[token_id] = round_.state
                while len(box.delta_tokens) > self.delta_token_cache:
                    box.delta_tokens.popitem(last=False)
            body["@odata.deltaLink"] = f"{self.base_url}{path}?$deltatoken={token_id}"
        return _Response(200, body)

    def _gone(self, box: _Mailbox, token: str, path: str, state: _DeltaState | None) -> GraphError:
        status, code, expired_state = box.expired_tokens.get(token, (410, "syncStateNotFound", state))
        state = state or expired_state
        location = f"{self.base_url}{state.base}?{state.query}" if state else f"{self.base_url}{path}?$deltatoken="
        message = ("The delta token is no longer valid; restart change tracking with a full synchronization."
                   if code != "syncStateNotFound" else "The sync state for this delta token was not found.")
        return GraphError(status, code, message, headers={"Location": location} if status == 410 else {})
