"""The local (vdir) connector: the connector contract, then what is particular to files.

A person's calendar app is played by `LocalPerson`, which writes ``.ics`` files the way
vdirsyncer-style tools do (temporary file, then rename).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from connectors.local.connector import LocalConnector
from syncd.core.calendars import EventDraft, OooRules, SyncWindow
from syncd.core.errors import ConfigError, CursorExpired, NotFound, PreconditionFailed
from syncd.core.ooo import OooContent, all_day_content, timed_content
from tests.connectors.contract import TZ, ConnectorContract, all_day, timed

LOGGER = "connectors.local"  # the package: each of its modules logs under its own name


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text.replace("\n", "\r\n"), encoding="utf-8", newline="")
    os.replace(tmp, path)


def vevent(uid: str, *lines: str) -> str:
    body = "\n".join(("BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", *lines, "END:VEVENT"))
    return body


def vcalendar(*events: str) -> str:
    return "\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Example Corp.//Calendar 1.0//EN", *events,
                      "END:VCALENDAR", ""))


def time_lines(content: OooContent) -> list[str]:
    if content.all_day:
        assert content.start_date and content.end_date
        return [f"DTSTART;VALUE=DATE:{content.start_date:%Y%m%d}", f"DTEND;VALUE=DATE:{content.end_date:%Y%m%d}"]
    return [f"DTSTART:{_stamp(content.start)}", f"DTEND:{_stamp(content.end)}"]


class LocalPerson:
    """Somebody whose calendar app keeps one file per event in the folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ooo: dict[str, bool] = {}

    def write(self, uid: str, content: OooContent, ooo: bool) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        status = "OOF" if ooo else "BUSY"
        _write(self.folder / f"{uid}.ics", vcalendar(vevent(
            uid, f"SUMMARY:{content.title}", *time_lines(content), "DESCRIPTION:Back on Monday",
            "CATEGORIES:Personal", f"X-MICROSOFT-CDO-BUSYSTATUS:{status}")))
        self.ooo[uid] = ooo

    def add(self, content: OooContent, ooo: bool = True) -> str:
        uid = f"{uuid.uuid4()}@example.com"
        self.write(uid, content, ooo)
        return uid

    def edit(self, event_id: str, content: OooContent) -> None:
        self.write(event_id, content, self.ooo[event_id])

    def remove(self, event_id: str) -> None:
        (self.folder / f"{event_id}.ics").unlink()

    def unmark_ooo(self, event_id: str) -> None:
        text = (self.folder / f"{event_id}.ics").read_text(encoding="utf-8")
        _write(self.folder / f"{event_id}.ics", text.replace("BUSYSTATUS:OOF", "BUSYSTATUS:BUSY").replace("\r\n", "\n"))
        self.ooo[event_id] = False


class TestLocalConnectorContract(ConnectorContract):
    @pytest.fixture
    def connector(self, tmp_path: Path) -> Iterator[LocalConnector]:
        connector = LocalConnector(tmp_path / "calendars")
        yield connector
        connector.close()

    @pytest.fixture
    def calendar(self, tmp_path: Path) -> str:
        (tmp_path / "calendars" / "work").mkdir(parents=True)
        return "work"

    @pytest.fixture
    def person(self, tmp_path: Path, calendar: str) -> LocalPerson:
        return LocalPerson(tmp_path / "calendars" / calendar)


# -- local specifics ---------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "calendars" / "work"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def connector(tmp_path: Path) -> LocalConnector:
    return LocalConnector(tmp_path / "calendars")


@pytest.fixture
def person(folder: Path) -> LocalPerson:
    return LocalPerson(folder)


@pytest.fixture
def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


def draft(block_id: str, content: OooContent) -> EventDraft:
    return EventDraft(block_id=block_id, content=content, timezone=TZ)


def ids(connector: LocalConnector, window: SyncWindow) -> set[str]:
    return {e.event_id for e in connector.changes("work", None, window).events}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER) and r.levelno >= logging.WARNING]


def _monday_in(days: int) -> date:
    day = datetime.now(UTC).date() + timedelta(days=days)
    return day - timedelta(days=day.weekday())


def weekly_series(folder: Path, uid: str = "standup-free", *, all_day_series: bool = False, count: int = 6) -> date:
    """A person's weekly OOO afternoon (or day) off, starting on a Monday two weeks ahead."""
    first = _monday_in(14)
    if all_day_series:
        times = [f"DTSTART;VALUE=DATE:{first:%Y%m%d}", f"DTEND;VALUE=DATE:{first + timedelta(days=1):%Y%m%d}"]
    else:
        times = [f"DTSTART;TZID=Europe/Stockholm:{first:%Y%m%d}T130000",
                 f"DTEND;TZID=Europe/Stockholm:{first:%Y%m%d}T170000"]
    _write(folder / f"{uid}.ics", vcalendar(vevent(
        uid, "SUMMARY:Afternoon off", *times, f"RRULE:FREQ=WEEKLY;COUNT={count}", "X-MICROSOFT-CDO-BUSYSTATUS:OOF",
        "DESCRIPTION:Every Monday")))
    return first


def stockholm(day: date, hour: int) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo("Europe/Stockholm")).astimezone(UTC)


def occurrence(uid: str, day: date, hour: int = 13) -> str:
    return f"{uid}/{stockholm(day, hour):%Y%m%dT%H%M%SZ}"


# cursor and window ------------------------------------------------------------------------------


def test_a_cursor_from_another_window_gives_a_full_listing(
    connector: LocalConnector, person: LocalPerson, window: SyncWindow
) -> None:
    event_id = person.add(timed(5))
    first = connector.changes("work", None, window)
    moved = SyncWindow(window.start + timedelta(days=1), window.end + timedelta(days=1), TZ)
    changes = connector.changes("work", first.cursor, moved)
    assert changes.full
    assert [e.event_id for e in changes.events] == [event_id]
    same_day = SyncWindow(window.start + timedelta(seconds=1), window.end + timedelta(seconds=1), TZ)
    assert not connector.changes("work", changes.cursor, moved).full
    assert connector.changes("work", first.cursor, same_day).full is False


@pytest.mark.parametrize("cursor", ["", "garbage", "[]", '{"v":1}', '{"v":99,"w":[],"f":{}}',
                                    '{"v":1,"w":["a","b","c"],"f":{"x.ics":"e"}}'])
def test_an_unreadable_cursor_expires(
    connector: LocalConnector, folder: Path, window: SyncWindow, cursor: str
) -> None:
    with pytest.raises(CursorExpired):
        connector.changes("work", cursor, window)


def test_cursor_is_compact_json(connector: LocalConnector, person: LocalPerson, window: SyncWindow) -> None:
    person.add(timed(5))
    cursor = connector.changes("work", None, window).cursor
    assert cursor is not None and " " not in cursor and cursor.startswith("{")


def test_an_in_place_edit_within_one_clock_tick_is_still_seen(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    path = folder / "trip.ics"
    path.write_text(vcalendar(vevent("trip", "SUMMARY:Trip 1", *time_lines(timed(5)),
                                     "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    before = path.stat()
    cursor = connector.changes("work", None, window).cursor
    # same size, same inode, same mtime: only the content tells
    path.write_text(vcalendar(vevent("trip", "SUMMARY:Trip 2", *time_lines(timed(5)),
                                     "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    changes = connector.changes("work", cursor, window)
    assert [e.content.title for e in changes.events] == ["Trip 2"]


def test_event_moved_to_another_file_is_not_removed(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    text = vcalendar(vevent("trip", "SUMMARY:Trip", *time_lines(timed(5)), "X-MICROSOFT-CDO-BUSYSTATUS:OOF"))
    _write(folder / "a.ics", text)
    cursor = connector.changes("work", None, window).cursor
    _write(folder / "b.ics", text)
    (folder / "a.ics").unlink()
    changes = connector.changes("work", cursor, window)
    assert changes.removed == []
    assert [e.event_id for e in changes.events] == ["trip"]


def test_files_that_are_not_events_are_ignored(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    text = vcalendar(vevent("x", *time_lines(timed(5)), "X-MICROSOFT-CDO-BUSYSTATUS:OOF"))
    for name in (".hidden.ics", "notes.txt", "x.ics.tmp", ".x.ics.123.tmp"):
        (folder / name).write_text(text)
    (folder / "sub.ics").mkdir()
    assert connector.changes("work", None, window).events == []


# recurring series ------------------------------------------------------------------------------


def test_a_recurring_series_is_listed_occurrence_by_occurrence(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder)
    events = connector.changes("work", None, window).events
    days = [first + timedelta(weeks=n) for n in range(6)]
    assert [e.event_id for e in events] == [occurrence("standup-free", d) for d in days]
    assert {e.series_id for e in events} == {"standup-free"}
    assert len({e.etag for e in events}) == 1  # one file, one version
    assert [e.content for e in events] == [
        timed_content(stockholm(d, 13), stockholm(d, 17), "Afternoon off") for d in days]


def test_overriding_one_occurrence(connector: LocalConnector, folder: Path, window: SyncWindow) -> None:
    first = weekly_series(folder)
    listed = connector.changes("work", None, window)
    target = occurrence("standup-free", first + timedelta(weeks=2))
    etag = next(e.etag for e in listed.events if e.event_id == target)
    moved = timed_content(stockholm(first + timedelta(weeks=2, days=1), 8),
                          stockholm(first + timedelta(weeks=2, days=1), 12), "Morning off instead")
    updated = connector.update("work", target, draft("b9", moved), etag)
    assert updated.event_id == target and updated.content == moved and updated.block_id == "b9"
    assert updated.series_id == "standup-free"

    changes = connector.changes("work", listed.cursor, window)
    by_id = {e.event_id: e for e in changes.events}
    assert by_id[target].content == moved and by_id[target].block_id == "b9"
    assert len(by_id) == 6 and changes.removed == []
    others = [e for e in by_id.values() if e.event_id != target]
    assert all(e.block_id is None and e.content.title == "Afternoon off" for e in others)

    cal = icalendar.Calendar.from_ical((folder / "standup-free.ics").read_bytes())
    overrides = [e for e in cal.walk("VEVENT") if "RECURRENCE-ID" in e]
    assert len(overrides) == 1
    assert str(overrides[0]["X-SYNCD-BLOCK-ID"]) == "b9"
    assert str(overrides[0]["DESCRIPTION"]) == "Every Monday"  # copied from the master

    again = timed_content(moved.start, moved.end + timedelta(hours=1), "Morning off instead")
    connector.update("work", target, draft("b9", again), updated.etag)
    cal = icalendar.Calendar.from_ical((folder / "standup-free.ics").read_bytes())
    assert len([e for e in cal.walk("VEVENT") if "RECURRENCE-ID" in e]) == 1
    current = connector.get("work", target)
    assert current is not None and current.content == again


def test_deleting_one_occurrence_adds_an_exdate(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder)
    listed = connector.changes("work", None, window)
    target = occurrence("standup-free", first + timedelta(weeks=1))
    connector.delete("work", target, listed.events[0].etag)
    changes = connector.changes("work", listed.cursor, window)
    assert changes.removed == [target]
    assert len(changes.events) == 5
    master = icalendar.Calendar.from_ical((folder / "standup-free.ics").read_bytes()).walk("VEVENT")[0]
    assert "EXDATE" in master
    assert connector.get("work", target) is None
    connector.delete("work", target, None)  # already gone
    with pytest.raises(NotFound):
        connector.update("work", target, draft("b1", timed(3)), changes.events[0].etag)


def test_deleting_an_overridden_occurrence_drops_the_override(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder)
    listed = connector.changes("work", None, window)
    target = occurrence("standup-free", first)
    updated = connector.update("work", target, draft("b1", timed(40)), listed.events[0].etag)
    connector.delete("work", target, updated.etag)
    cal = icalendar.Calendar.from_ical((folder / "standup-free.ics").read_bytes())
    assert [e for e in cal.walk("VEVENT") if "RECURRENCE-ID" in e] == []
    assert target not in ids(connector, window)
    assert len(ids(connector, window)) == 5


def test_writes_to_an_occurrence_check_the_etag(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder)
    stale = connector.changes("work", None, window).events[0].etag
    weekly_series(folder, count=7)  # the person extends the series
    target = occurrence("standup-free", first)
    with pytest.raises(PreconditionFailed):
        connector.update("work", target, draft("b1", timed(40)), stale)
    with pytest.raises(PreconditionFailed):
        connector.delete("work", target, stale)


def test_all_day_series_ids_are_dates_and_overrides_use_dates(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder, "day-off", all_day_series=True)
    events = connector.changes("work", None, window).events
    assert events[0].event_id == f"day-off/{first:%Y%m%d}"
    assert events[0].content == all_day_content(first, first + timedelta(days=1), TZ, "Afternoon off")
    second = f"day-off/{first + timedelta(weeks=1):%Y%m%d}"
    longer = all_day_content(first + timedelta(weeks=1), first + timedelta(weeks=1, days=2), TZ, "Long weekend")
    connector.update("work", second, draft("b2", longer), events[0].etag)
    cal = icalendar.Calendar.from_ical((folder / "day-off.ics").read_bytes())
    override = next(e for e in cal.walk("VEVENT") if "RECURRENCE-ID" in e)
    assert override["RECURRENCE-ID"].dt == first + timedelta(weeks=1)
    current = connector.get("work", second)
    assert current is not None and current.content == longer


def test_a_plain_id_does_not_address_a_whole_series(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    weekly_series(folder)
    etag = connector.changes("work", None, window).events[0].etag
    with pytest.raises(NotFound):
        connector.update("work", "standup-free", draft("b1", timed(3)), etag)
    connector.delete("work", "standup-free", etag)  # not an id we hand out: nothing to delete
    assert (folder / "standup-free.ics").exists()


def test_secondly_series_without_end_is_bounded(
    tmp_path: Path, folder: Path, window: SyncWindow, caplog: pytest.LogCaptureFixture
) -> None:
    connector = LocalConnector(tmp_path / "calendars", max_occurrences=50)
    soon = datetime.now(UTC) + timedelta(days=1)
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)
    for name, start in (("soon", soon), ("long-ago", long_ago)):
        _write(folder / f"{name}.ics", vcalendar(vevent(
            name, f"DTSTART:{_stamp(start)}", "DURATION:PT1S", "RRULE:FREQ=SECONDLY",
            "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    with caplog.at_level(logging.WARNING, LOGGER):
        events = connector.changes("work", None, window).events
    assert len([e for e in events if e.series_id == "soon"]) == 50
    assert len([e for e in events if e.series_id == "long-ago"]) == 50
    assert all(window.overlaps(e.content.start, e.content.end) for e in events)
    assert len(warnings_of(caplog)) == 2
    assert all("more than 50 occurrences" in m for m in warnings_of(caplog))


# bad input -----------------------------------------------------------------------------------


def test_a_malformed_file_is_skipped_with_one_log_line(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = person.add(timed(5))
    (folder / "broken.ics").write_bytes(b"BEGIN:VCALENDAR\r\nthis is not iCalendar\r\n\x00\xff")
    with caplog.at_level(logging.WARNING, LOGGER):
        first = connector.changes("work", None, window)
        connector.changes("work", None, window)
        connector.changes("work", first.cursor, window)
    assert [e.event_id for e in first.events] == [good]
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "broken.ics" in lines[0]
    assert "this is not iCalendar" not in lines[0]  # no event text in logs


def test_a_file_broken_while_saving_does_not_remove_its_events(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow,
) -> None:
    event_id = person.add(timed(5))
    cursor = connector.changes("work", None, window).cursor
    (folder / f"{event_id}.ics").write_text("BEGIN:VCALENDAR\nBEGIN:VEVENT\n")
    half_saved = connector.changes("work", cursor, window)
    assert half_saved.removed == [] and half_saved.events == []
    person.edit(event_id, timed(6))
    fixed = connector.changes("work", half_saved.cursor, window)
    assert [e.content for e in fixed.events] == [timed(6)]


def test_one_bad_event_does_not_hide_the_others_in_a_file(
    connector: LocalConnector, folder: Path, window: SyncWindow, caplog: pytest.LogCaptureFixture
) -> None:
    _write(folder / "mixed.ics", vcalendar(
        vevent("bad", 'DTSTART;TZID="W. Europe Standard Time:20200609T090000"', "DTEND:20200609T093000Z",
               "RRULE:FREQ=DAILY", "X-MICROSOFT-CDO-BUSYSTATUS:OOF"),
        vevent("good", *time_lines(timed(5)), "X-MICROSOFT-CDO-BUSYSTATUS:OOF"),
    ))
    with caplog.at_level(logging.WARNING, LOGGER):
        assert ids(connector, window) == {"good"}
    assert len(warnings_of(caplog)) == 1 and "mixed.ics" in warnings_of(caplog)[0]


def test_a_file_over_the_size_limit_is_skipped(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = person.add(timed(5))
    with open(folder / "huge.ics", "wb") as f:
        f.truncate(20_000_000)  # 20 MB without writing them
    with caplog.at_level(logging.WARNING, LOGGER):
        assert ids(connector, window) == {good}
        assert ids(connector, window) == {good}
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "huge.ics" in lines[0] and "20000000 bytes" in lines[0]


def test_an_unknown_tzid_skips_that_event(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = person.add(timed(5))
    day = datetime.now(UTC).date() + timedelta(days=3)
    _write(folder / "mars.ics", vcalendar(vevent(
        "mars", f"DTSTART;TZID=Mars/Olympus_Mons:{day:%Y%m%d}T090000",
        f"DTEND;TZID=Mars/Olympus_Mons:{day:%Y%m%d}T170000", "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    with caplog.at_level(logging.WARNING, LOGGER):
        assert ids(connector, window) == {good}
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "mars.ics" in lines[0] and "Mars/Olympus_Mons" in lines[0]


def test_a_windows_tzid_without_vtimezone_is_mapped(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    day = datetime.now(UTC).date() + timedelta(days=3)
    _write(folder / "owa.ics", vcalendar(vevent(
        "owa", f'DTSTART;TZID="(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna":{day:%Y%m%d}T090000',
        f'DTEND;TZID="(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna":{day:%Y%m%d}T170000',
        "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    (event,) = connector.changes("work", None, window).events
    assert event.content.start == stockholm(day, 9) and event.content.end == stockholm(day, 17)


@pytest.mark.parametrize("call", ["changes", "get", "find", "update", "delete"])
def test_a_missing_calendar_folder_is_a_config_error(
    tmp_path: Path, window: SyncWindow, call: str
) -> None:
    (tmp_path / "calendars").mkdir()
    connector = LocalConnector(tmp_path / "calendars")
    actions = {
        "changes": lambda: connector.changes("holidays", None, window),
        "get": lambda: connector.get("holidays", "x"),
        "find": lambda: connector.find_by_block_id("holidays", "b1"),
        "update": lambda: connector.update("holidays", "x", draft("b1", timed(3)), "e"),
        "delete": lambda: connector.delete("holidays", "x", None),
    }
    with pytest.raises(ConfigError, match=r"calendar folder .*holidays does not exist; create it"):
        actions[call]()


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../work"])
def test_a_calendar_name_must_be_a_folder_name(connector: LocalConnector, window: SyncWindow, name: str) -> None:
    with pytest.raises(ConfigError):
        connector.changes(name, None, window)


def test_create_makes_the_calendar_folder(tmp_path: Path, window: SyncWindow) -> None:
    (tmp_path / "calendars").mkdir()
    connector = LocalConnector(tmp_path / "calendars")
    created = connector.create("new", draft("b1", timed(3)))
    assert (tmp_path / "calendars" / "new" / "syncd-b1.ics").is_file()
    assert created.event_id == "syncd-b1"
    assert {e.event_id for e in connector.changes("new", None, window).events} == {"syncd-b1"}


# what we write ---------------------------------------------------------------------------------


def test_created_files_carry_the_markers_and_parse(connector: LocalConnector, folder: Path) -> None:
    first = datetime.now(UTC).date() + timedelta(days=10)
    content = all_day_content(first, first + timedelta(days=3), TZ, "Vacation")
    created = connector.create("work", draft("blk-1", content))
    assert created.event_id == "syncd-blk-1"
    raw = (folder / "syncd-blk-1.ics").read_bytes()
    assert b"X-MICROSOFT-CDO-BUSYSTATUS:OOF" in raw and b"TRANSP:OPAQUE" in raw
    assert b"X-SYNCD-BLOCK-ID:blk-1" in raw and b"PRODID:-//syncd//syncd//EN" in raw
    cal = icalendar.Calendar.from_ical(raw)
    (event,) = cal.walk("VEVENT")
    assert str(event["UID"]) == "syncd-blk-1"
    assert event["DTSTART"].dt == first and event["DTEND"].dt == first + timedelta(days=3)
    assert event["DTSTART"].params.get("VALUE") == "DATE"
    assert str(event["SUMMARY"]) == "Vacation"
    assert event["DTSTAMP"].dt.tzinfo is not None and "LAST-MODIFIED" in event
    assert [p.name for p in folder.iterdir()] == ["syncd-blk-1.ics"]  # no temporary file left


def test_timed_events_are_written_in_utc(connector: LocalConnector, folder: Path) -> None:
    created = connector.create("work", draft("b1", timed(3)))
    event = icalendar.Calendar.from_ical((folder / f"{created.event_id}.ics").read_bytes()).walk("VEVENT")[0]
    assert f"DTSTART:{_stamp(timed(3).start)}".encode() in event.to_ical()
    assert event["DTEND"].dt == timed(3).end


def test_update_keeps_the_persons_other_properties(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow
) -> None:
    event_id = person.add(timed(5, title="Conference"))
    etag = connector.changes("work", None, window).events[0].etag
    connector.update("work", event_id, draft("b4", timed(5, hours=10, title="Conference")), etag)
    event = icalendar.Calendar.from_ical((folder / f"{event_id}.ics").read_bytes()).walk("VEVENT")[0]
    assert str(event["DESCRIPTION"]) == "Back on Monday"
    assert [str(c) for c in event["CATEGORIES"].cats] == ["Personal"]
    assert str(event["X-MICROSOFT-CDO-BUSYSTATUS"]) == "OOF"
    assert str(event["X-SYNCD-BLOCK-ID"]) == "b4"
    assert event["DTEND"].dt == timed(5, hours=10).end


def test_update_keeps_an_event_ooo_that_was_so_by_keyword(
    tmp_path: Path, folder: Path, window: SyncWindow
) -> None:
    connector = LocalConnector(tmp_path / "calendars", OooRules(keywords=("vacation",)))
    _write(folder / "v.ics", vcalendar(vevent("v", "SUMMARY:Vacation in Rome", *time_lines(timed(5)))))
    etag = connector.changes("work", None, window).events[0].etag
    updated = connector.update("work", "v", draft("b1", timed(5, title="Out of office")), etag)
    assert connector.get("work", "v") == updated
    assert b"X-MICROSOFT-CDO-BUSYSTATUS:OOF" in (folder / "v.ics").read_bytes()


def test_find_by_block_id_after_a_restart(tmp_path: Path, folder: Path, window: SyncWindow) -> None:
    created = LocalConnector(tmp_path / "calendars").create("work", draft("b1", timed(3)))
    fresh = LocalConnector(tmp_path / "calendars")
    found = fresh.find_by_block_id("work", "b1")
    assert found == created
    assert fresh.create("work", draft("b1", timed(3))) == created
    assert len(list(folder.iterdir())) == 1


def test_find_by_block_id_sees_an_override_we_wrote(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    first = weekly_series(folder)
    etag = connector.changes("work", None, window).events[0].etag
    target = occurrence("standup-free", first)
    connector.update("work", target, draft("b5", timed(30)), etag)
    found = LocalConnector(folder.parent).find_by_block_id("work", "b5")
    assert found is not None and found.event_id == target


def test_updated_is_last_modified_else_dtstamp_else_mtime(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    when = timed(5)
    _write(folder / "a.ics", vcalendar(vevent("a", *time_lines(when), "LAST-MODIFIED:20260102T030405Z",
                                              "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    _write(folder / "b.ics", vcalendar(vevent("b", *time_lines(when), "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    _write(folder / "c.ics", vcalendar("\n".join(("BEGIN:VEVENT", "UID:c", *time_lines(when),
                                                  "X-MICROSOFT-CDO-BUSYSTATUS:OOF", "END:VEVENT"))))
    events = {e.event_id: e for e in connector.changes("work", None, window).events}
    assert events["a"].updated == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert events["b"].updated == datetime(2026, 1, 1, tzinfo=UTC)
    mtime = datetime.fromtimestamp((folder / "c.ics").stat().st_mtime, UTC)
    assert events["c"].updated == mtime


def test_delete_of_a_plain_event_removes_the_file(
    connector: LocalConnector, person: LocalPerson, folder: Path, window: SyncWindow
) -> None:
    event_id = person.add(timed(5))
    etag = connector.changes("work", None, window).events[0].etag
    connector.delete("work", event_id, etag)
    assert list(folder.iterdir()) == []


def test_events_without_uid_get_stable_ids(connector: LocalConnector, folder: Path, window: SyncWindow) -> None:
    lines = [*time_lines(timed(5)), "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]
    _write(folder / "anon.ics", vcalendar("\n".join(("BEGIN:VEVENT", *lines, "END:VEVENT"))))
    assert ids(connector, window) == {"anon"}
    assert ids(LocalConnector(folder.parent), window) == {"anon"}
    event = connector.get("work", "anon")
    assert event is not None
    updated = connector.update("work", "anon", draft("b1", timed(6)), event.etag)
    assert updated.event_id == "anon" and updated.content == timed(6)


def test_all_day_events_read_in_the_windows_zone(
    connector: LocalConnector, folder: Path, window: SyncWindow
) -> None:
    content = all_day(3, 2)
    _write(folder / "d.ics", vcalendar(vevent("d", "SUMMARY:Vacation", *time_lines(content),
                                              "X-MICROSOFT-CDO-BUSYSTATUS:OOF")))
    tokyo = SyncWindow(window.start, window.end, "Asia/Tokyo")
    (event,) = connector.changes("work", None, tokyo).events
    assert content.start_date is not None and content.end_date is not None
    assert event.content == all_day_content(content.start_date, content.end_date, "Asia/Tokyo", "Vacation")
    assert event.content.start != content.start  # midnight in Tokyo, not in Stockholm
