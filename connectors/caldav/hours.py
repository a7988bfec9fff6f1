"""Working hours kept on the server: the ``calendar-availability`` property (RFC 7953).

The property (``urn:ietf:params:xml:ns:caldav``) holds a VAVAILABILITY object. It is looked
for on the link's calendar collection first, then on the owner's scheduling inbox
(``schedule-inbox-URL`` of the principal), one Depth 0 PROPFIND each; a server that has
neither (Radicale, say) answers 404 for the property inside its 207, which means "no hours
here", not an error. A collection that is gone (404) or a redirect off the account's server
is an error; a server that refuses the request itself (a 4xx other than those) keeps none.
The value is read by `connectors.ical.availability` with bounded work.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from connectors.caldav.client import NS, XML_TYPE, OffOrigin
from connectors.caldav.discovery import _PROPFIND, DiscoveryMixin, _found
from connectors.ical.availability import hours_from_availability
from syncd.core.errors import ConnectorError, NotFound
from syncd.core.hours import CalendarHours

__all__ = ["HoursMixin"]

_AVAILABILITY = "<c:calendar-availability/>"


class HoursMixin(DiscoveryMixin):
    """`working_hours_many`: the availability of each link's calendar, or of its owner's inbox."""

    def working_hours_many(self, calendars: Sequence[str], now: datetime) -> list[CalendarHours | None | Exception]:
        return list(self._map(lambda calendar: self._hours_or_error(calendar, now), calendars))

    def _hours_or_error(self, calendar: str, now: datetime) -> CalendarHours | None | Exception:
        try:
            collection = self._collection(calendar)
            data = self._availability(collection) or self._inbox_availability()
            return None if data is None else hours_from_availability(data.encode(), now, limits=self.limits)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, link by link
            return exc

    def _availability(self, url: str) -> str | None:
        """The property's text at ``url``, None when the server keeps none there."""
        try:
            answer = self._request("PROPFIND", url, body=_PROPFIND.format(_AVAILABILITY),
                                   headers={"Content-Type": XML_TYPE, "Depth": "0"},
                                   what="reading calendar-availability")
        except (NotFound, OffOrigin):
            raise
        except ConnectorError:  # a server that refuses the PROPFIND itself (400, 405 ...) keeps none
            return None
        for response in answer.xml().iterfind("d:response", NS):
            element = _found(response, "c:calendar-availability")
            if element is not None and (element.text or "").strip():
                return str(element.text)
        return None

    def _inbox_availability(self) -> str | None:
        principal = self._href_property(self.url, "<d:current-user-principal/>", "d:current-user-principal/d:href",
                                        "finding the principal")
        if principal is None:
            return None
        inbox = self._href_property(principal, "<c:schedule-inbox-URL/>", "c:schedule-inbox-URL/d:href",
                                    "finding the scheduling inbox")
        return None if inbox is None else self._availability(inbox)
