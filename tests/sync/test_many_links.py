"""`LinkSyncer.sync_many` over many links: chunks listed ahead while the one before is carried
out, and plans that only change the store carried out for many links in one transaction.

Memory calendars on a real database; each user has calendars of their own ("<user>-work").
The chunk size is made small so that a handful of links spans several chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import syncd.sync.runner
from syncd.core.ooo import OooContent, timed_content
from tests.conftest import Harness, user

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TZ = "Europe/Stockholm"
HarnessFactory = Callable[..., Harness]
USERS = [f"u{n}" for n in range(7)]


def ooo(day: int, title: str, hours: int = 8) -> OooContent:
    start = START + timedelta(days=day)
    return timed_content(start, start + timedelta(hours=hours), title)


def blocks_of(h: Harness, uid: str) -> list[tuple[datetime, datetime, str]]:
    return sorted((b.content.start, b.content.end, b.content.title) for b in h.service.list_blocks(uid))


def events_of(h: Harness, cal: str) -> list[tuple[datetime, datetime, str]]:
    return sorted((e.content.start, e.content.end, e.content.title) for e in h.calendars.calendar(cal).events.values())


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(syncd.sync.runner, "LIST_CHUNK", 3)  # 8 links: three chunks
    monkeypatch.setattr(syncd.sync.runner, "LOCAL_GROUP", 2)  # several transactions per chunk


@pytest.mark.usefixtures("small_chunks")
def test_first_sync_of_many_links_makes_each_users_blocks_once(harness_factory: HarnessFactory) -> None:
    h = harness_factory([*(user(uid, f"{uid}-work", tz=TZ) for uid in USERS),
                         user("alice", "alice-work", "alice-home", tz=TZ)])
    for n, uid in enumerate(USERS):
        h.calendars.add(f"{uid}-work", ooo(1 + n, f"{uid} away"))
        h.calendars.add(f"{uid}-work", ooo(20 + n, f"{uid} holiday", hours=24))
    h.calendars.add("alice-work", ooo(2, "Dentist"))
    h.calendars.add("alice-home", ooo(3, "Moving"))

    outcomes = h.sync()

    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    for n, uid in enumerate(USERS):
        assert blocks_of(h, uid) == sorted([
            (ooo(1 + n, "").start, ooo(1 + n, "").end, f"{uid} away"),
            (ooo(20 + n, "", 24).start, ooo(20 + n, "", 24).end, f"{uid} holiday")])
    # Alice's two calendars are in one chunk: each one's event is one block, mirrored to the other.
    assert [title for _, _, title in blocks_of(h, "alice")] == ["Dentist", "Moving"]
    assert events_of(h, "alice-work") == events_of(h, "alice-home") == blocks_of(h, "alice")
    by_name = {o.name.split("/")[0]: o for o in outcomes if o.name.startswith("u")}
    assert all(by_name[uid].actions == 2 and by_name[uid].blocks_changed for uid in USERS)

    quiet = h.sync()
    assert all(o.ok and o.actions == 0 and not o.blocks_changed for o in quiet)
    assert all(len(blocks_of(h, uid)) == 2 for uid in USERS)


@pytest.mark.usefixtures("small_chunks")
def test_edits_in_many_calendars_reach_their_blocks_in_one_pass(harness_factory: HarnessFactory) -> None:
    h = harness_factory([user(uid, f"{uid}-work", tz=TZ) for uid in USERS])
    for n, uid in enumerate(USERS):
        h.calendars.add(f"{uid}-work", ooo(1 + n, f"{uid} away"))
    h.sync()
    h.clock.advance(timedelta(minutes=10))

    edited = USERS[1::2]
    for uid in edited:
        (event,) = h.calendars.calendar(f"{uid}-work").events.values()
        h.calendars.edit(f"{uid}-work", event.event_id, ooo(30, f"{uid} moved"))
    (gone,) = h.calendars.calendar("u0-work").events.values()
    h.calendars.remove("u0-work", gone.event_id)

    outcomes = {o.name.split("/")[0]: o for o in h.sync()}

    assert all(o.ok for o in outcomes.values())
    for uid in edited:
        assert blocks_of(h, uid) == [(ooo(30, "").start, ooo(30, "").end, f"{uid} moved")]
        assert outcomes[uid].actions == 1 and outcomes[uid].blocks_changed
    assert blocks_of(h, "u0") == []
    assert outcomes["u0"].blocks_changed
    for uid in set(USERS) - set(edited) - {"u0"}:
        assert len(blocks_of(h, uid)) == 1 and outcomes[uid].actions == 0
