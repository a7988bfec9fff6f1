"""Mailboxes as a test sets them up (users, extra calendars, blocked mailboxes) and what Graph answers about them:
``/calendar`` and ``/calendars`` metadata, and ``mailboxSettings`` with its automatic replies and time zone."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.graph.common import GraphError, _b64url, _now, _Response
from tests.fakes.graph.state import _Mailbox
from tests.fakes.graph.timezones import _render_time, zone


class MailboxMixin(FakeGraphBase):
    """Test hooks for users and their mailboxes, and the calendar and mailboxSettings resources."""

    # ------------------------------------------------------------------------------------ hooks: mailboxes
    def add_user(self, user: str, *, time_zone: str | None = None, display_name: str | None = None) -> str:
        """Create a mailbox (idempotent); returns its object id."""
        with self._lock:
            box = self._mailbox(user, create=True)
            if display_name:
                box.display_name = display_name
            if time_zone:
                zone(time_zone)
                box.settings["timeZone"] = time_zone
            return box.object_id

    def user_id(self, user: str) -> str:
        with self._lock:
            return self._mailbox(user, create=True).object_id

    def block_mailbox(self, user: str, status: int = 403, code: str = "ErrorAccessDenied",
                      message: str = "Access is denied. Check credentials and try again.") -> None:
        """Every request for this mailbox fails (until ``unblock_mailbox``)."""
        with self._lock:
            self._mailbox(user, create=True).blocked = GraphError(status, code, message)

    def unblock_mailbox(self, user: str) -> None:
        with self._lock:
            self._mailbox(user, create=True).blocked = None

    def add_calendar(self, user: str, name: str) -> str:
        with self._lock:
            box = self._mailbox(user, create=True)
            calendar_id = "AAMkAGCal" + _b64url(secrets.token_bytes(12)) + "="
            box.calendars[calendar_id] = name
            return calendar_id

    def set_mailbox_time_zone(self, user: str, time_zone: str) -> None:
        zone(time_zone)
        with self._lock:
            self._mailbox(user, create=True).settings["timeZone"] = time_zone

    def set_working_hours(self, user: str, days: list[str], start: str, end: str,
                          time_zone: str | dict[str, Any] = "UTC") -> None:
        """Set ``workingHours`` as Outlook's settings page would: weekday names, ``HH:MM:SS.fffffff``
        times of day, and a zone given by name (Windows or IANA) or as a whole ``customTimeZone``."""
        zone_json = {"name": time_zone} if isinstance(time_zone, str) else copy.deepcopy(time_zone)
        with self._lock:
            self._mailbox(user, create=True).settings["workingHours"] = {
                "daysOfWeek": list(days),
                "startTime": f"{start}:00.0000000" if len(start) == 5 else start,
                "endTime": f"{end}:00.0000000" if len(end) == 5 else end,
                "timeZone": zone_json,
            }

    def set_automatic_replies(
        self,
        user: str,
        status: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        *,
        time_zone: str = "UTC",
        internal_message: str = "",
        external_message: str = "",
        external_audience: str = "all",
    ) -> None:
        """Set ``automaticRepliesSetting`` (status ``disabled``, ``alwaysEnabled`` or ``scheduled``)."""

        def point(value: datetime | str | None, default: datetime) -> dict[str, str]:
            if value is None:
                return _render_time(default, time_zone)
            if isinstance(value, datetime):
                aware = value if value.tzinfo else value.replace(tzinfo=zone(time_zone))
                return _render_time(aware, time_zone)
            return {"dateTime": value, "timeZone": time_zone}

        with self._lock:
            box = self._mailbox(user, create=True)
            today = _now().replace(minute=0, second=0, microsecond=0)
            box.settings["automaticRepliesSetting"] = {
                "status": status,
                "externalAudience": external_audience,
                "scheduledStartDateTime": point(start, today),
                "scheduledEndDateTime": point(end, today + timedelta(days=1)),
                "internalReplyMessage": internal_message,
                "externalReplyMessage": external_message,
            }

    def mailbox_settings(self, user: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._mailbox(user, create=True).settings)

    # ------------------------------------------------------------------------------------ resources
    def _user_json(self, box: _Mailbox) -> dict[str, Any]:
        """``GET /me`` or ``/users/{id}``: the user resource with Graph's default properties."""
        given, _, surname = box.display_name.partition(" ")
        return {
            "@odata.context": f"{self.graph_url}/$metadata#users/$entity",
            "businessPhones": [],
            "displayName": box.display_name,
            "givenName": given or None,
            "jobTitle": None,
            "mail": box.upn,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": surname or None,
            "userPrincipalName": box.upn,
            "id": box.object_id,
        }

    def _calendar_json(self, box: _Mailbox, calendar: str) -> dict[str, Any]:
        return {
            "id": calendar,
            "name": box.calendars[calendar],
            "isDefaultCalendar": calendar == box.primary_calendar,
            "canEdit": True,
            "owner": {"name": box.display_name, "address": box.upn},
        }

    def _mailbox_settings(self, box: _Mailbox, method: str, rest: list[str],
                          payload: Callable[[], dict[str, Any]]) -> _Response:
        context = f"{self.graph_url}/$metadata#users('{box.object_id}')/mailboxSettings"
        if method == "PATCH" and not rest:
            changes = payload()
            unknown = set(changes) - set(box.settings) - {"@odata.context"}
            if unknown:
                raise GraphError(400, "RequestBodyRead", f"The property '{sorted(unknown)[0]}' does not exist on type "
                                                         f"'microsoft.graph.mailboxSettings'.")
            if "timeZone" in changes:
                zone(changes["timeZone"])
            for key, value in changes.items():
                if key == "@odata.context":
                    continue
                if isinstance(value, dict) and isinstance(box.settings.get(key), dict):
                    box.settings[key].update(copy.deepcopy(value))
                else:
                    box.settings[key] = copy.deepcopy(value)
            return _Response(200, {"@odata.context": context, **copy.deepcopy(box.settings)})
        if method != "GET":
            raise GraphError(405, "ErrorInvalidRequest", "The OData request is not supported.")
        if not rest:
            return _Response(200, {"@odata.context": context, **copy.deepcopy(box.settings)})
        names = {k.lower(): k for k in box.settings}
        if len(rest) == 1 and rest[0] in names:
            value = copy.deepcopy(box.settings[names[rest[0]]])
            if isinstance(value, dict):
                return _Response(200, {"@odata.context": f"{context}/{names[rest[0]]}", **value})
            return _Response(200, {"@odata.context": f"{context}/{names[rest[0]]}", "value": value})
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{'/'.join(rest)}'.")
