"""Listing calendars: full and incremental listings with sync tokens, many calendars at once
in batch requests, the cursor, and the change set they make.

Reading
-------
OOO is ``eventType == "outOfOffice"``. A full listing pages through every event of the
calendar and keeps ``nextSyncToken``; later listings send only the ``syncToken`` (Google
refuses ``timeMin``/``timeMax``/``q``/``privateExtendedProperty`` with it). ``eventTypes``
narrows both; if Google refuses it together with a sync token, the connector lists
everything and filters itself from then on. A ``410`` means the token expired: the caller
lists again from scratch.

Recurring series are expanded by `connectors.google.series`. An incremental listing shows
only what changed in a series, so the whole series is read again. The cursor remembers the
occurrences of each series it reported, so an occurrence that disappears is reported
removed, and the series are expanded again when the window moves.

Scale
-----
`changes_many` lists many calendars in ``multipart/mixed`` batches from a small worker
pool; every request (a batch part counts as one) first takes a token from the project's
and the user's budget (`connectors.quota.Quota`), and carries ``quotaUser``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from googleapiclient.http import HttpRequest

from connectors.cursor import dump_cursor, load_cursor, window_key
from connectors.google.client import ClientMixin, event_segment, translate
from connectors.google.mapping import OOO, is_ooo, remote_event, split_instance_id
from connectors.google.series import Series, expand_series
from syncd.core.calendars import ChangeSet, PollRequest
from syncd.core.errors import BadEventData, ConnectorError, CursorExpired, NotFound, SyncdError, TransientError
from syncd.core.time import format_utc

__all__ = ["MAX_PAGES", "PAGE_SIZE", "ListingMixin"]

log = logging.getLogger(__name__)

PAGE_SIZE = 2500  # the most events.list returns per page
MAX_PAGES = 200  # 500,000 events: a calendar bigger than that is not a person's


@dataclass(slots=True)
class _Cursor:
    token: str | None = None
    filtered: bool = True  # the token came from a listing with eventTypes=outOfOffice
    window: str = ""  # the window the series below were expanded in
    series: dict[str, list[str]] = field(default_factory=dict)  # master id -> instants reported
    # OOO events beyond the window's end when listed: reported once the window reaches them
    later: dict[str, str] = field(default_factory=dict)  # event id -> start (UTC, ISO)

    def dump(self) -> str:
        return dump_cursor({"t": self.token, "f": int(self.filtered), "w": self.window, "s": self.series,
                            "l": self.later})

    @classmethod
    def load(cls, text: str) -> _Cursor:
        def read(raw: dict[str, Any]) -> _Cursor:
            if not isinstance(raw["t"], str):
                raise ValueError("no token")
            series = {str(k): [str(i) for i in v] for k, v in raw["s"].items()}
            later = {str(k): str(v) for k, v in raw.get("l", {}).items()}
            return cls(raw["t"], bool(raw["f"]), str(raw["w"]), series, later)
        return load_cursor(text, "google", read)


@dataclass
class _Listing:
    """One calendar's listing in progress (first page possibly fetched in a batch)."""

    request: PollRequest
    owner: str
    calendar_id: str
    cursor: _Cursor | None  # None: full listing
    filtered: bool
    items: list[dict[str, Any]] = field(default_factory=list)
    page_token: str | None = None
    next_token: str | None = None
    done: bool = False


class ListingMixin(ClientMixin):
    """`changes_many`: sync-token listings of many calendars, first pages batched."""

    def changes_many(self, requests: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        results: list[ChangeSet | Exception | None] = [None] * len(requests)
        listings: list[tuple[int, _Listing]] = []
        for i, request in enumerate(requests):
            try:
                listings.append((i, self._start(request)))
            except SyncdError as exc:
                results[i] = exc
        # Tokens first, from the pool: a cold start signs in thousands of users, one HTTP call each.
        # Users whose token is still valid need no call, and no task on the pool either.
        owners = sorted({listing.owner for _, listing in listings if not self._signed_in(listing.owner)})
        failed_owners = {owner: error for owner, error in zip(owners, self._map(self._warm, owners), strict=True)
                         if error is not None}
        for i, listing in listings:
            if listing.owner in failed_owners:
                results[i] = failed_owners[listing.owner]
        listings = [(i, listing) for i, listing in listings if results[i] is None]
        # First pages of every calendar, many to a batch request; the rest per calendar.
        batches = [listings[k:k + self.options.batch_size] for k in range(0, len(listings), self.options.batch_size)]
        for done in self._map(self._first_pages, batches):
            for i, outcome in done:
                results[i] = outcome
        pending = [(i, listing) for i, listing in listings if results[i] is None]
        for i, outcome in zip([i for i, _ in pending], self._map(self._finish, [lst for _, lst in pending]),
                              strict=True):
            results[i] = outcome
        return [r if r is not None else TransientError("google: listing did not finish") for r in results]

    def _warm(self, owner: str) -> SyncdError | None:
        try:
            self._token(owner)
            return None
        except SyncdError as exc:
            return exc

    def _start(self, request: PollRequest) -> _Listing:
        owner, calendar_id = self._split(request.calendar)
        self._zones[request.calendar] = request.window.timezone
        state = _Cursor.load(request.cursor) if request.cursor is not None else None
        if state is not None and state.series and state.window != window_key(request.window):
            state = None  # the window moved: expand every series again, from a full listing
        filtered = state.filtered if state is not None else self._filter_types
        return _Listing(request, owner, calendar_id, state, filtered)

    # -- pages -----------------------------------------------------------------------------------
    def _list_request(self, listing: _Listing) -> HttpRequest:
        params: dict[str, Any] = {"calendarId": listing.calendar_id, "maxResults": PAGE_SIZE,
                                  "quotaUser": listing.owner}
        if listing.cursor is not None:
            params["syncToken"] = listing.cursor.token
        if listing.filtered:
            params["eventTypes"] = [OOO]
        if listing.page_token:
            params["pageToken"] = listing.page_token
        return self._events.list(**params)

    def _first_pages(self, batch: Sequence[tuple[int, _Listing]]) -> list[tuple[int, ChangeSet | Exception]]:
        """One batch request carrying the first page of each listing; results for those that
        are complete or failed (the rest continue in `_finish`)."""
        out: list[tuple[int, ChangeSet | Exception]] = []
        if self.options.batch_size <= 1 or len(batch) == 1:
            return out  # nothing to gain: `_finish` lists them one by one
        todo: list[tuple[int, _Listing, HttpRequest]] = []
        for i, listing in batch:
            try:
                self.quota.acquire(listing.owner)
                todo.append((i, listing, self._authorised(self._list_request(listing), listing.owner)))
            except SyncdError as exc:
                out.append((i, exc))
        if not todo:
            return out
        answers = self._execute_batch([(str(i), request) for i, _listing, request in todo])
        if isinstance(answers, SyncdError):
            return out + [(i, answers) for i, _, _ in todo]
        for i, listing, _request in todo:
            response, error = answers.get(str(i), (None, None))
            if error is not None:
                if int(error.resp.status) in (401, 400):
                    continue  # retried alone: a fresh token / without eventTypes (see `_page`)
                out.append((i, translate(error, f"listing {listing.request.calendar}")))
                continue
            if response is None:
                continue  # no answer for this part: list it alone
            self._take_page(listing, response)
        return out

    def _finish(self, listing: _Listing) -> ChangeSet | Exception:
        try:
            pages = 0
            while not listing.done:
                pages += 1
                if pages > MAX_PAGES:
                    raise BadEventData(f"google: {listing.request.calendar} has more than "
                                       f"{MAX_PAGES * PAGE_SIZE} events; not listed")
                self._take_page(listing, self._page(listing))
            return self._change_set(listing)
        except SyncdError as exc:
            return exc

    def _page(self, listing: _Listing) -> dict[str, Any]:
        try:
            return self._execute(lambda: self._list_request(listing), listing.owner,
                                 f"listing {listing.request.calendar}")
        except ConnectorError as exc:
            refused = "HTTP 400" in str(exc) and listing.filtered and listing.cursor is not None
            if not refused:
                raise
        # Google refused eventTypes with a sync token: list everything and filter here.
        log.warning("google: %s: eventTypes refused with a sync token; filtering out-of-office events locally",
                    listing.request.calendar)
        self._filter_types = False
        raise CursorExpired("google: eventTypes refused with a sync token; listing again without it")

    def _take_page(self, listing: _Listing, page: Mapping[str, Any]) -> None:
        listing.items.extend(item for item in page.get("items") or () if isinstance(item, dict))
        listing.page_token = page.get("nextPageToken")
        if listing.page_token is None:
            listing.next_token = page.get("nextSyncToken")
            listing.done = True

    # -- the change set --------------------------------------------------------------------------
    def _change_set(self, listing: _Listing) -> ChangeSet:
        window = listing.request.window
        full = listing.cursor is None
        previous = {} if full or listing.cursor is None else listing.cursor.series
        later = {} if full or listing.cursor is None else dict(listing.cursor.later)
        out = ChangeSet(full=full)
        series = self._sort_items(listing, out, previous, later)
        self._arrivals(listing, out, later)
        reported = self._series_changes(listing, out, series, previous)
        cursor = _Cursor(listing.next_token, listing.filtered, window_key(window), reported, later)
        out.cursor = cursor.dump() if listing.next_token else None
        if out.cursor is None:
            raise TransientError(f"google: {listing.request.calendar}: listing ended without a sync token; will retry")
        return out

    def _sort_items(self, listing: _Listing, out: ChangeSet, previous: Mapping[str, list[str]],
                    later: dict[str, str]) -> dict[str, Series]:
        """The listed series (masters and exceptions, by master id), to be expanded; single
        events go into ``out`` (or ``later``, when beyond the window)."""
        series: dict[str, Series] = {}
        for item in listing.items:
            event_id = str(item.get("id") or "")
            if not event_id:
                continue
            cancelled = item.get("status") == "cancelled"
            instance_of = item.get("recurringEventId") or (cancelled and split_instance_id(event_id)[1]
                                                          and split_instance_id(event_id)[0])
            if item.get("recurrence") or (cancelled and event_id in previous):
                entry = series.setdefault(event_id, Series())
                entry.master, entry.gone = item, cancelled
                continue
            if instance_of:
                if item.get("eventType", OOO) != OOO and str(instance_of) not in previous:
                    continue  # an instance of somebody's recurring meeting (unfiltered listings)
                series.setdefault(str(instance_of), Series()).exceptions.append(item)
                continue
            self._single(listing, event_id, item, out, later)
        return series

    def _single(self, listing: _Listing, event_id: str, item: dict[str, Any], out: ChangeSet,
                later: dict[str, str]) -> None:
        """A listed event that is not part of a series, into ``out`` or ``later``."""
        window = listing.request.window
        full = listing.cursor is None
        later.pop(event_id, None)  # listed now: reported (or removed) below
        if item.get("status") == "cancelled":
            if not full:
                out.removed.append(event_id)
            return
        if not is_ooo(item):
            return
        try:
            event = remote_event(item, window.timezone)
        except (BadEventData, ValueError, SyncdError) as exc:
            log.warning("google: %s: event %s skipped: %s", listing.request.calendar, event_id, exc)
            return
        if full and event.content.end <= window.start:
            return  # long over
        if full and event.content.start >= window.end:
            later[event.event_id] = format_utc(event.content.start) or ""
            return
        # An incremental listing reports every change, also one moved outside the window:
        # a block follows its event wherever it goes.
        out.events.append(event)

    def _arrivals(self, listing: _Listing, out: ChangeSet, later: dict[str, str]) -> None:
        """Events once beyond the window that it has now reached: read and reported."""
        for event_id, start in sorted(later.items()):
            if datetime.fromisoformat(start) < listing.request.window.end:  # the window has reached it
                del later[event_id]
                arrived = self.get(listing.request.calendar, event_id)
                if arrived is not None:
                    out.events.append(arrived)

    # -- recurring series ------------------------------------------------------------------------
    def _series_changes(self, listing: _Listing, out: ChangeSet, series: Mapping[str, Series],
                        previous: Mapping[str, list[str]]) -> dict[str, list[str]]:
        """Each listed series' occurrences into ``out``, and those no longer there as removed;
        the instants reported per series, for the cursor."""
        full = listing.cursor is None
        reported: dict[str, list[str]] = dict(previous)
        for master_id, entry in series.items():
            if not full:
                entry = self._whole_series(listing, master_id, entry)
            occurrences = expand_series(entry, listing.request.window, self.limits)
            out.events.extend(occurrences)
            now_ids = [split_instance_id(e.event_id)[1] or "" for e in occurrences]
            gone = set(previous.get(master_id, ())) - set(now_ids)
            out.removed.extend(f"{master_id}_{instant}" for instant in sorted(gone))
            if occurrences:
                reported[master_id] = now_ids
            else:
                reported.pop(master_id, None)
        return reported

    def _whole_series(self, listing: _Listing, master_id: str, entry: Series) -> Series:
        """An incremental listing shows only what changed in a series: read all of it."""
        if entry.gone:
            return entry
        master = entry.master
        if master is None or not master.get("iCalUID"):
            event_segment(master_id)  # from the listing: Google's own ids are never "." or ".."
            try:
                master = self._execute(lambda: self._events.get(
                    calendarId=listing.calendar_id, eventId=master_id, quotaUser=listing.owner),
                    listing.owner, f"reading series {master_id}")
            except NotFound:
                return Series(gone=True)
        if master.get("status") == "cancelled":
            return Series(gone=True)
        whole = Series()
        for item in self._series_items(listing, master_id, master["iCalUID"]):
            if str(item.get("id")) == master_id:
                whole.master = item
                whole.gone = item.get("status") == "cancelled"
            elif item.get("recurringEventId") == master_id:
                whole.exceptions.append(item)
        if whole.master is None:
            whole.master = master
        return whole

    def _series_items(self, listing: _Listing, master_id: str, ical_uid: str) -> list[dict[str, Any]]:
        """Every event of a series (its master, exceptions and cancelled instances)."""
        params: dict[str, Any] = {"calendarId": listing.calendar_id, "iCalUID": ical_uid,
                                  "showDeleted": True, "maxResults": PAGE_SIZE, "quotaUser": listing.owner}
        items: list[dict[str, Any]] = []
        page_token: str | None = None
        for _ in range(MAX_PAGES):
            query = {**params, **({"pageToken": page_token} if page_token else {})}
            page = self._execute(lambda q=query: self._events.list(**q),  # type: ignore[misc]
                                 listing.owner, f"reading series {master_id}")
            items.extend(i for i in page.get("items") or () if isinstance(i, dict))
            page_token = page.get("nextPageToken")
            if not page_token:
                break
        return items
