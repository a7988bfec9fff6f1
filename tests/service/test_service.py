"""The service on a real database (SQLite and PostgreSQL): blocks, status, outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event, func, select

from store.db import Database
from store.models import BlockRow, CalendarLinkRow, DeliveryRow, EventLinkRow, OutboxRow, StatusLogRow
from syncd.config import SinkConfig
from syncd.core.errors import ConfirmationRequired, NotFoundInStore, StaleRevision, UserInputError
from syncd.core.ooo import all_day_content, timed_content
from syncd.core.time import ensure_aware
from tests.conftest import Harness, user

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # the clock fixture's start: a Monday
PAYLOAD_KEYS = {"id", "type", "user", "status", "previous", "reason", "effective_at", "block", "replacement"}


def at(hours: float, days: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def outbox(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        return [r.payload for r in s.scalars(select(OutboxRow).order_by(OutboxRow.seq))]


def transitions(db: Database) -> list[tuple[str, str, str]]:
    """(status, reason, effective_at) of every published change, in outbox order."""
    return [(p["status"], p["reason"], p["effective_at"]) for p in outbox(db)]


def count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def block_row(db: Database, block_id: str) -> BlockRow:
    with db.session() as s:
        row = s.get(BlockRow, block_id)
        assert row is not None
        return row


@pytest.fixture
def h(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory([user("alice", "work")])


def db_of(h: Harness) -> Database:
    return h.service.db


# --------------------------------------------------------------------------- blocks


def test_add_and_list_blocks(h: Harness) -> None:
    later = h.service.add_block("alice", timed_content(at(5), at(6), "Dentist"))
    earlier = h.service.add_block("alice", timed_content(at(2), at(3)))
    assert later.revision == 1 and later.source == "helpdesk" and later.user == "alice"
    assert (later.start, later.end, later.title, later.all_day) == (at(5), at(6), "Dentist", False)
    assert earlier.title == "Out of office"
    listed = h.service.list_blocks("alice")
    assert [b.id for b in listed] == [earlier.id, later.id]  # ordered by start
    assert listed[1] == later
    assert later.as_json()["start"] == iso(at(5))


def test_blocks_come_back_in_utc_whatever_offset_was_given(h: Harness) -> None:
    plus2 = datetime(2026, 3, 2, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    info = h.service.add_block("alice", timed_content(plus2, plus2 + timedelta(hours=1)))
    stored = h.service.list_blocks("alice")[0]
    assert stored.start == datetime(2026, 3, 2, 14, 0, tzinfo=UTC) == info.start
    assert stored.start.utcoffset() == timedelta(0)


def test_edit_block_increases_revision_and_changes_content(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(5), at(6)))
    e1 = h.service.edit_block(b.id, timed_content(at(5), at(8), "Longer"), expected_revision=1)
    assert e1.revision == 2 and e1.end == at(8) and e1.title == "Longer"
    e2 = h.service.edit_block(b.id, timed_content(at(4), at(8)))
    assert e2.revision == 3
    assert h.service.list_blocks("alice") == [e2]


def test_edit_with_stale_revision_is_refused_with_current_revision(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(5), at(6)))
    h.service.edit_block(b.id, timed_content(at(5), at(7)))
    with pytest.raises(StaleRevision) as err:
        h.service.edit_block(b.id, timed_content(at(1), at(2)), expected_revision=1)
    assert err.value.current_revision == 2
    assert "revision 2" in str(err.value) and "\n" not in str(err.value)
    assert h.service.list_blocks("alice")[0].end == at(7)  # unchanged
    with pytest.raises(StaleRevision) as err:
        h.service.delete_block(b.id, expected_revision=5)
    assert err.value.current_revision == 2
    assert len(h.service.list_blocks("alice")) == 1


def test_delete_block_hides_it_and_keeps_a_tombstone(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(5), at(6)))
    gone = h.service.delete_block(b.id, expected_revision=1)
    assert gone.revision == 2
    assert h.service.list_blocks("alice") == []
    row = block_row(db_of(h), b.id)
    assert row.deleted_at == T0 and row.revision == 2
    with pytest.raises(NotFoundInStore):
        h.service.delete_block(b.id)
    with pytest.raises(NotFoundInStore):
        h.service.edit_block(b.id, timed_content(at(5), at(6)))


@pytest.mark.parametrize("call", [
    lambda s: s.list_blocks("nobody"),
    lambda s: s.add_block("nobody", timed_content(at(1), at(2))),
    lambda s: s.status("nobody"),
    lambda s: s.set_status("nobody", "away"),
], ids=["list", "add", "status", "set_status"])
def test_unknown_user_is_not_found_with_a_hint(h: Harness, call: Callable[[Any], Any]) -> None:
    with pytest.raises(NotFoundInStore) as err:
        call(h.service)
    text = str(err.value)
    assert "'nobody'" in text and "syncd" in text and "\n" not in text


@pytest.mark.parametrize("call", [
    lambda s: s.edit_block("nope", timed_content(at(1), at(2))),
    lambda s: s.delete_block("nope"),
    lambda s: s.end_block_early("nope"),
], ids=["edit", "delete", "end_early"])
def test_unknown_block_is_not_found_with_a_hint(h: Harness, call: Callable[[Any], Any]) -> None:
    with pytest.raises(NotFoundInStore) as err:
        call(h.service)
    text = str(err.value)
    assert "'nope'" in text and "syncd ooo list" in text and "\n" not in text


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2026, 3, 2, 9, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(UserInputError, match="no UTC offset"):
        ensure_aware(naive, "start")
    with pytest.raises(UserInputError, match="start .* no UTC offset"):
        timed_content(naive, T0 + timedelta(hours=1))
    with pytest.raises(UserInputError, match="end .* no UTC offset"):
        timed_content(T0, naive + timedelta(hours=1))


def test_block_that_ends_before_it_starts_is_rejected() -> None:
    with pytest.raises(UserInputError):
        timed_content(at(2), at(1))
    with pytest.raises(UserInputError):
        timed_content(at(2), at(2))


def test_end_block_early_moves_end_to_now(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(-1), at(8)))
    h.clock.advance(timedelta(hours=2))
    ended = h.service.end_block_early(b.id)
    assert ended.end == at(2) and ended.revision == 2 and ended.start == at(-1)
    assert h.service.status("alice").status == "available"
    assert transitions(db_of(h))[-1] == ("available", "ooo_ended_early", iso(at(2)))


def test_edits_after_a_quiet_spell_take_effect_now(h: Harness) -> None:
    # The status was last evaluated at T0; edits hours later change the present, not the past.
    h.clock.set(at(5))
    b = h.service.add_block("alice", timed_content(at(3), at(8)))  # entered late, already begun
    h.clock.set(at(6))
    h.service.edit_block(b.id, timed_content(at(3), at(5.5)))  # shortened to before now
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(at(5))), ("available", "ooo_ended", iso(at(6)))]


def test_end_block_early_on_a_future_or_ended_block_is_refused(h: Harness) -> None:
    future = h.service.add_block("alice", timed_content(at(2), at(3)))
    with pytest.raises(UserInputError, match="has not begun") as err:
        h.service.end_block_early(future.id)
    assert f"syncd ooo delete {future.id}" in str(err.value)
    past = h.service.add_block("alice", timed_content(at(-3), at(-2)))
    with pytest.raises(UserInputError, match="already ended"):
        h.service.end_block_early(past.id)
    assert {b.revision for b in h.service.list_blocks("alice")} == {1}


def test_end_block_early_of_an_all_day_block_makes_it_timed(h: Harness) -> None:
    b = h.service.add_block("alice", all_day_content(date(2026, 3, 2), date(2026, 3, 4), "Europe/Stockholm"))
    h.service.end_block_early(b.id)
    row = block_row(db_of(h), b.id)
    assert (row.all_day, row.start_date, row.end_date, row.end) == (False, None, None, T0)


# --------------------------------------------------------------------------- all-day blocks


def test_all_day_block_keeps_local_dates_and_zone_across_dst(h: Harness) -> None:
    # Stockholm goes to summer time on Sunday 2026-03-29: the week starts at +01:00 and ends at +02:00.
    b = h.service.add_block("alice", all_day_content(date(2026, 3, 23), date(2026, 3, 30), "Europe/Stockholm"))
    assert b.all_day
    assert b.start == datetime(2026, 3, 22, 23, 0, tzinfo=UTC)
    assert b.end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    row = block_row(db_of(h), b.id)
    assert (row.start_date, row.end_date, row.timezone) == (date(2026, 3, 23), date(2026, 3, 30), "Europe/Stockholm")
    assert (row.start, row.end) == (b.start, b.end)
    inside = h.service.status("alice", at=datetime(2026, 3, 29, 21, 59, tzinfo=UTC))
    assert (inside.status, inside.until, inside.blocks) == ("away", b.end, [b.id])
    assert h.service.status("alice", at=b.end).status == "available"


def test_all_day_block_is_anchored_in_the_users_zone(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory([user("bob", tz="America/New_York")])
    # Given in another zone, the dates are re-read in the user's zone (New York: DST from 2026-03-08).
    b = h.service.add_block("bob", all_day_content(date(2026, 3, 6), date(2026, 3, 10), "Europe/Stockholm"))
    assert b.start == datetime(2026, 3, 6, 5, 0, tzinfo=UTC)  # midnight EST
    assert b.end == datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # midnight EDT
    row = block_row(db_of(h), b.id)
    assert (row.start_date, row.end_date, row.timezone) == (date(2026, 3, 6), date(2026, 3, 10), "America/New_York")


def test_editing_an_all_day_block_reanchors_it(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(30), at(31)))
    e = h.service.edit_block(b.id, all_day_content(date(2026, 3, 28), date(2026, 3, 31), "Europe/Stockholm"))
    assert (e.all_day, e.start, e.end) == (True, datetime(2026, 3, 27, 23, tzinfo=UTC),
                                           datetime(2026, 3, 30, 22, tzinfo=UTC))


# --------------------------------------------------------------------------- status and outbox


def test_status_transitions_are_published_once_with_the_documented_payload(h: Harness) -> None:
    db = db_of(h)
    assert outbox(db) == []  # available at start: the helpdesk assumes that already
    b = h.service.add_block("alice", timed_content(at(1), at(3), "Vacation"))
    assert outbox(db) == []  # no change yet
    h.clock.set(at(1))
    assert h.service.advance_due() == 1
    h.clock.set(at(3))
    assert h.service.advance_due() == 1
    assert h.service.advance_due() == 0
    assert h.service.advance_all() == 0
    events = outbox(db)
    assert [(e["status"], e["previous"], e["reason"], e["effective_at"]) for e in events] == [
        ("away", "available", "ooo_started", iso(at(1))),
        ("available", "away", "ooo_ended", iso(at(3))),
    ]
    started = events[0]
    assert set(started) == PAYLOAD_KEYS
    assert started["type"] == "status.changed"
    assert started["user"] == {"id": "alice", "email": "alice@example.com"}
    assert started["block"] == {"id": b.id, "start": iso(at(1)), "end": iso(at(3)), "title": "Vacation"}
    assert events[1]["block"] == started["block"]  # the ended block
    for e in events:
        assert set(e) == PAYLOAD_KEYS
        assert e["block"] is None or set(e["block"]) == {"id", "start", "end", "title"}
    assert len({e["id"] for e in events}) == 2
    with db.session() as s:
        rows = list(s.scalars(select(OutboxRow).order_by(OutboxRow.seq)))
        assert [r.event_id for r in rows] == [e["id"] for e in events]  # the idempotency key
        assert {r.user_id for r in rows} == {"alice"}
        log = list(s.scalars(select(StatusLogRow).order_by(StatusLogRow.id)))
        assert [(r.status, r.previous, r.reason, r.effective_at, r.block_id) for r in log] == [
            ("away", "available", "ooo_started", at(1), b.id),
            ("available", "away", "ooo_ended", at(3), b.id),
        ]


def test_one_delivery_per_configured_sink(harness_factory: Callable[..., Harness]) -> None:
    sinks = (SinkConfig(type="stdout", name="out"), SinkConfig(type="webhook", name="engine"))
    h = harness_factory([user("alice", "work")], sinks=sinks)
    h.service.add_block("alice", timed_content(at(-1), at(1)))
    h.clock.set(at(1))
    h.service.advance_due()
    db = db_of(h)
    with db.session() as s:
        seqs = list(s.scalars(select(OutboxRow.seq).order_by(OutboxRow.seq)))
        deliveries = list(s.scalars(select(DeliveryRow).order_by(DeliveryRow.outbox_seq, DeliveryRow.sink)))
    assert len(seqs) == 2
    assert [(d.outbox_seq, d.sink, d.state, d.attempts, d.user_id) for d in deliveries] == [
        (seqs[0], "engine", "pending", 0, "alice"), (seqs[0], "out", "pending", 0, "alice"),
        (seqs[1], "engine", "pending", 0, "alice"), (seqs[1], "out", "pending", 0, "alice"),
    ]


def test_adding_a_block_that_covers_now_publishes_at_once(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(-1), at(2)))
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(T0))]
    assert outbox(db_of(h))[0]["block"]["id"] == b.id
    s = h.service.status("alice")
    assert (s.status, s.reason, s.since, s.until, s.blocks) == ("away", "ooo_started", T0, at(2), [b.id])


def test_deleting_the_covering_block_publishes_available(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(-1), at(2)))
    h.clock.advance(timedelta(minutes=10))
    h.service.delete_block(b.id)
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(T0)),
                                     ("available", "ooo_ended", iso(at(1 / 6)))]
    assert h.service.status("alice").status == "available"


def test_moving_a_block_off_now_and_back_publishes_each_change(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(-1), at(2)))
    h.service.edit_block(b.id, timed_content(at(4), at(5)))
    h.service.edit_block(b.id, timed_content(at(4), at(6)))  # still not covering now: nothing
    h.service.edit_block(b.id, timed_content(at(0), at(6)))
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(T0)), ("available", "ooo_ended", iso(T0)),
                                     ("away", "ooo_started", iso(T0))]


def test_overlapping_blocks_act_as_their_union(h: Harness) -> None:
    a = h.service.add_block("alice", timed_content(at(1), at(3)))
    b = h.service.add_block("alice", timed_content(at(2), at(5)))
    assert h.service.status("alice", at=at(2.5)).blocks == [b.id, a.id]  # the one ending last first
    assert h.service.status("alice").until == at(1)
    assert h.service.status("alice", at=at(1)).until == at(5)
    for hour in (1, 2, 3, 5):
        h.clock.set(at(hour))
        h.service.advance_due()
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(at(1))), ("available", "ooo_ended", iso(at(5)))]


def test_outbox_is_written_in_the_same_transaction_as_the_change(h: Harness) -> None:
    db = db_of(h)

    def crash(_connection: Any) -> None:  # the process dies after the status change, before COMMIT
        raise RuntimeError("crash after the status change, before commit")

    event.listen(db.engine, "commit", crash)
    try:
        with pytest.raises(RuntimeError):
            h.service.add_block("alice", timed_content(at(-1), at(2)))
    finally:
        event.remove(db.engine, "commit", crash)
    assert count(db, BlockRow) == 0
    assert count(db, OutboxRow) == 0 and count(db, DeliveryRow) == 0 and count(db, StatusLogRow) == 0
    assert h.service.status("alice").status == "available"
    h.service.add_block("alice", timed_content(at(-1), at(2)))
    assert count(db, BlockRow) == 1 and count(db, OutboxRow) == 1 and count(db, DeliveryRow) == 1


# --------------------------------------------------------------------------- manual changes


def test_available_while_ooo_needs_confirmation_and_changes_nothing(h: Harness) -> None:
    a = h.service.add_block("alice", timed_content(at(-1), at(2), "Conference"))
    b = h.service.add_block("alice", timed_content(at(-2), at(5)))
    h.service.add_block("alice", timed_content(at(6), at(7)))  # not covering now
    before = outbox(db_of(h))
    with pytest.raises(ConfirmationRequired) as err:
        h.service.set_status("alice", "available")
    assert sorted(err.value.block_ids) == sorted([a.id, b.id])
    assert err.value.until == at(5)
    text = str(err.value)
    assert a.id in text and b.id in text and "'Conference'" in text and "end-ooo-early" in text
    assert "\n" not in text
    assert outbox(db_of(h)) == before
    assert {x.id: x.revision for x in h.service.list_blocks("alice")}[a.id] == 1
    assert [x.end for x in h.service.list_blocks("alice")] == [at(5), at(2), at(7)]
    assert h.service.status("alice").status == "away"


def test_available_with_end_ooo_early_ends_every_covering_block(h: Harness) -> None:
    a = h.service.add_block("alice", timed_content(at(-1), at(2)))
    b = h.service.add_block("alice", timed_content(at(-2), at(5)))
    later = h.service.add_block("alice", timed_content(at(6), at(7)))
    h.clock.advance(timedelta(minutes=30))
    info = h.service.set_status("alice", "available", end_ooo_early=True, by="alice")
    assert (info.status, info.reason, info.since, info.blocks) == ("available", "ooo_ended_early", at(0.5), [])
    assert info.until == at(6)
    blocks = {x.id: x for x in h.service.list_blocks("alice")}
    assert (blocks[a.id].end, blocks[a.id].revision) == (at(0.5), 2)
    assert (blocks[b.id].end, blocks[b.id].revision) == (at(0.5), 2)
    assert (blocks[later.id].end, blocks[later.id].revision) == (at(7), 1)
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(T0)),
                                     ("available", "ooo_ended_early", iso(at(0.5)))]


def test_ending_early_asks_the_calendars_to_sync(h: Harness) -> None:
    h.service.add_block("alice", timed_content(at(-1), at(2)))
    with db_of(h).session() as s:
        for link in s.scalars(select(CalendarLinkRow)):
            link.next_poll_at = at(100)
    h.clock.advance(timedelta(minutes=5))
    h.service.set_status("alice", "available", end_ooo_early=True)
    with db_of(h).session() as s:
        assert {link.next_poll_at for link in s.scalars(select(CalendarLinkRow))} == {h.clock.now}


def test_manual_change_is_published_with_reason_manual(h: Harness) -> None:
    info = h.service.set_status("alice", "away", by="admin")
    assert (info.status, info.reason, info.since) == ("away", "manual", T0)
    h.clock.advance(timedelta(hours=1))
    back = h.service.set_status("alice", "available")
    assert (back.status, back.reason) == ("available", "manual")
    assert h.service.set_status("alice", "available").status == "available"  # no change: nothing published
    events = outbox(db_of(h))
    assert [(e["status"], e["previous"], e["reason"], e["effective_at"], e["block"]) for e in events] == [
        ("away", "available", "manual", iso(T0), None), ("available", "away", "manual", iso(at(1)), None),
    ]


def test_manual_away_holds_until_the_next_automatic_transition(h: Harness) -> None:
    h.service.set_status("alice", "away")
    b = h.service.add_block("alice", timed_content(at(3), at(4)))
    assert h.service.status("alice").status == "away"
    assert h.service.status("alice", at=at(2)).status == "away"  # the manual change still holds
    h.clock.set(at(2))
    h.service.advance_due()
    s = h.service.status("alice")
    assert (s.status, s.reason) == ("away", "manual")
    h.clock.set(at(3))
    h.service.advance_due()  # block starts: automatic transition, same status, no event
    s = h.service.status("alice")
    assert (s.status, s.reason, s.blocks) == ("away", "ooo_started", [b.id])
    h.clock.set(at(4))
    h.service.advance_due()
    assert h.service.status("alice").status == "available"
    assert transitions(db_of(h)) == [("away", "manual", iso(T0)), ("available", "ooo_ended", iso(at(4)))]


def test_manual_available_outside_hours_holds_until_hours_change(harness_factory: Callable[..., Harness]) -> None:
    hours = {d: ((time(9), time(17)),) for d in range(5)}
    h = harness_factory([user("carol", tz="UTC", working_hours=hours)], away_outside_working_hours=True)
    h.clock.set(at(9))  # Monday 18:00 UTC: after hours
    h.service.advance_all()
    h.service.set_status("carol", "available")
    assert h.service.status("carol").status == "available"
    h.clock.set(at(24))  # Tuesday 09:00: hours start (automatic, same status), until 17:00
    h.service.advance_due()
    h.clock.set(at(32))
    h.service.advance_due()
    assert transitions(db_of(h)) == [
        ("away", "working_hours", iso(at(8))),
        ("available", "manual", iso(at(9))),
        ("away", "working_hours", iso(at(32))),
    ]


def test_manual_away_while_ooo_is_not_a_change(h: Harness) -> None:
    h.service.add_block("alice", timed_content(at(-1), at(2)))
    h.service.set_status("alice", "away")
    h.clock.set(at(2))
    h.service.advance_due()
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(T0)), ("available", "ooo_ended", iso(at(2)))]


def test_unknown_status_is_refused(h: Harness) -> None:
    with pytest.raises(UserInputError, match="'available' or 'away'"):
        h.service.set_status("alice", "busy")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- downtime and timers


def test_transitions_during_downtime_are_published_in_order_once(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory([user("alice", "work"), user("bob")])
    h.service.add_block("alice", timed_content(at(1), at(3), "A"))
    h.service.add_block("alice", timed_content(at(2), at(4), "B"))  # overlaps: union 1..4
    h.service.add_block("alice", timed_content(at(6), at(7), "C"))
    h.service.add_block("bob", timed_content(at(5), at(8)))
    assert outbox(db_of(h)) == []
    h.clock.set(at(10))  # "the service was down": nothing called while every boundary passed
    assert h.service.advance_all() == 6
    events = outbox(db_of(h))
    alice = [(e["status"], e["reason"], e["effective_at"], e["block"] and e["block"]["title"])
             for e in events if e["user"]["id"] == "alice"]
    assert alice == [
        ("away", "ooo_started", iso(at(1)), "A"), ("available", "ooo_ended", iso(at(4)), "B"),
        ("away", "ooo_started", iso(at(6)), "C"), ("available", "ooo_ended", iso(at(7)), "C"),
    ]
    bob = [(e["status"], e["effective_at"]) for e in events if e["user"]["id"] == "bob"]
    assert bob == [("away", iso(at(5))), ("available", iso(at(8)))]
    assert h.service.advance_all() == 0
    assert h.service.advance_due() == 0
    assert len(outbox(db_of(h))) == 6
    with db_of(h).session() as s:
        recorded = {r.recorded_at for r in s.scalars(select(StatusLogRow))}
    assert recorded == {at(10)}  # recorded late, effective at their true time


def test_restart_publishes_downtime_transitions(harness_factory: Callable[..., Harness], database: Database) -> None:
    from syncd.service import Syncd

    h = harness_factory([user("alice", "work")])
    h.service.add_block("alice", timed_content(at(1), at(2)))
    h.clock.set(at(5))
    again = Syncd(h.service.config, database, clock=h.clock)  # a new process on the same database
    again.prepare()
    assert again.advance_all() == 2
    assert transitions(database) == [("away", "ooo_started", iso(at(1))), ("available", "ooo_ended", iso(at(2)))]
    assert again.advance_all() == 0


def test_advance_due_publishes_only_users_whose_boundary_has_come(harness_factory: Callable[..., Harness]) -> None:
    h = harness_factory([user("alice", "work"), user("bob"), user("carol")])
    h.service.add_block("alice", timed_content(at(1), at(3)))
    h.service.add_block("bob", timed_content(at(2), at(3)))
    assert h.service.next_boundary() == at(1)
    h.clock.set(at(1.5))
    assert h.service.advance_due() == 1
    assert [e["user"]["id"] for e in outbox(db_of(h))] == ["alice"]
    assert h.service.user_state("bob").evaluated_at == T0  # bob was not touched
    assert h.service.next_boundary() == at(2)
    h.clock.set(at(2))
    assert h.service.advance_due() == 1
    assert h.service.next_boundary() == at(3)
    h.clock.set(at(3))
    assert h.service.advance_due() == 2
    assert h.service.next_boundary() is None
    assert [(e["user"]["id"], e["status"]) for e in outbox(db_of(h))] == [
        ("alice", "away"), ("bob", "away"), ("alice", "available"), ("bob", "available")]


def test_a_user_away_at_first_start_is_published(harness_factory: Callable[..., Harness], database: Database) -> None:
    from syncd.service import Syncd

    h = harness_factory([user("alice", "work")])
    h.service.add_block("alice", timed_content(at(1), at(5)))
    config = h.service.config
    dave = user("dave")
    bigger = type(config)(path=config.path, daemon=config.daemon, accounts=config.accounts,
                          users=(*config.users, dave), sinks=config.sinks)
    with database.session() as s:  # dave's block exists before dave's status is first loaded
        from store.models import UserRow
        s.add(UserRow(id="dave", email="dave@example.com", timezone="UTC", working_hours={}, origin="api",
                      created_at=T0))
        s.flush()
        s.add(BlockRow(id="d1", user_id="dave", start=at(-1), end=at(2), title="Out", source="helpdesk",
                       revision=1, created_at=T0, updated_at=T0))
    Syncd(bigger, database, clock=h.clock).prepare()
    assert [(e["user"]["id"], e["status"], e["previous"], e["effective_at"]) for e in outbox(database)] == [
        ("dave", "away", "available", iso(T0))]


# --------------------------------------------------------------------------- status(user, at)


def test_status_now_and_in_the_future(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(2), at(4)))
    now = h.service.status("alice")
    assert (now.status, now.reason, now.since, now.until, now.blocks) == ("available", "initial", T0, at(2), [])
    future = h.service.status("alice", at=at(3))
    assert (future.status, future.reason, future.since, future.until, future.blocks) == (
        "away", "ooo_started", at(2), at(4), [b.id])
    after = h.service.status("alice", at=at(5))
    assert (after.status, after.reason, after.since, after.until, after.blocks) == (
        "available", "ooo_ended", at(4), None, [])
    assert h.service.status("alice", at=at(3)).as_json()["until"] == iso(at(4))
    assert outbox(db_of(h)) == []  # asking about the future publishes nothing
    assert h.service.user_state("alice").evaluated_at == T0


def test_status_at_a_naive_time_is_refused(h: Harness) -> None:
    with pytest.raises(UserInputError, match="no UTC offset"):
        h.service.status("alice", at=datetime(2026, 3, 2, 12, 0))  # noqa: DTZ001 - the point of the test


def test_status_in_the_future_ignores_a_manual_change_after_the_next_transition(h: Harness) -> None:
    h.service.add_block("alice", timed_content(at(2), at(4)))
    h.service.set_status("alice", "away")
    assert h.service.status("alice").until == at(4)  # away (manual), then away (OOO) until 4
    assert h.service.status("alice", at=at(5)).status == "available"


def test_status_in_the_past_answers_from_the_log(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(1), at(3)))
    for hour in (1, 3):
        h.clock.set(at(hour))
        h.service.advance_due()
    h.clock.set(at(5))
    h.service.advance_all()
    h.service.delete_block(b.id)  # the log still says what was
    before = h.service.status("alice", at=at(0.5))
    assert (before.status, before.reason, before.since, before.until) == ("available", "initial", None, at(1))
    during = h.service.status("alice", at=at(2))
    assert (during.status, during.reason, during.since, during.until) == ("away", "ooo_started", at(1), at(3))
    ended = h.service.status("alice", at=at(4))
    assert (ended.status, ended.reason, ended.since) == ("available", "ooo_ended", at(3))


def test_status_in_the_past_until_is_the_next_change_still_to_come(h: Harness) -> None:
    h.service.add_block("alice", timed_content(at(1), at(3)))
    h.clock.set(at(2))
    h.service.advance_due()
    past = h.service.status("alice", at=at(1.5))  # away since 1, and it is still in force
    assert (past.status, past.since, past.until) == ("away", at(1), at(3))


def test_status_blocks_and_since_for_a_covering_block(h: Harness) -> None:
    b = h.service.add_block("alice", timed_content(at(-1), at(2)))
    h.clock.advance(timedelta(hours=1))
    s = h.service.status("alice")
    assert (s.status, s.since, s.until, s.blocks) == ("away", T0, at(2), [b.id])
    assert s.as_json() == {"user": "alice", "status": "away", "reason": "ooo_started", "since": iso(T0),
                           "until": iso(at(2)), "blocks": [b.id]}


# --------------------------------------------------------------------------- working hours


def test_working_hours_only_count_when_turned_on(harness_factory: Callable[..., Harness]) -> None:
    hours = {0: ((time(9), time(17)),)}
    h = harness_factory([user("alice", "work", working_hours=hours)])  # off by default
    h.clock.set(at(12))
    assert h.service.advance_all() == 0
    assert h.service.status("alice").status == "available"


def test_away_outside_working_hours(harness_factory: Callable[..., Harness]) -> None:
    # Monday 09:00-17:00 Stockholm (+01:00 in early March) = 08:00-16:00 UTC; no hours on other days.
    hours = {0: ((time(9), time(17)),)}
    h = harness_factory([user("alice", "work", working_hours=hours)], away_outside_working_hours=True)
    s = h.service.status("alice")
    assert (s.status, s.until) == ("available", at(7))
    assert h.service.next_boundary() == at(7)
    h.clock.set(at(7))
    assert h.service.advance_due() == 1
    s = h.service.status("alice")
    assert (s.status, s.reason, s.since, s.until) == ("away", "working_hours", at(7), at(-1, days=7))
    h.clock.set(at(-1, days=7))
    h.service.advance_all()
    assert transitions(db_of(h)) == [("away", "working_hours", iso(at(7))),
                                     ("available", "working_hours", iso(at(-1, days=7)))]


def test_block_ending_after_hours_leaves_status_away(harness_factory: Callable[..., Harness]) -> None:
    hours = {0: ((time(9), time(17)),)}
    h = harness_factory([user("alice", "work", working_hours=hours)], away_outside_working_hours=True)
    h.service.add_block("alice", timed_content(at(6), at(9)))  # 15:00-18:00 UTC, hours end at 16:00 UTC
    h.clock.set(at(10))
    h.service.advance_all()
    s = h.service.status("alice")
    assert (s.status, s.reason) == ("away", "working_hours")
    assert transitions(db_of(h)) == [("away", "ooo_started", iso(at(6)))]


def test_working_hours_follow_dst_in_the_users_zone(harness_factory: Callable[..., Harness]) -> None:
    hours = {0: ((time(9), time(17)),)}
    h = harness_factory([user("alice", "work", working_hours=hours)], away_outside_working_hours=True)
    # Monday 2026-03-30 is the first Monday of summer time: 09:00 local = 07:00 UTC.
    assert h.service.status("alice", at=datetime(2026, 3, 30, 6, 59, tzinfo=UTC)).status == "away"
    s = h.service.status("alice", at=datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert (s.status, s.until) == ("available", datetime(2026, 3, 30, 15, 0, tzinfo=UTC))


# --------------------------------------------------------------------------- tombstones


def test_purge_tombstones_removes_only_old_unlinked_deletions(h: Harness) -> None:
    db = db_of(h)
    old_unlinked = h.service.add_block("alice", timed_content(at(1), at(2)))
    old_linked = h.service.add_block("alice", timed_content(at(3), at(4)))
    live = h.service.add_block("alice", timed_content(at(5), at(6)))
    h.service.delete_block(old_unlinked.id)
    h.service.delete_block(old_linked.id)
    with db.session() as s:
        link = s.scalars(select(CalendarLinkRow).where(CalendarLinkRow.user_id == "alice")).one()
        s.add(EventLinkRow(link_id=link.id, block_id=old_linked.id, event_id="ev1", base_hash="x", synced_at=T0))
    h.clock.advance(timedelta(days=31))
    recent = h.service.add_block("alice", timed_content(at(1, days=40), at(2, days=40)))
    h.service.delete_block(recent.id)
    assert h.service.purge_tombstones(timedelta(days=30)) == 1
    with db.session() as s:
        remaining = set(s.scalars(select(BlockRow.id)))
    assert remaining == {old_linked.id, live.id, recent.id}
    assert h.service.purge_tombstones(timedelta(days=30)) == 0


def test_the_config_is_written_group_by_group_as_one_user_at_a_time_would(
        harness_factory: Callable[..., Harness], database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Start-up writes the config's users a group at a time (three reads per group): across
    group boundaries, new users get their links and status, a user's new calendar is linked,
    a calendar dropped from the file is switched off, and an away user is published once."""
    from syncd.service import Syncd
    from syncd.service import users as user_ops

    monkeypatch.setattr(user_ops, "CONFIG_GROUP", 2)
    h = harness_factory([user("alice", "work", "old"), user("bob", "work")])
    h.service.add_block("bob", timed_content(at(-1), at(3)))
    published = len(outbox(database))
    config = h.service.config
    wider = (user("alice", "work", "new"), user("bob", "work"), user("carol", "cal"), user("dave"),
             user("erin", "x", "y"))
    Syncd(type(config)(path=config.path, daemon=config.daemon, accounts=config.accounts, users=wider,
                       sinks=config.sinks), database, clock=h.clock).prepare()
    with database.session() as s:
        links = {(r.user_id, r.calendar): r.enabled for r in s.scalars(select(CalendarLinkRow))}
    assert links == {("alice", "work"): True, ("alice", "old"): False, ("alice", "new"): True,
                     ("bob", "work"): True, ("carol", "cal"): True, ("erin", "x"): True, ("erin", "y"): True}
    assert {u: h.service.status(u).status for u in ("alice", "bob", "carol", "dave", "erin")} == {
        "alice": "available", "bob": "away", "carol": "available", "dave": "available", "erin": "available"}
    assert len(outbox(database)) == published  # bob's away was published before; nothing new
