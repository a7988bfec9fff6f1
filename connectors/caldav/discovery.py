"""Which collection a link's calendar is.

A link's calendar is the collection's URL, or its path on the account's server, either under
the path of the account's ``url`` (`targets.collection_url`; anything else is refused); or a
calendar's display name (or the last segment of its URL), found once through the account's
principal (``current-user-principal``) and calendar home set (``calendar-home-set``), with one
PROPFIND each and one to list the home set. Every href on the way must stay on the account's
server (`ClientMixin._resolve`): a principal, home set or calendar elsewhere fails the link.
What was found is kept for the connector's lifetime.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from connectors.caldav.client import NS, XML_TYPE, ClientMixin, OffOrigin
from connectors.caldav.objects import stem
from connectors.caldav.targets import Refused, collection_url
from syncd.core.errors import ConfigError, ConnectorError, TransientError
from syncd.core.text import redact_url

__all__ = ["DiscoveryMixin"]

_PROPFIND = ('<?xml version="1.0" encoding="utf-8"?>'
             '<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>{}</d:prop></d:propfind>')


def _found(response: Any, path: str) -> Any:
    """The element at ``path`` inside a response's successful propstat, if any."""
    for propstat in response.iterfind("d:propstat", NS):
        status = propstat.findtext("d:status", namespaces=NS) or " 200"
        if " 2" in status:
            element = propstat.find(f"d:prop/{path}", NS)
            if element is not None:
                return element
    return None


class DiscoveryMixin(ClientMixin):
    """Link calendar -> collection URL."""

    def _collection(self, calendar: str) -> str:
        with self._lock:
            known = self._collections.get(calendar)
        if known is not None:
            return known
        try:
            found = collection_url(self.url, calendar)
        except Refused as exc:  # a link stored before the config check refused such calendars
            raise ConfigError(f"caldav: calendar {calendar[:200]!r}: {exc}") from None
        if found is None:
            found = self._discover(calendar)
        with self._lock:
            self._collections[calendar] = found
        return found

    def _href_property(self, url: str, prop: str, path: str, what: str) -> str | None:
        """The href a PROPFIND of ``url`` answers for ``prop``, made absolute (on the account's server)."""
        answer = self._request("PROPFIND", url, body=_PROPFIND.format(prop), what=what,
                               headers={"Content-Type": XML_TYPE, "Depth": "0"})
        for response in answer.xml().iterfind("d:response", NS):
            element = _found(response, path)
            href = (element.text or "").strip() if element is not None else ""
            if href:
                if "@" in href and "://" not in href:
                    href = quote(href)  # ownCloud answers /remote.php/dav/calendars/alice@example.com/
                return self._resolve(url, href, what)
        return None

    def _discover(self, name: str) -> str:
        """A calendar by display name (or URL segment), through principal -> calendar home set."""
        try:
            principal = self._href_property(self.url, "<d:current-user-principal/>",
                                            "d:current-user-principal/d:href", "finding the principal") or self.url
            home = self._href_property(principal, "<c:calendar-home-set/>", "c:calendar-home-set/d:href",
                                       "finding the calendar home set") or principal
            home = home if home.endswith("/") else home + "/"
            answer = self._request("PROPFIND", home, body=_PROPFIND.format("<d:resourcetype/><d:displayname/>"),
                                   what="listing the calendars", headers={"Content-Type": XML_TYPE, "Depth": "1"})
            calendars: list[tuple[str, str]] = []  # (URL, display name)
            for response in answer.xml().iterfind("d:response", NS):
                url = self._resolve(home, response.findtext("d:href", namespaces=NS) or "", "listing the calendars")
                url = url if url.endswith("/") else url + "/"
                kind = _found(response, "d:resourcetype")
                if url == home or kind is None or kind.find("c:calendar", NS) is None:
                    continue
                display = _found(response, "d:displayname")
                calendars.append((url, " ".join((display.text or "").split()) if display is not None else ""))
        except OffOrigin:
            raise
        except ConnectorError as exc:  # the principal or home set is not where the server said
            raise TransientError(f"caldav: finding calendar {name!r} on {redact_url(self.url)} failed: {exc}") from exc
        names = []
        for url, display in calendars:
            segment = stem(url)
            names.append(display or segment)
            if name.lower() in (display.lower(), segment.lower()):
                return url
        raise ConfigError(f"caldav: no calendar named {name!r} at {redact_url(self.url)} "
                          f"(found: {', '.join(names) or 'none'})")
