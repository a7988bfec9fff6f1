"""Listing changes: ``calendarView/delta`` with ``$batch`` (`changes_many`), and the cursor.

Reading
-------
OOO is ``showAs == "oof"``. Changes come from ``calendarView/delta`` over the sync window,
following ``@odata.nextLink`` to ``@odata.deltaLink``, which is the cursor. A delta round is
bound to the span it started with, so the span asked for is the window widened to whole weeks:
a new round (a full listing) starts once a week, not every day. Delta items never carry
extended properties, so our events are recognised through syncd's stored links. ``@removed``
items and events that stop being OOO are removals, but Graph also reports an event *moved*
out of the span as ``@removed``; the connector therefore only reports ids it listed before, and
reads each of them once more to tell a move from a deletion. An expired
cursor (``410``, ``syncStateNotFound``, ``resyncRequired``) means a full listing. Recurring
series arrive as their occurrences and exceptions, each with its own id.

Scale
-----
With app-only sign-in, the first delta page of many mailboxes goes in JSON ``$batch``
requests (20 each); a request throttled inside a batch is retried alone. At most 4 requests
run against one mailbox at once, as Exchange Online allows (`connectors.outlook.client`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from connectors.cursor import dump_cursor, load_cursor
from connectors.outlook.client import translate
from connectors.outlook.mapping import is_ooo, remote_event
from connectors.outlook.options import MAX_BATCH
from connectors.outlook.replies import AUTOMATIC_REPLIES, RepliesPart
from syncd.core.calendars import ChangeSet, PollRequest, SyncWindow
from syncd.core.errors import BadEventData, RateLimited, SyncdError, TransientError
from syncd.core.time import format_utc

__all__ = ["MAX_PAGES", "SHORT_RETRY", "ListingPart"]

log = logging.getLogger(__name__)

MAX_PAGES = 500
SHORT_RETRY = 2.0  # seconds: a throttled batch part waiting no longer than this is retried in the same pass


# -- cursors ---------------------------------------------------------------------------------


def _span(window: SyncWindow) -> tuple[datetime, datetime]:
    """The window widened to whole weeks (Monday 00:00 UTC), so a delta round lasts a week."""
    start = window.start.astimezone(UTC)
    first = datetime.combine(start.date() - timedelta(days=start.weekday()), datetime.min.time(), tzinfo=UTC)
    end = window.end.astimezone(UTC)
    last = datetime.combine(end.date() + timedelta(days=7 - end.weekday()), datetime.min.time(), tzinfo=UTC)
    return first, last


@dataclass(slots=True)
class _Cursor:
    delta: str
    span: str  # the span the round started with, and the zone asked for
    known: list[str] = field(default_factory=list)  # OOO event ids reported so far
    replies: str | None = None  # fingerprint of the automatic replies reported, if any

    def dump(self) -> str:
        return dump_cursor({"d": self.delta, "s": self.span, "k": self.known, "a": self.replies})

    @classmethod
    def load(cls, text: str) -> _Cursor:
        def read(raw: dict[str, Any]) -> _Cursor:
            if not isinstance(raw["d"], str):
                raise ValueError("no delta link")
            return cls(raw["d"], str(raw["s"]), [str(i) for i in raw["k"]], raw.get("a"))
        return load_cursor(text, "outlook", read)


def _span_key(window: SyncWindow) -> str:
    first, last = _span(window)
    return f"{first.date()}/{last.date()}/{window.timezone}"


@dataclass
class _Listing:
    """One calendar's delta round in progress: where it is, and what it has read so far."""

    request: PollRequest
    owner: str
    calendar_id: str
    cursor: _Cursor | None
    next_url: str
    items: list[dict[str, Any]] = field(default_factory=list)
    delta: str | None = None
    pages: int = 0


class ListingPart(RepliesPart):
    """`changes_many`: first pages in batches, the rest alone, each calendar's change set and cursor."""

    def changes_many(self, requests_: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        results: list[ChangeSet | Exception | None] = [None] * len(requests_)
        listings: list[tuple[int, _Listing]] = []
        for i, request in enumerate(requests_):
            try:
                listings.append((i, self._start(request)))
            except SyncdError as exc:
                results[i] = exc
        if self.options.auth == "app" and self.options.batch_size > 1 and len(listings) > 1:
            size = min(self.options.batch_size, MAX_BATCH)
            batches = [listings[k:k + size] for k in range(0, len(listings), size)]
            for done in self._map(self._first_pages, batches):
                for i, outcome in done:
                    results[i] = outcome
        pending = [(i, listing) for i, listing in listings if results[i] is None]
        for (i, _), outcome in zip(pending, self._map(self._finish, [lst for _, lst in pending]), strict=True):
            results[i] = outcome
        return [r if r is not None else TransientError("outlook: listing did not finish") for r in results]

    def _view_path(self, owner: str, calendar_id: str) -> str:
        return f"{self._calendar_path(owner, calendar_id)}/calendarView/delta"  # each id one segment

    def _start(self, request: PollRequest) -> _Listing:
        owner, calendar_id = self._split(request.calendar)
        self._zones[request.calendar] = request.window.timezone
        state = _Cursor.load(request.cursor) if request.cursor is not None else None
        if state is not None and state.span != _span_key(request.window):
            state = None  # a new week: a new delta round over the moved span
        if state is not None:
            return _Listing(request, owner, calendar_id, state, state.delta)
        first, last = _span(request.window)
        query = urlencode({"startDateTime": format_utc(first), "endDateTime": format_utc(last)})
        return _Listing(request, owner, calendar_id, None, f"{self._view_path(owner, calendar_id)}?{query}")

    def _relative(self, url: str) -> str:
        """Graph's next and delta links are absolute; $batch wants them relative to the version."""
        if url.startswith(self.graph):
            return url[len(self.graph):]
        parts = urlsplit(url)
        if parts.scheme:
            version = urlsplit(self.graph).path
            path = parts.path[len(version):] if parts.path.startswith(version) else parts.path
            return f"{path}?{parts.query}" if parts.query else path
        return url

    def _first_pages(self, batch: Sequence[tuple[int, _Listing]]) -> list[tuple[int, ChangeSet | Exception]]:
        """The first page of each listing in ``batch``, in one ``$batch`` request; parts throttled
        briefly are sent again (up to three passes). Returns the listings that failed for good;
        the others go on in `_finish`."""
        out: list[tuple[int, ChangeSet | Exception]] = []
        todo = {str(i): listing for i, listing in batch}
        for _attempt in range(3):
            if not todo:
                break
            body = {"requests": [{"id": key, "method": "GET", "url": self._relative(listing.next_url),
                                  "headers": {"Prefer": self._prefer(listing.request.window.timezone, page=True)}}
                                 for key, listing in todo.items()]}
            try:
                answer = self._call("POST", "/$batch", json_body=body, what="a batch of delta listings")
            except SyncdError as exc:
                return out + [(int(key), exc) for key in todo]
            wait = 0.0
            retry: dict[str, _Listing] = {}
            for part in answer.body.get("responses") or ():
                key = str(part.get("id"))
                listing = todo.get(key)
                if listing is None:
                    continue
                status = int(part.get("status") or 0)
                headers = part.get("headers") or {}
                if status == 200:
                    self._take_page(listing, part.get("body") or {})
                    continue
                failure = translate(status, part.get("body"), headers, f"listing {listing.request.calendar}")
                if (status == 429 and isinstance(failure, RateLimited) and failure.retry_after is not None
                        and failure.retry_after <= SHORT_RETRY):
                    retry[key] = listing  # throttled alone, briefly: only this request is sent again
                    wait = max(wait, failure.retry_after)
                elif status == 401:
                    continue  # `_finish` asks alone, with a fresh token
                else:
                    out.append((int(key), failure))
            todo = retry
            if todo:
                time.sleep(wait)
        return out  # what is still in `todo` after three tries is asked again alone in `_finish`

    def _finish(self, listing: _Listing) -> ChangeSet | Exception:
        try:
            while listing.delta is None:
                listing.pages += 1
                if listing.pages > MAX_PAGES:
                    raise BadEventData(f"outlook: {listing.request.calendar}: more than {MAX_PAGES} delta pages")
                answer = self._call("GET", listing.next_url, owner=listing.owner,
                                    headers={"Prefer": self._prefer(listing.request.window.timezone, page=True)},
                                    what=f"listing {listing.request.calendar}")
                self._take_page(listing, answer.body)
            return self._change_set(listing)
        except SyncdError as exc:
            return exc

    def _take_page(self, listing: _Listing, page: Mapping[str, Any]) -> None:
        listing.items.extend(i for i in page.get("value") or () if isinstance(i, dict))
        if page.get("@odata.deltaLink"):
            listing.delta = str(page["@odata.deltaLink"])
        elif page.get("@odata.nextLink"):
            listing.next_url = str(page["@odata.nextLink"])
        else:
            raise TransientError(f"outlook: {listing.request.calendar}: a delta page with neither a next nor "
                                 "a delta link; will retry")

    def _change_set(self, listing: _Listing) -> ChangeSet:
        window = listing.request.window
        tz_name = window.timezone
        full = listing.cursor is None
        known = set() if full or listing.cursor is None else set(listing.cursor.known)
        out = ChangeSet(full=full)
        gone: list[str] = []
        for item in listing.items:
            event_id = str(item.get("id") or "")
            if not event_id:
                continue
            if not is_ooo(item):
                if event_id in known:
                    gone.append(event_id)  # deleted, moved out of the span, or no longer OOO
                continue
            try:
                event = remote_event(item, tz_name)
            except (BadEventData, ValueError, SyncdError) as exc:
                log.warning("outlook: %s: event %s skipped: %s", listing.request.calendar, event_id, exc)
                continue
            if full and not window.overlaps(event.content.start, event.content.end):
                continue
            out.events.append(event)
        # Graph reports an event moved out of the span as removed: read each before believing it.
        for event_id, still in zip(gone, [self.get(listing.request.calendar, e) for e in gone], strict=True):
            if still is None:
                out.removed.append(event_id)
            else:
                out.events.append(still)
        reported = (known - set(out.removed)) | {e.event_id for e in out.events}
        replies: str | None = listing.cursor.replies if listing.cursor is not None else None
        if self.options.automatic_replies:
            replies = self._replies_changes(listing.owner, tz_name, out, replies)
        cursor = _Cursor(listing.delta or "", _span_key(window), sorted(reported - {AUTOMATIC_REPLIES}), replies)
        out.cursor = cursor.dump()
        return out
