"""One calendar object: where it lives (its href), reading it and its ETag, and what it
means.

The objects are read with the same iCalendar code as the ``local`` connector
(``connectors.ical``): OOO by ``X-MICROSOFT-CDO-BUSYSTATUS:OOF`` or the operator's rules,
recurring series expanded client-side inside the window (server-side ``expand`` shifts
occurrences after a DST change by an hour on Radicale), overrides, EXDATE, RDATE and
cancelled instances honoured. One broken object is skipped with one log line per version
of it (not one per poll); every other object still syncs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlsplit

from connectors import ical
from connectors.caldav.client import NS, XML_TYPE, ClientMixin, etag_of
from syncd.core.calendars import SyncWindow
from syncd.core.errors import BadEventData, NotFound

__all__ = ["ObjectsMixin", "stem"]

log = logging.getLogger(__name__)


def stem(href: str) -> str:
    """The last segment of ``href`` without ``.ics``: an object's fallback UID, a calendar's name."""
    name = unquote(href.rstrip("/").rsplit("/", 1)[-1])
    return name[: -len(".ics")] if name.endswith(".ics") else name


class ObjectsMixin(ClientMixin):
    """Single objects: GET, their ETag, parsing them, reporting bad ones once."""

    def _absolute(self, collection: str, href: str) -> str:
        """The URL of ``href`` (from a listing, or a cursor); `OffOrigin` off the account's server."""
        return self._resolve(collection, href, f"object {href[:200]!r}")

    @staticmethod
    def _own_href(collection: str, uid: str) -> str:
        """Where syncd writes the object of UID ``uid`` (``syncd-<block id>.ics``)."""
        path = urlsplit(collection).path
        return f"{path}{quote(uid, safe='@')}.ics"

    def _get_object(self, href: str) -> tuple[bytes, str] | None:
        """The object's bytes and ETag; None if it is gone."""
        try:
            answer = self._request("GET", href, what=f"reading {href}", ok=(200,))
        except NotFound:
            return None
        etag = etag_of(answer.headers)
        if etag is None:  # some servers leave it out: ask for it
            etag = self._etags_of([href]).get(href, "")
        return answer.body, etag

    def _etags_of(self, hrefs: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for href in hrefs:
            body = ('<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:">'
                    '<d:prop><d:getetag/></d:prop></d:propfind>')
            try:
                answer = self._request("PROPFIND", href, body=body, what=f"reading the ETag of {href}",
                                       headers={"Content-Type": XML_TYPE, "Depth": "0"})
            except NotFound:
                continue
            etag = answer.xml().findtext(".//d:getetag", namespaces=NS)
            if etag:
                found[href] = etag
        return found

    def _parse(self, collection: str, href: str, data: bytes, etag: str, window: SyncWindow,
               only_uid: str | None = None) -> ical.ParsedObject | None:
        """The object's OOO events in ``window``; None if it does not parse (logged once)."""
        try:
            parsed = ical.parse_ooo_events(data, window, self.rules, etag=etag, fallback_uid=stem(href),
                                           limits=self.limits, only_uid=only_uid)
        except BadEventData as exc:
            self._report(collection, href, etag, f"skipped: {exc}")
            return None
        for problem in parsed.problems:
            self._report(collection, href, etag, problem)
        return parsed

    def _report(self, collection: str, href: str, etag: str, problem: str) -> None:
        """One log line per object version, not one per poll."""
        key = (collection, href)
        with self._lock:
            if self._reported.get(key) == etag + problem:
                return
            self._reported[key] = etag + problem
        log.warning("caldav: %s: %s", href, problem)
