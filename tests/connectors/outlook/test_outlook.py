"""The Outlook connector against the fake Microsoft Graph, through msal and requests over TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests

from connectors.outlook.connector import (
    AUTOMATIC_REPLIES,
    BLOCK_PROPERTY,
    OutlookConnector,
    event_content,
    replies_content,
    transaction_id,
)
from connectors.outlook.options import OutlookOptions
from syncd.core.calendars import EventDraft, PollRequest, SyncWindow
from syncd.core.errors import AuthError, CursorExpired, RateLimited, TransientError
from syncd.core.ooo import OooContent, all_day_content, timed_content
from tests.connectors.contract import TZ, ConnectorContract, all_day, timed
from tests.connectors.outlook.support import ALICE, OutlookPerson, connector_for, options_for
from tests.fakes.graph import FakeGraph


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGraph]:
    with FakeGraph() as server:
        yield server


@pytest.fixture
def mailbox(fake: FakeGraph, request: pytest.FixtureRequest) -> str:
    """A fresh mailbox per test (the server is shared by the module: TLS setup is not free)."""
    return f"u{abs(hash(request.node.nodeid)) % 10**10}@contoso.com"


@pytest.fixture
def connector(fake: FakeGraph) -> Iterator[OutlookConnector]:
    connector = connector_for(fake)
    yield connector
    connector.close()


@pytest.fixture
def calendar(connector: OutlookConnector, mailbox: str) -> str:
    return connector.address(mailbox, "primary")


@pytest.fixture
def person(fake: FakeGraph, mailbox: str) -> OutlookPerson:
    return OutlookPerson(fake, mailbox, TZ)


@pytest.fixture
def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


class TestOutlookConnectorContract(ConnectorContract):
    """Fixtures above: the module's fake Graph, connector, calendar and person."""

    LISTS_BLOCK_IDS = False  # delta never returns extended properties

    def linked_as(self, calendar: str) -> tuple[str, str]:
        owner, _, calendar_id = calendar.partition("/")  # the calendar of `address(owner, calendar_id)`
        return owner, calendar_id



def draft(block_id: str, content: OooContent) -> EventDraft:
    return EventDraft(block_id, content, TZ)


# -- reading ------------------------------------------------------------------------------------


def test_event_content_reads_graph_times() -> None:
    timed_event = {"subject": "Dentist", "start": {"dateTime": "2026-12-21T09:17:00.0000000", "timeZone": "UTC"},
                   "end": {"dateTime": "2026-12-21T11:00:00.0000000", "timeZone": "UTC"}}
    assert event_content(timed_event, TZ) == timed_content(datetime(2026, 12, 21, 9, 17, tzinfo=UTC),
                                                            datetime(2026, 12, 21, 11, tzinfo=UTC), "Dentist")
    windows_zone = {"start": {"dateTime": "2026-12-21T10:00:00", "timeZone": "W. Europe Standard Time"},
                    "end": {"dateTime": "2026-12-21T12:00:00", "timeZone": "W. Europe Standard Time"}}
    assert event_content(windows_zone, TZ).start == datetime(2026, 12, 21, 9, tzinfo=UTC)
    all_day_event = {"isAllDay": True, "subject": "Holiday",
                     "start": {"dateTime": "2026-12-24T00:00:00.0000000", "timeZone": TZ},
                     "end": {"dateTime": "2026-12-27T00:00:00.0000000", "timeZone": TZ}}
    assert event_content(all_day_event, TZ) == all_day_content(date(2026, 12, 24), date(2026, 12, 27), TZ, "Holiday")


def test_incremental_listing_and_expired_delta_links(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                                     person: OutlookPerson, mailbox: str, window: SyncWindow) -> None:
    person.add(timed(3))
    first = connector.changes(calendar, None, window)
    fake.expire_delta_tokens(mailbox)
    with pytest.raises(CursorExpired):
        connector.changes(calendar, first.cursor, window)
    again = connector.changes(calendar, None, window)
    fake.expire_delta_tokens(mailbox, code="syncStateNotFound")
    with pytest.raises(CursorExpired):
        connector.changes(calendar, again.cursor, window)


def test_removals_of_events_never_listed_are_not_reported(connector: OutlookConnector, calendar: str,
                                                          person: OutlookPerson, window: SyncWindow) -> None:
    meeting = person.add(timed(3), ooo=False)
    far = person.add(timed(500))
    first = connector.changes(calendar, None, window)
    person.remove(meeting)
    person.remove(far)
    changes = connector.changes(calendar, first.cursor, window)
    assert changes.removed == [] and changes.events == []


def test_a_new_week_starts_a_new_delta_round(connector: OutlookConnector, calendar: str, person: OutlookPerson,
                                             window: SyncWindow) -> None:
    trip = person.add(timed(3))
    first = connector.changes(calendar, None, window)
    same_week = connector.changes(calendar, first.cursor, window)
    assert not same_week.full
    later = SyncWindow(window.start + timedelta(days=8), window.end + timedelta(days=8), TZ)
    moved = connector.changes(calendar, same_week.cursor, later)
    assert moved.full and [e.event_id for e in moved.events] == [trip]


def test_recurring_series_occurrences_exceptions_and_cancellations(
        connector: OutlookConnector, calendar: str, fake: FakeGraph, mailbox: str, window: SyncWindow) -> None:
    first_day = (datetime.now(UTC) + timedelta(days=2)).date()
    master = fake.add_event(mailbox, {
        "subject": "Course", "showAs": "oof",
        "start": {"dateTime": f"{first_day}T08:00:00", "timeZone": TZ},
        "end": {"dateTime": f"{first_day}T12:00:00", "timeZone": TZ},
        "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                   "daysOfWeek": [first_day.strftime("%A").lower()]},
                       "range": {"type": "numbered", "startDate": str(first_day), "numberOfOccurrences": 4}}})
    listed = connector.changes(calendar, None, window)
    assert len(listed.events) == 4
    assert {e.series_id for e in listed.events} == {master["id"]}
    occurrences = sorted(listed.events, key=lambda e: e.content.start)
    later = first_day + timedelta(days=8)
    fake.edit_event(mailbox, occurrences[1].event_id, {"start": {"dateTime": f"{later}T09:00:00", "timeZone": TZ},
                                                        "end": {"dateTime": f"{later}T10:00:00", "timeZone": TZ}})
    fake.delete_event(mailbox, occurrences[2].event_id)
    changes = connector.changes(calendar, listed.cursor, window)
    assert changes.removed == [occurrences[2].event_id]
    [moved] = changes.events
    assert moved.event_id == occurrences[1].event_id
    assert moved.content.end - moved.content.start == timedelta(hours=1)


# -- writing ------------------------------------------------------------------------------------


def test_written_events_are_oof_with_our_block_id(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                                  mailbox: str) -> None:
    created = connector.create(calendar, draft("blk-1", all_day(3, 2)))
    [stored] = fake.events(mailbox)
    assert stored["id"] == created.event_id
    assert stored["showAs"] == "oof" and stored["isReminderOn"] is False and stored["isAllDay"] is True
    assert stored["subject"] == "Vacation"
    assert created.content == all_day(3, 2)
    assert connector.find_by_block_id(calendar, "blk-1") == created
    assert transaction_id("blk-1") == transaction_id("blk-1") != transaction_id("blk-2")


def test_create_after_a_crash_finds_the_first_post(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                                   mailbox: str) -> None:
    first = connector.create(calendar, draft("blk-1", timed(3)))
    again = connector.create(calendar, draft("blk-1", timed(3)))  # the link was never saved
    assert again.event_id == first.event_id
    assert len(fake.events(mailbox)) == 1


def test_block_property_is_a_named_string_property() -> None:
    assert BLOCK_PROPERTY.startswith("String {") and BLOCK_PROPERTY.endswith("} Name SyncdBlockId")


# -- errors and auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [(429, "TooManyRequests"), (503, "ServiceUnavailable")])
def test_throttling_carries_retry_after(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                        window: SyncWindow, status: int, code: str) -> None:
    fake.fail_next(1, status, code, retry_after=9)
    with pytest.raises(RateLimited) as caught:
        connector.changes(calendar, None, window)
    assert caught.value.retry_after == 9
    assert connector.changes(calendar, None, window).full


def test_server_errors_are_transient(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                     window: SyncWindow) -> None:
    fake.fail_next(1, 500, "generalException")
    with pytest.raises(TransientError):
        connector.changes(calendar, None, window)


def test_401_gets_one_fresh_token(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                  window: SyncWindow) -> None:
    connector.changes(calendar, None, window)
    fake.invalidate_access_tokens()
    assert connector.changes(calendar, None, window).full
    fake.fail_next(2, 401, "InvalidAuthenticationToken")
    with pytest.raises(AuthError):
        connector.changes(calendar, None, window)


def test_denied_mailbox_fails_alone(connector: OutlookConnector, fake: FakeGraph, window: SyncWindow) -> None:
    fake.block_mailbox("denied@contoso.com")
    results = connector.changes_many([PollRequest(connector.address(u, "primary"), None, window)
                                      for u in ("ok1@contoso.com", "denied@contoso.com", "ok2@contoso.com")])
    assert isinstance(results[1], AuthError)
    assert not isinstance(results[0], Exception) and not isinstance(results[2], Exception)


def test_wrong_client_secret_is_an_auth_error(fake: FakeGraph, window: SyncWindow) -> None:
    connector = OutlookConnector(OutlookOptions(**options_for(fake, client_secret="wrong")))
    try:
        with pytest.raises(AuthError, match="the app cannot sign in"):
            connector.changes(connector.address(ALICE, "primary"), None, window)
    finally:
        connector.close()


class _Tokens:
    def __init__(self) -> None:
        self.tokens: dict[tuple[str, str], str] = {}

    def refresh_token(self, account: str, subject: str) -> str | None:
        return self.tokens.get((account, subject))

    def replace_refresh_token(self, account: str, subject: str, token: str) -> None:
        self.tokens[(account, subject)] = token


def test_delegated_refresh_tokens_are_rotated(fake: FakeGraph, window: SyncWindow) -> None:
    fake.add_refresh_token("rt-bob-1", "bob@contoso.com")
    tokens = _Tokens()
    tokens.tokens[("m365", "bob@contoso.com")] = "rt-bob-1"
    connector = OutlookConnector(OutlookOptions(**options_for(fake, account="m365", auth="delegated")),
                                 refresh_tokens=tokens)
    try:
        calendar = connector.address("bob@contoso.com", "primary")
        assert connector.changes(calendar, None, window).full
        assert tokens.tokens[("m365", "bob@contoso.com")] != "rt-bob-1"  # Entra ID rotated it; kept
        with pytest.raises(AuthError, match="syncd credentials set m365 carol@contoso.com"):
            connector.changes(connector.address("carol@contoso.com", "primary"), None, window)
        fake.revoke_refresh_token(tokens.tokens[("m365", "bob@contoso.com")])
        fake.invalidate_access_tokens()
        connector._user_tokens.clear()  # the cached access token is gone too
        with pytest.raises(AuthError, match="cannot sign in"):
            connector.changes(calendar, None, window)
    finally:
        connector.close()


# -- automatic replies --------------------------------------------------------------------------


def test_scheduled_automatic_replies_are_a_read_only_event(fake: FakeGraph, mailbox: str,
                                                           window: SyncWindow) -> None:
    connector = connector_for(fake, automatic_replies=True)
    try:
        calendar = connector.address(mailbox, "primary")
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        fake.set_automatic_replies(mailbox, "Scheduled", start, start + timedelta(days=3))
        first = connector.changes(calendar, None, window)
        [replies] = first.events
        assert replies.event_id == AUTOMATIC_REPLIES and replies.read_only
        assert replies.content.start == start
        quiet = connector.changes(calendar, first.cursor, window)
        assert quiet.events == [] and quiet.removed == []
        fake.set_automatic_replies(mailbox, "disabled")
        gone = connector.changes(calendar, quiet.cursor, window)
        assert gone.removed == [AUTOMATIC_REPLIES]
    finally:
        connector.close()


def test_replies_content_needs_a_schedule() -> None:
    point = {"dateTime": "2026-12-21T00:00:00.0000000", "timeZone": "UTC"}
    assert replies_content({"status": "alwaysEnabled"}, TZ) is None
    assert replies_content({"status": "SCHEDULED", "scheduledStartDateTime": point,
                            "scheduledEndDateTime": point}, TZ) is None  # empty span


# -- many mailboxes -----------------------------------------------------------------------------


def test_many_mailboxes_are_listed_in_batches(fake: FakeGraph, window: SyncWindow) -> None:
    users = [f"batch{n}@contoso.com" for n in range(45)]
    for n, user in enumerate(users):
        OutlookPerson(fake, user, TZ).add(timed(2 + n % 5))
    connector = connector_for(fake)
    try:
        requests_ = [PollRequest(connector.address(u, "primary"), None, window) for u in users]
        fake.reset_counts()
        first = connector.changes_many(requests_)
        assert all(not isinstance(r, Exception) and len(r.events) == 1 for r in first)
        assert fake.request_count("POST", "$batch") == 3  # 45 mailboxes, 20 a batch
        OutlookPerson(fake, users[7], TZ).add(timed(9))
        fake.fail_next(1, 429, "TooManyRequests", retry_after=0.1, where="part")
        fake.reset_counts()
        again = connector.changes_many([PollRequest(r.calendar, c.cursor, window)  # type: ignore[union-attr]
                                        for r, c in zip(requests_, first, strict=True)])
    finally:
        connector.close()
    assert all(not isinstance(r, Exception) for r in again)
    assert [n for n, r in enumerate(again) if r.events] == [7]  # type: ignore[union-attr]
    assert fake.request_count("POST", "$batch") == 4  # one part throttled: sent again alone in a batch


def test_a_dropped_connection_is_retried_once(connector: OutlookConnector, calendar: str, fake: FakeGraph,
                                              window: SyncWindow) -> None:
    connector.changes(calendar, None, window)  # a kept-alive connection now exists
    fake.drop_next(1)
    assert connector.changes(calendar, None, window).full
    fake.drop_next(2)
    with pytest.raises(TransientError):
        connector.changes(calendar, None, window)


class _CountingSession(requests.Session):
    """A requests session that records how many requests were in flight at once."""

    def __init__(self, counter: dict[str, int], lock: threading.Lock) -> None:
        super().__init__()
        self.counter, self.lock = counter, lock

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with self.lock:
            self.counter["now"] += 1
            self.counter["max"] = max(self.counter["max"], self.counter["now"])
        try:
            return super().request(*args, **kwargs)
        finally:
            with self.lock:
                self.counter["now"] -= 1


def test_at_most_four_requests_run_against_one_mailbox(fake: FakeGraph, mailbox: str) -> None:
    counter, lock = {"now": 0, "max": 0}, threading.Lock()

    def session() -> requests.Session:
        made = _CountingSession(counter, lock)
        made.trust_env = False
        made.verify = fake.ca_bundle_path
        return made
    connector = OutlookConnector(OutlookOptions(**options_for(fake)), session_factory=session)
    try:
        calendar = connector.address(mailbox, "primary")
        connector.get(calendar, "warm-up")  # the app's token, outside the count below
        counter["max"] = 0
        fake.slow_next(12, 0.2, path_contains="/events/")
        threads = [threading.Thread(target=connector.get, args=(calendar, f"e{n}")) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        connector.close()
    assert 1 < counter["max"] <= 4
