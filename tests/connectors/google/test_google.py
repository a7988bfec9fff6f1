"""The Google connector against the fake Google Calendar server, through the real client stack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from connectors.google.connector import (
    BLOCK_PROPERTY,
    GoogleConnector,
    event_content,
    event_id_for_block,
    split_instance_id,
)
from connectors.google.options import GoogleOptions
from connectors.quota import Quota
from syncd.core.calendars import EventDraft, PollRequest, SyncWindow
from syncd.core.errors import (
    AuthError,
    ConfigError,
    CursorExpired,
    NotFound,
    PreconditionFailed,
    RateLimited,
    TransientError,
)
from syncd.core.ooo import all_day_content, timed_content
from tests.connectors.contract import TZ, ConnectorContract, all_day, timed
from tests.connectors.google.support import ALICE, GooglePerson, connector_for
from tests.fakes.google_calendar import FakeGoogleCalendar

BOB = "bob@example.com"


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as server:
        yield server


@pytest.fixture
def connector(fake: FakeGoogleCalendar, tmp_path: Path) -> Iterator[GoogleConnector]:
    connector = connector_for(fake, tmp_path)
    yield connector
    connector.close()


@pytest.fixture
def calendar(connector: GoogleConnector) -> str:
    return connector.address(ALICE, "primary")


@pytest.fixture
def person(fake: FakeGoogleCalendar) -> GooglePerson:
    return GooglePerson(fake, ALICE, "primary", TZ)


@pytest.fixture
def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


class TestGoogleConnectorContract(ConnectorContract):
    """Fixtures above: the module's fake server, connector, calendar and person."""

    def linked_as(self, calendar: str) -> tuple[str, str]:
        owner, _, calendar_id = calendar.partition("/")  # the calendar of `address(owner, calendar_id)`
        return owner, calendar_id


def draft(block_id: str, content: object) -> EventDraft:
    assert not isinstance(content, str)
    return EventDraft(block_id, content, TZ)  # type: ignore[arg-type]


# -- reading ------------------------------------------------------------------------------------


def test_event_content_reads_midnight_to_midnight_as_all_day() -> None:
    event = {"start": {"dateTime": "2026-12-21T00:00:00+01:00", "timeZone": TZ},
             "end": {"dateTime": "2026-12-24T00:00:00+01:00", "timeZone": TZ}, "summary": "Christmas"}
    assert event_content(event, TZ) == all_day_content(date(2026, 12, 21), date(2026, 12, 24), TZ, "Christmas")
    # the same instants read by a user in another zone are not whole days there
    assert not event_content(event, "America/New_York").all_day


def test_event_content_keeps_odd_times_timed() -> None:
    event = {"start": {"dateTime": "2026-12-21T09:17:00Z"}, "end": {"dateTime": "2026-12-21T17:00:00Z"}}
    assert event_content(event, TZ) == timed_content(datetime(2026, 12, 21, 9, 17, tzinfo=UTC),
                                                      datetime(2026, 12, 21, 17, tzinfo=UTC), None)


def test_expired_sync_token_raises_cursor_expired(connector: GoogleConnector, calendar: str, person: GooglePerson,
                                                  fake: FakeGoogleCalendar, window: SyncWindow) -> None:
    person.add(timed(5))
    first = connector.changes(calendar, None, window)
    fake.expire_sync_tokens(ALICE, "primary")
    with pytest.raises(CursorExpired):
        connector.changes(calendar, first.cursor, window)
    again = connector.changes(calendar, None, window)
    assert again.full and len(again.events) == 1


def test_unreadable_cursor_means_a_full_listing(connector: GoogleConnector, calendar: str,
                                               window: SyncWindow) -> None:
    with pytest.raises(CursorExpired):
        connector.changes(calendar, "not a cursor", window)


def test_cancelled_event_with_only_an_id_is_removed(connector: GoogleConnector, calendar: str, person: GooglePerson,
                                                    window: SyncWindow) -> None:
    gone = person.add(timed(5))
    first = connector.changes(calendar, None, window)
    person.remove(gone)
    changes = connector.changes(calendar, first.cursor, window)
    assert changes.removed == [gone] and changes.events == []


def test_far_future_event_is_reported_when_the_window_reaches_it(
        connector: GoogleConnector, calendar: str, person: GooglePerson, window: SyncWindow) -> None:
    later = person.add(timed(380))
    first = connector.changes(calendar, None, window)
    assert first.events == []
    moved_on = SyncWindow(window.start + timedelta(days=20), window.end + timedelta(days=20), TZ)
    changes = connector.changes(calendar, first.cursor, moved_on)
    assert [e.event_id for e in changes.events] == [later]
    assert connector.changes(calendar, changes.cursor, moved_on).events == []


# -- recurring OOO ------------------------------------------------------------------------------


def _weekly_ooo(person: GooglePerson, first: date, count: int = 6) -> str:
    body = {
        "summary": "Fridays off",
        "eventType": "outOfOffice",
        "start": {"dateTime": f"{first}T08:00:00", "timeZone": TZ},
        "end": {"dateTime": f"{first}T17:00:00", "timeZone": TZ},
        "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={count}"],
    }
    return str(person.fake.add_event(person.user, person.calendar, body)["id"])


def _next_weekday(weekday: int, after_days: int = 3) -> date:
    day = datetime.now(UTC).date() + timedelta(days=after_days)
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def _instant(day: date) -> str:
    local = datetime.combine(day, time(8), tzinfo=__import__("zoneinfo").ZoneInfo(TZ))
    return local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def test_recurring_ooo_is_expanded_with_exceptions_and_cancellations(
        connector: GoogleConnector, calendar: str, person: GooglePerson, fake: FakeGoogleCalendar,
        window: SyncWindow) -> None:
    first = _next_weekday(4)
    master = _weekly_ooo(person, first)
    days = [first + timedelta(weeks=n) for n in range(6)]
    moved = f"{master}_{_instant(days[1])}"
    cancelled = f"{master}_{_instant(days[2])}"
    fake.edit_event(ALICE, "primary", moved, {"start": {"dateTime": f"{days[1]}T12:00:00", "timeZone": TZ}})
    fake.delete_event(ALICE, "primary", cancelled)

    listed = connector.changes(calendar, None, window)
    ids = {e.event_id: e for e in listed.events}
    assert set(ids) == {f"{master}_{_instant(d)}" for d in days} - {cancelled}
    assert all(e.series_id == master for e in ids.values())
    assert ids[moved].content.start == datetime.combine(days[1], time(12), tzinfo=__import__("zoneinfo").ZoneInfo(TZ))
    assert split_instance_id(moved) == (master, _instant(days[1]))

    # Another instance is cancelled in Google: only that one is reported removed.
    fake.delete_event(ALICE, "primary", f"{master}_{_instant(days[4])}")
    changes = connector.changes(calendar, listed.cursor, window)
    assert changes.removed == [f"{master}_{_instant(days[4])}"]

    # The series is deleted: every occurrence still reported goes.
    fake.delete_event(ALICE, "primary", master)
    final = connector.changes(calendar, changes.cursor, window)
    assert set(final.removed) == {f"{master}_{_instant(d)}" for d in (days[0], days[1], days[3], days[5])}
    assert final.events == []


def test_occurrence_written_by_syncd_becomes_an_exception(
        connector: GoogleConnector, calendar: str, person: GooglePerson, window: SyncWindow) -> None:
    first = _next_weekday(4)
    master = _weekly_ooo(person, first, count=3)
    listed = {e.event_id: e for e in connector.changes(calendar, None, window).events}
    target = f"{master}_{_instant(first)}"
    ended = listed[target].content.with_end(listed[target].content.start + timedelta(hours=2))
    updated = connector.update(calendar, target, draft("blk", ended), listed[target].etag)
    assert updated.event_id == target and updated.content.end == ended.end
    assert connector.get(calendar, target) is not None
    connector.delete(calendar, f"{master}_{_instant(first + timedelta(weeks=1))}", None)
    after = {e.event_id for e in connector.changes(calendar, None, window).events}
    assert after == {target, f"{master}_{_instant(first + timedelta(weeks=2))}"}


# -- writing ------------------------------------------------------------------------------------


def test_written_events_are_ooo_with_our_block_id(connector: GoogleConnector, calendar: str,
                                                  person: GooglePerson) -> None:
    created = connector.create(calendar, draft("blk-1", all_day(3, 2)))
    [stored] = person.events()
    assert stored["id"] == created.event_id == event_id_for_block("blk-1")
    assert stored["eventType"] == "outOfOffice" and stored["transparency"] == "opaque"
    assert stored["outOfOfficeProperties"]["autoDeclineMode"] == "declineNone"
    assert stored["extendedProperties"]["private"][BLOCK_PROPERTY] == "blk-1"
    assert stored["start"]["timeZone"] == TZ and "dateTime" in stored["start"]  # all-day OOO is timed
    assert created.content == all_day(3, 2)


def test_decline_settings_come_from_the_config(fake: FakeGoogleCalendar, tmp_path: Path) -> None:
    connector = connector_for(fake, tmp_path, auto_decline="declineAllConflictingInvitations",
                              decline_message="Away, back soon")
    try:
        connector.create(connector.address(ALICE, "primary"), draft("blk", timed(2)))
    finally:
        connector.close()
    [stored] = fake.events(ALICE, "primary")
    assert stored["outOfOfficeProperties"] == {"autoDeclineMode": "declineAllConflictingInvitations",
                                               "declineMessage": "Away, back soon"}


def test_create_after_a_crash_finds_the_first_write(connector: GoogleConnector, calendar: str,
                                                    person: GooglePerson) -> None:
    first = connector.create(calendar, draft("blk-1", timed(3)))
    # syncd crashed before saving the link; the retried insert answers 409 and is resolved
    again = connector.create(calendar, draft("blk-1", timed(3)))
    assert again.event_id == first.event_id
    assert len(person.events()) == 1
    assert connector.find_by_block_id(calendar, "blk-1") == again


def test_create_after_the_person_deleted_our_event_uses_the_next_id(
        connector: GoogleConnector, calendar: str, person: GooglePerson) -> None:
    first = connector.create(calendar, draft("blk-1", timed(3)))
    person.remove(first.event_id)
    second = connector.create(calendar, draft("blk-1", timed(4)))
    assert second.event_id == event_id_for_block("blk-1", 1)
    assert [e["id"] for e in person.events()] == [second.event_id]


def test_delete_of_a_deleted_event_succeeds(connector: GoogleConnector, calendar: str,
                                            person: GooglePerson) -> None:
    created = connector.create(calendar, draft("blk-1", timed(3)))
    person.remove(created.event_id)
    connector.delete(calendar, created.event_id, created.etag)  # 410 deleted
    connector.delete(calendar, "nosuchevent0", None)  # 404


def test_update_of_a_deleted_event_raises_not_found(connector: GoogleConnector, calendar: str,
                                                    person: GooglePerson) -> None:
    created = connector.create(calendar, draft("blk-1", timed(3)))
    person.remove(created.event_id)
    with pytest.raises(NotFound):
        connector.update(calendar, created.event_id, draft("blk-1", timed(4)), created.etag)


def test_stale_etag_is_a_precondition_failure(connector: GoogleConnector, calendar: str,
                                              person: GooglePerson) -> None:
    created = connector.create(calendar, draft("blk-1", timed(3)))
    person.edit(created.event_id, timed(3, hours=2))
    with pytest.raises(PreconditionFailed):
        connector.update(calendar, created.event_id, draft("blk-1", timed(5)), created.etag)
    with pytest.raises(PreconditionFailed):
        connector.delete(calendar, created.event_id, created.etag)


# -- errors and auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "reason"), [(403, "rateLimitExceeded"), (403, "userRateLimitExceeded"),
                                                (429, "rateLimitExceeded")])
def test_rate_limits_carry_retry_after(connector: GoogleConnector, calendar: str, fake: FakeGoogleCalendar,
                                       window: SyncWindow, status: int, reason: str) -> None:
    fake.fail_next(1, status, reason, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        connector.changes(calendar, None, window)
    assert caught.value.retry_after == 7
    assert connector.changes(calendar, None, window).full  # the next attempt works


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(connector: GoogleConnector, calendar: str, fake: FakeGoogleCalendar,
                                     window: SyncWindow, status: int) -> None:
    fake.fail_next(1, status, "backendError")
    with pytest.raises(TransientError):
        connector.changes(calendar, None, window)


def test_forbidden_calendar_is_an_auth_error(connector: GoogleConnector, calendar: str, fake: FakeGoogleCalendar,
                                             window: SyncWindow) -> None:
    fake.fail_next(1, 403, "forbidden")
    with pytest.raises(AuthError, match="access denied"):
        connector.changes(calendar, None, window)


def test_expired_access_token_is_refreshed_once(connector: GoogleConnector, calendar: str,
                                                fake: FakeGoogleCalendar, window: SyncWindow) -> None:
    connector.changes(calendar, None, window)
    tokens_before = len(fake.token_requests)
    fake.invalidate_access_tokens(ALICE)
    assert connector.changes(calendar, None, window).full
    assert len(fake.token_requests) == tokens_before + 1


def test_401_after_a_fresh_token_is_an_auth_error(connector: GoogleConnector, calendar: str,
                                                  fake: FakeGoogleCalendar, window: SyncWindow) -> None:
    fake.fail_next(2, 401, "authError")
    with pytest.raises(AuthError, match="credentials rejected"):
        connector.changes(calendar, None, window)


def test_impersonation_refused_is_reauth(connector: GoogleConnector, fake: FakeGoogleCalendar,
                                         window: SyncWindow) -> None:
    fake.deny_subject(BOB)
    with pytest.raises(AuthError, match="cannot sign in"):
        connector.changes(connector.address(BOB, "primary"), None, window)


def test_subject_domain_limits_impersonation(fake: FakeGoogleCalendar, tmp_path: Path, window: SyncWindow) -> None:
    connector = connector_for(fake, tmp_path, subject_domain="example.org")
    try:
        with pytest.raises(ConfigError, match="outside subject_domain"):
            connector.changes(connector.address(ALICE, "primary"), None, window)
    finally:
        connector.close()


class _Tokens:
    """The refresh-token store, as the vault serves it (account, email) -> token."""

    def __init__(self, tokens: dict[tuple[str, str], str]) -> None:
        self.tokens = tokens

    def refresh_token(self, account: str, subject: str) -> str | None:
        return self.tokens.get((account, subject))


def test_refresh_token_users(fake: FakeGoogleCalendar, window: SyncWindow) -> None:
    fake.add_refresh_token("1//alice-token", ALICE)
    tokens = _Tokens({("work", ALICE): "1//alice-token"})
    connector = GoogleConnector(GoogleOptions(account="work", api_endpoint=fake.api_endpoint,
                                              batch_uri=fake.batch_uri, client_id="cid", client_secret="cs",
                                              token_uri=fake.token_uri), refresh_tokens=tokens)
    try:
        GooglePerson(fake, ALICE).add(timed(4))
        assert len(connector.changes(connector.address(ALICE, "primary"), None, window).events) == 1
        with pytest.raises(AuthError, match="syncd credentials set work bob@example.com"):
            connector.changes(connector.address(BOB, "primary"), None, window)
        fake.revoke_refresh_token("1//alice-token")
        fake.invalidate_access_tokens()
        with pytest.raises(AuthError, match="cannot sign in"):
            connector.changes(connector.address(ALICE, "primary"), None, window)
    finally:
        connector.close()


def test_an_account_needs_some_credentials(fake: FakeGoogleCalendar) -> None:
    with pytest.raises(ConfigError, match="service_account_file"):
        GoogleConnector(GoogleOptions(api_endpoint=fake.api_endpoint))


# -- many users at once -------------------------------------------------------------------------


def test_many_calendars_are_listed_in_batches(fake: FakeGoogleCalendar, tmp_path: Path,
                                              window: SyncWindow) -> None:
    users = [f"user{n}@example.com" for n in range(25)]
    for n, email in enumerate(users):
        GooglePerson(fake, email).add(timed(2 + n % 5))
    connector = connector_for(fake, tmp_path, batch_size=10)
    try:
        requests = [PollRequest(connector.address(u, "primary"), None, window) for u in users]
        first = connector.changes_many(requests)
        assert all(not isinstance(r, Exception) and len(r.events) == 1 for r in first)
        fake.requests.clear()
        GooglePerson(fake, users[3]).add(timed(9))
        again = connector.changes_many([PollRequest(r.calendar, c.cursor, window)  # type: ignore[union-attr]
                                        for r, c in zip(requests, first, strict=True)])
    finally:
        connector.close()
    assert fake.request_count("POST", "/batch/calendar/v3") == 3  # 25 calendars, 10 a batch
    assert fake.request_count("GET") == 0  # no calendar needed a second request
    changed = [n for n, r in enumerate(again) if not isinstance(r, Exception) and r.events]
    assert changed == [3]


def test_one_users_failure_leaves_the_others_alone(fake: FakeGoogleCalendar, tmp_path: Path,
                                                   window: SyncWindow) -> None:
    users = [f"user{n}@example.com" for n in range(6)]
    fake.deny_subject(users[2])
    connector = connector_for(fake, tmp_path, batch_size=10)
    try:
        results = connector.changes_many([PollRequest(connector.address(u, "primary"), None, window)
                                          for u in users])
    finally:
        connector.close()
    assert isinstance(results[2], AuthError)
    assert all(not isinstance(r, Exception) for n, r in enumerate(results) if n != 2)


def test_without_batching_each_calendar_is_its_own_request(fake: FakeGoogleCalendar, tmp_path: Path,
                                                           window: SyncWindow) -> None:
    users = [f"user{n}@example.com" for n in range(5)]
    connector = connector_for(fake, tmp_path, batch_size=1)
    try:
        results = connector.changes_many([PollRequest(connector.address(u, "primary"), None, window)
                                          for u in users])
    finally:
        connector.close()
    assert all(not isinstance(r, Exception) for r in results)
    assert fake.request_count("POST", "/batch/calendar/v3") == 0
    assert fake.request_count("GET", "/events") == 5


def test_quota_is_shared_by_a_batch(fake: FakeGoogleCalendar, tmp_path: Path, window: SyncWindow) -> None:
    users = [f"user{n}@example.com" for n in range(5)]
    connector = connector_for(fake, tmp_path, batch_size=10)
    connector.quota = Quota(3, 600, max_wait=0)  # three requests a minute for the project
    try:
        results = connector.changes_many([PollRequest(connector.address(u, "primary"), None, window)
                                          for u in users])
    finally:
        connector.close()
    assert sum(isinstance(r, RateLimited) for r in results) == 2
    assert all(r.retry_after and r.retry_after > 0 for r in results if isinstance(r, RateLimited))


# -- push channels ------------------------------------------------------------------------------


def test_watch_and_stop(connector: GoogleConnector, calendar: str, fake: FakeGoogleCalendar) -> None:
    watch = connector.watch(calendar, "chan-1", "secret-token", "http://127.0.0.1:9/hook", timedelta(days=2))
    channel = fake.channels["chan-1"]
    assert channel["token"] == "secret-token" and channel["address"] == "http://127.0.0.1:9/hook"
    assert watch.resource_id == channel["resourceId"]
    assert watch.expires_at > datetime.now(UTC)
    connector.stop_watch(calendar, "chan-1", watch.resource_id)
    assert fake.channels["chan-1"]["stopped"]
    connector.stop_watch(calendar, "chan-unknown", "nothing")  # unknown: not an error


def test_event_types_refused_with_a_sync_token_falls_back_to_filtering_here(
        connector: GoogleConnector, calendar: str, person: GooglePerson, fake: FakeGoogleCalendar,
        window: SyncWindow) -> None:
    trip = person.add(timed(5))
    first = connector.changes(calendar, None, window)
    fake.refuse_event_types_with_sync_token = True
    with pytest.raises(CursorExpired):
        connector.changes(calendar, first.cursor, window)
    again = connector.changes(calendar, None, window)  # the caller lists again: unfiltered now
    assert [e.event_id for e in again.events] == [trip]
    meeting = person.add(timed(6), ooo=False)
    later = person.add(timed(7))
    changes = connector.changes(calendar, again.cursor, window)
    assert [e.event_id for e in changes.events] == [later]
    assert meeting not in changes.removed


def test_an_answer_over_64_mb_is_refused_not_read(connector: GoogleConnector, calendar: str,
                                                  fake: FakeGoogleCalendar, window: SyncWindow) -> None:
    from syncd.core.errors import SyncdError

    fake.fail_next(1, 500, "backendError", message="x" * (70 << 20))  # a 70 MB body
    with pytest.raises(SyncdError, match="MB"):
        connector.changes(calendar, None, window)
    assert connector.changes(calendar, None, window).full  # and the next answer is read as usual
