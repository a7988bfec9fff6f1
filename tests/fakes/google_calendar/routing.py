"""Calendar API calls to the concern that answers them: authentication, then ``events`` (list, insert, get,
patch, update, delete), ``events/watch`` and ``channels/stop``; every call is logged in ``requests``."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes.google_calendar.common import ApiError, _Response
from tests.fakes.google_calendar.events import EventsMixin
from tests.fakes.google_calendar.oauth import OAuthMixin
from tests.fakes.google_calendar.sync import SyncMixin
from tests.fakes.http_support import RequestRecord, json_object


class RoutingMixin(OAuthMixin, EventsMixin, SyncMixin):
    """Authenticates each API call and hands it to the events, sync or watch concern."""

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes, *, in_batch: bool) -> _Response:
        """One Calendar API call (top-level or a batch part)."""
        parts = urlsplit(target)
        path = parts.path
        query = parse_qs(parts.query, keep_blank_values=True)
        user: str | None = None
        try:
            if not path.startswith("/calendar/v3/"):
                raise ApiError(404, "notFound", "Not Found")
            with self._lock:
                user = self._authenticate(headers)
                response = self._route(user, method, path.removeprefix("/calendar/v3/"), query, headers, body)
        except ApiError as err:
            response = _Response(err.status, err.body(), dict(err.headers))
        with self._lock:
            self.requests.append(RequestRecord(method, path, user, response.status, in_batch))
        return response

    def _route(self, user: str, method: str, rest: str, query: dict[str, list[str]], headers: Any,
               body: bytes) -> _Response:
        segments = [unquote(s) for s in rest.split("/")]
        if_match = headers.get("If-Match")

        def payload() -> dict[str, Any]:
            try:
                return json_object(body)
            except ValueError as exc:
                raise ApiError(400, "parseError", "Parse Error") from exc

        if segments == ["channels", "stop"] and method == "POST":
            return self._stop_channel(user, payload())
        if len(segments) < 3 or segments[0] != "calendars" or segments[2] != "events":
            raise ApiError(404, "notFound", "Not Found")
        cal = self._calendar(user, segments[1], create=False)
        if len(segments) == 3:
            if method == "GET":
                return _Response(200, self._list(user, cal, query))
            if method == "POST":
                return _Response(200, self._insert(cal, payload()))
        elif len(segments) == 4 and segments[3] == "watch" and method == "POST":
            return self._watch(user, cal, payload())
        elif len(segments) == 4:
            event_id = segments[3]
            if method == "GET":
                return _Response(200, self._public(self._live(cal, event_id, None)))
            if method in ("PATCH", "PUT"):
                return _Response(200, self._patch(cal, event_id, payload(), if_match=if_match,
                                                  replace=method == "PUT"))
            if method == "DELETE":
                self._delete(cal, event_id, if_match=if_match)
                return _Response(204)
        raise ApiError(404, "notFound", "Not Found")
