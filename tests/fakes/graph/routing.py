"""Graph calls to the concern that answers them: authentication, mailbox resolution (``/me`` or ``/users/{id}``),
the ``Prefer`` header (``outlook.timezone``, ``odata.maxpagesize``), the calendar prefixes, and the events,
calendarView, delta, mailboxSettings and subscriptions resources; every call is logged in ``requests``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.graph.common import GraphError, RequestRecord, _header, _json_body, _Response
from tests.fakes.graph.delta import _DELTA_NAMES, DeltaMixin
from tests.fakes.graph.events import EventsMixin
from tests.fakes.graph.identity import IdentityMixin, _Grant
from tests.fakes.graph.mailbox import MailboxMixin
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import zone

_PREFER_TZ = re.compile(r'outlook\.timezone\s*=\s*"([^"]*)"', re.IGNORECASE)
_PREFER_PAGE = re.compile(r"odata\.maxpagesize\s*=\s*(\d+)", re.IGNORECASE)


def _prefer(headers: Any) -> tuple[str | None, int | None]:
    values: list[str] = []
    if hasattr(headers, "get_all"):
        values = list(headers.get_all("Prefer") or [])
    else:
        value = _header(headers, "Prefer")
        if value:
            values = [value]
    joined = ",".join(values)
    tz_match = _PREFER_TZ.search(joined)
    page_match = _PREFER_PAGE.search(joined)
    return (tz_match.group(1) if tz_match else None, int(page_match.group(1)) if page_match else None)


@dataclass
class _Call:
    """One Graph call addressed to a mailbox; ``rest`` is the path after the mailbox (and calendar) prefix."""

    box: _Mailbox
    method: str
    path: str
    rest: list[str]
    query: dict[str, list[str]]
    raw_query: str
    headers: Any
    body: bytes
    tz_pref: str | None
    page_pref: int | None

    @property
    def rest_lower(self) -> list[str]:
        return [s.lower() for s in self.rest]

    @property
    def tz_name(self) -> str:
        return self.tz_pref or "UTC"

    def payload(self) -> dict[str, Any]:
        return _json_body(self.body)

    def preferred(self, response: _Response) -> _Response:
        """``response`` with the ``Preference-Applied`` header for the preferences it honoured."""
        applied = []
        if self.tz_pref:
            applied.append(f'outlook.timezone="{self.tz_pref}"')
        if self.page_pref and "@odata.nextLink" in (response.body or {}):
            applied.append(f"odata.maxpagesize={self.page_pref}")
        if applied:
            response.headers["Preference-Applied"] = ", ".join(applied)
        return response

    def not_found(self) -> GraphError:
        rest = "/".join(self.rest) or self.path
        return GraphError(400, "BadRequest", f"Resource not found for the segment '{rest}'.")


class RoutingMixin(IdentityMixin, MailboxMixin, EventsMixin, DeltaMixin):
    """Dispatches one Graph call (top-level or a batch part) to the resource that answers it."""

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes, *, in_batch: bool) -> _Response:
        """One Graph call (top-level or a batch part); ``target`` starts with /v1.0/."""
        parts = urlsplit(target)
        path = parts.path
        user: str | None = None
        try:
            fault = self._faults.take_failure(path, ("part", "any") if in_batch else ("request", "any"))
            if fault is not None:
                raise GraphError(fault.status, fault.code, fault.message, headers=fault.retry_after_headers())
            rest = path.removeprefix("/v1.0").strip("/")
            segments = [unquote(s) for s in rest.split("/")] if rest else []
            query = {k.lower(): v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            with self._lock:
                grant = self._authenticate(headers)
                user = grant.user
            if [s.lower() for s in segments] == ["subscriptions"] and method == "POST":
                response = self._create_subscription(grant, body)
            else:
                with self._lock:
                    response, user = self._route(grant, method, path, segments, query, headers, body, parts.query)
        except GraphError as err:
            response = err.response()
        with self._lock:
            self.requests.append(RequestRecord(method, path, user, response.status, in_batch, "graph"))
        return response

    def _route(self, grant: _Grant, method: str, path: str, segments: list[str], query: dict[str, list[str]],
               headers: Any, body: bytes, raw_query: str) -> tuple[_Response, str | None]:
        lower = [s.lower() for s in segments]
        if lower and lower[0] == "subscriptions":
            return self._subscription_route(grant, method, segments, body), grant.user
        box, rest = self._addressed_mailbox(grant, segments)
        if box.blocked is not None:
            raise box.blocked
        tz_pref, page_pref = _prefer(headers)
        if tz_pref:
            zone(tz_pref)
        call = _Call(box, method, path, rest, query, raw_query, headers, body, tz_pref, page_pref)
        return self._mailbox_route(call), box.upn

    def _addressed_mailbox(self, grant: _Grant, segments: list[str]) -> tuple[_Mailbox, list[str]]:
        """The mailbox of ``/me/...`` or ``/users/{id}/...`` (if the grant may use it) and the segments after it."""
        lower = [s.lower() for s in segments]
        if not lower or lower[0] not in ("me", "users"):
            first = segments[0] if segments else ""
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{first}'.")
        if lower[0] == "me":
            if grant.kind != "user":
                raise GraphError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            return self._mailbox(grant.user or "", create=True), segments[1:]
        if len(segments) < 2:
            raise GraphError(405, "Request_BadRequest", "Listing users is not implemented in the fake.")
        box = self._mailbox(segments[1], create=self.auto_create_users)
        if grant.kind == "user" and box.upn != grant.user:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return box, segments[2:]

    def _mailbox_route(self, call: _Call) -> _Response:
        box, method = call.box, call.method
        if not call.rest and method == "GET":
            return _Response(200, self._user_json(box))
        if call.rest_lower[:1] == ["mailboxsettings"]:
            return self._mailbox_settings(box, method, call.rest_lower[1:], call.payload)
        # calendar prefix
        calendar = box.primary_calendar
        if call.rest_lower[:1] == ["calendar"]:
            call.rest = call.rest[1:]
            if not call.rest and method == "GET":
                return _Response(200, self._calendar_json(box, calendar))
        elif call.rest_lower[:1] == ["calendars"]:
            if len(call.rest) == 1 and method == "GET":
                return _Response(200, {"value": [self._calendar_json(box, c) for c in box.calendars]})
            if len(call.rest) < 2 or call.rest[1] not in box.calendars:
                raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            calendar = call.rest[1]
            call.rest = call.rest[2:]
            if not call.rest and method == "GET":
                return _Response(200, self._calendar_json(box, calendar))
        rest_lower = call.rest_lower
        if rest_lower[:1] == ["calendarview"] and method == "GET":
            if len(rest_lower) == 2 and rest_lower[1] in _DELTA_NAMES:
                return call.preferred(self._delta(box, calendar, call.path, call.query, call.raw_query, call.tz_name,
                                                  call.page_pref))
            if len(rest_lower) == 1:
                return call.preferred(self._calendar_view(box, calendar, call.path, call.query, call.tz_name,
                                                          call.page_pref))
        if rest_lower[:1] == ["events"]:
            response = self._events_route(call, calendar)
            if response is not None:
                return response
        raise call.not_found()

    def _events_route(self, call: _Call, calendar: str) -> _Response | None:
        """``.../events``, ``.../events/{id}`` and ``.../events/{id}/instances``; None if nothing here matches."""
        box, method, rest, tz_name = call.box, call.method, call.rest, call.tz_name
        if len(rest) == 1:
            if method == "GET":
                return call.preferred(self._list_events(box, calendar, call.path, call.query, tz_name, call.page_pref))
            if method == "POST":
                item, _existing = self._create(box, calendar, call.payload())
                body_out = self._render(box, item, tz_name)
                body_out["@odata.context"] = f"{self.graph_url}/$metadata#users('{box.object_id}')/events/$entity"
                return call.preferred(_Response(201, body_out))
        elif len(rest) == 2 and call.rest_lower[1] in _DELTA_NAMES:
            raise GraphError(400, "BadRequest", "Delta on events without a calendarView is beta-only.")
        elif len(rest) == 2:
            event_id = rest[1]
            if_match = _header(call.headers, "If-Match")
            if method == "GET":
                item, key = self._resolve(box, event_id)
                instance = self._instance(item, key) if key else item
                out = self._render(box, instance, tz_name, expand=self._expand_arg(call.query),
                                   select=self._select_arg(call.query))
                return call.preferred(_Response(200, out))
            if method == "PATCH":
                updated = self._patch(box, event_id, call.payload(), if_match=if_match)
                return call.preferred(_Response(200, self._render(box, updated, tz_name)))
            if method == "DELETE":
                self._delete(box, event_id, if_match=if_match)
                return _Response(204)
        elif len(rest) == 3 and call.rest_lower[2] == "instances" and method == "GET":
            item, key = self._resolve(box, rest[1])
            lo, hi = self._window(call.query)
            found = [i for i in self._instances(box, item["_calendar"], lo, hi)
                     if i.get("seriesMasterId") == item["id"]] if key is None else []
            return call.preferred(self._page(box, found, call.path, call.query, tz_name, call.page_pref))
        return None
