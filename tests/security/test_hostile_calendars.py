"""Hostile calendars cost bounded work and are skipped alone; calendar folders follow no links.

Each hostile object here kept a worker busy for hours (memory growing all the while) before
the walks were bounded (`connectors.ical.walks`). Every run goes through a child process
with a generous timeout, so a regression fails the test instead of hanging the suite; no
assertion is about speed. What is asserted is behaviour: the call returns, the hostile event
is skipped, the normal OOO events beside it are listed, and one warning names the hostile one.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import ical
from connectors.google.series import Series, expand_series
from connectors.local.connector import LocalConnector
from syncd.core.calendars import OooRules, SyncWindow

WINDOW = SyncWindow(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC), "Europe/Stockholm")
TIMEOUT = 30.0  # seconds: only to turn a hang into a failure
# The deadline is not what skips these: their walks run out of steps first, on any machine.
LIMITS = ical.ExpansionLimits(expand_seconds=20.0)
OOF = "X-MICROSOFT-CDO-BUSYSTATUS:OOF"
EVERY = {n: ",".join(str(i) for i in range(lo, hi)) for n, (lo, hi) in
         {"month": (1, 13), "day": (1, 32), "hour": (0, 24), "minute": (0, 60), "second": (0, 60)}.items()}


def vevent(uid: str, *lines: str) -> list[str]:
    return ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", "SUMMARY:Away", OOF, *lines, "END:VEVENT"]


def vcalendar(*components: list[str]) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//hostile//EN", *(x for c in components for x in c),
             "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode()


def secondly_vtimezone(tzid: str) -> list[str]:
    return ["BEGIN:VTIMEZONE", f"TZID:{tzid}",
            "BEGIN:STANDARD", "DTSTART:19700101T000000", "RRULE:FREQ=SECONDLY",
            "TZOFFSETFROM:+0100", "TZOFFSETTO:+0000", "END:STANDARD",
            "BEGIN:DAYLIGHT", "DTSTART:19700101T000000", "RRULE:FREQ=SECONDLY",
            "TZOFFSETFROM:+0000", "TZOFFSETTO:+0100", "END:DAYLIGHT", "END:VTIMEZONE"]


# uid -> the components of one hostile object (its VEVENT, and the VTIMEZONE it uses)
HOSTILE: dict[str, list[list[str]]] = {
    "two-secondly-rules": [vevent("two-secondly-rules", "DTSTART:20260101T000000Z", "DURATION:PT1S",
                                  "RRULE:FREQ=SECONDLY", "RRULE:FREQ=SECONDLY;INTERVAL=2")],
    "yearly-every-second": [vevent("yearly-every-second", "DTSTART:20260101T000000Z", "DURATION:PT1S",
                                   f"RRULE:FREQ=YEARLY;BYMONTH={EVERY['month']};BYMONTHDAY={EVERY['day']};"
                                   f"BYHOUR={EVERY['hour']};BYMINUTE={EVERY['minute']};BYSECOND={EVERY['second']}")],
    "secondly-vtimezone": [secondly_vtimezone("Hostile Zone"),
                           vevent("secondly-vtimezone", "DTSTART;TZID=Hostile Zone:20261210T090000",
                                  "DTEND;TZID=Hostile Zone:20261210T170000")],
    # never matches again: dateutil looks for the next one until the year 9999 without yielding
    "never-matching-rule": [vevent("never-matching-rule", "DTSTART:20261105T090000Z", "DURATION:PT8H",
                                   "RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")],
}
NORMAL_EVENT = vevent("normal-ooo", "DTSTART:20261201T090000Z", "DTEND:20261201T170000Z")
NORMAL_SERIES = vevent("normal-series", "DTSTART:20261207T090000Z", "DTEND:20261207T170000Z",
                       "RRULE:FREQ=WEEKLY;COUNT=4")
NORMAL_IDS = {"normal-ooo", *(f"normal-series/202612{d:02d}T090000Z" for d in (7, 14, 21, 28))}


# -- running in a child process ----------------------------------------------------------------


def _child(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent as text
        conn.send(("error", traceback.format_exc()))


def bounded(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a child process: its answer, or a failure if it does not return in time."""
    ctx: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(TIMEOUT):
            pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {TIMEOUT:g} s")
        status, value = parent.recv()
    finally:
        process.kill()
        process.join()
    if status != "ok":
        pytest.fail(f"the child failed:\n{value}")
    return value


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def captured(logger: str) -> Iterator[_Warnings]:
    handler = _Warnings()
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)


# -- what the children run ---------------------------------------------------------------------


def parse(data: bytes) -> tuple[list[str], list[str]]:
    parsed = ical.parse_ooo_events(data, WINDOW, OooRules(), etag="e", limits=LIMITS)
    return [e.event_id for e in parsed.events], parsed.problems


def list_folder(root: str, calendar: str) -> tuple[list[str], list[str], list[str]]:
    """Two listings (the second from the first's cursor, then a full one again): the ids of
    the first, the ids of the last, and every warning logged."""
    with captured("connectors.local") as handler:
        connector = LocalConnector(Path(root), OooRules(), expand_seconds=LIMITS.expand_seconds)
        first = connector.changes(calendar, None, WINDOW)
        connector.changes(calendar, first.cursor, WINDOW)
        again = connector.changes(calendar, None, WINDOW)
    return [e.event_id for e in first.events], [e.event_id for e in again.events], handler.lines


def naming(lines: list[str], word: str) -> list[str]:
    return [line for line in lines if word in line]


def not_by_the_deadline(lines: list[str]) -> bool:
    """Skipped by its walks' bounds, not cut at the (generous) deadline of these tests."""
    return not naming(lines, "stopped after") and not naming(lines, "out of time")


# -- iCalendar objects -------------------------------------------------------------------------


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_object_alone_is_skipped_with_one_problem(uid: str) -> None:
    ids, problems = bounded(parse, vcalendar(*HOSTILE[uid]))
    assert ids == []
    assert len(naming(problems, uid)) == 1, problems
    assert not_by_the_deadline(problems), problems


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_event_beside_normal_ones_in_one_vcalendar(uid: str) -> None:
    ids, problems = bounded(parse, vcalendar(*HOSTILE[uid], NORMAL_EVENT, NORMAL_SERIES))
    assert set(ids) == NORMAL_IDS
    assert len(naming(problems, uid)) == 1, problems
    assert naming(problems, "normal") == [] and not_by_the_deadline(problems)


# -- local calendar folders --------------------------------------------------------------------


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_file_in_a_calendar_folder(tmp_path: Path, uid: str) -> None:
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / f"{uid}.ics").write_bytes(vcalendar(*HOSTILE[uid]))
    (folder / "normal-ooo.ics").write_bytes(vcalendar(NORMAL_EVENT))
    (folder / "normal-series.ics").write_bytes(vcalendar(NORMAL_SERIES))
    first, again, warnings = bounded(list_folder, str(tmp_path), "alice")
    assert set(first) == set(again) == NORMAL_IDS
    assert len(naming(warnings, uid)) == 1, warnings  # once per version of the file, not per listing
    assert len(warnings) == 1 and not_by_the_deadline(warnings), warnings


@pytest.mark.parametrize("uid", HOSTILE)
def test_a_hostile_event_in_a_calendar_file_with_normal_ones(tmp_path: Path, uid: str) -> None:
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "everything.ics").write_bytes(vcalendar(NORMAL_EVENT, *HOSTILE[uid], NORMAL_SERIES))
    first, again, warnings = bounded(list_folder, str(tmp_path), "alice")
    assert set(first) == set(again) == NORMAL_IDS
    assert len(warnings) == 1 and uid in warnings[0] and not_by_the_deadline(warnings), warnings


def delete_one_occurrence(data: bytes, uid: str) -> bytes | None:
    return ical.exclude_occurrence(data, uid, "20261210T080000Z", datetime(2026, 11, 2, tzinfo=UTC), UTC)


def test_writing_to_a_series_in_a_hostile_vtimezone_is_bounded_too() -> None:
    series = vevent("in-zone", "DTSTART;TZID=Hostile Zone:20261203T090000", "DURATION:PT8H", "RRULE:FREQ=WEEKLY",
                    "EXDATE;TZID=Hostile Zone:20261217T090000")
    other = vevent("in-zone", "RECURRENCE-ID;TZID=Hostile Zone:20261224T090000",
                   "DTSTART;TZID=Hostile Zone:20261224T100000", "DURATION:PT1H")
    written = bounded(delete_one_occurrence, vcalendar(secondly_vtimezone("Hostile Zone"), series, other), "in-zone")
    assert written is not None and b"BEGIN:VTIMEZONE" in written  # written back as it was, plus the EXDATE


def custom_zone(tzid: str, hours: int) -> list[str]:
    return ["BEGIN:VTIMEZONE", f"TZID:{tzid}", "BEGIN:STANDARD", "DTSTART:16010101T000000",
            f"TZOFFSETFROM:+{hours:02d}00", f"TZOFFSETTO:+{hours:02d}00", "END:STANDARD", "END:VTIMEZONE"]


def parse_both(first: bytes, second: bytes) -> tuple[list[datetime], list[datetime]]:
    one = ical.parse_ooo_events(first, WINDOW, OooRules(), etag="e", limits=LIMITS)
    two = ical.parse_ooo_events(second, WINDOW, OooRules(), etag="e", limits=LIMITS)
    return [e.content.start for e in one.events], [e.content.start for e in two.events]


def test_a_vtimezone_is_read_from_its_own_calendar_only() -> None:
    """Another calendar's definition of the same TZID, read earlier, changes nothing (icalendar
    keeps the first definition of a TZID for the whole process)."""
    tzid = "Customized Time Zone 3f9c"
    event = vevent("zoned", f"DTSTART;TZID={tzid}:20261201T090000", f"DTEND;TZID={tzid}:20261201T170000")
    first, second = bounded(parse_both, vcalendar(custom_zone(tzid, 1), event), vcalendar(event, custom_zone(tzid, 5)))
    assert first == [datetime(2026, 12, 1, 8, tzinfo=UTC)]
    assert second == [datetime(2026, 12, 1, 4, tzinfo=UTC)]


# -- Google recurrence strings -----------------------------------------------------------------


def expand_google(recurrence: list[str]) -> tuple[list[str], list[str]]:
    master = {"id": "g1", "eventType": "outOfOffice", "status": "confirmed", "summary": "Away",
              "start": {"dateTime": "2026-01-01T09:00:00Z"}, "end": {"dateTime": "2026-01-01T17:00:00Z"},
              "recurrence": recurrence}
    with captured("connectors.google") as handler:
        events = expand_series(Series(master=master), WINDOW, LIMITS)
    return [e.event_id for e in events], handler.lines


@pytest.mark.parametrize("recurrence", [
    ["RRULE:FREQ=SECONDLY", "RRULE:FREQ=SECONDLY;INTERVAL=2"],
    ["RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30"],
], ids=["two-secondly-rules", "never-matching-rule"])
def test_a_hostile_google_series_is_skipped_with_one_warning(recurrence: list[str]) -> None:
    ids, warnings = bounded(expand_google, recurrence)
    assert ids == []
    assert len(warnings) == 1 and "g1" in warnings[0], warnings
    ids, warnings = bounded(expand_google, ["RRULE:FREQ=WEEKLY;BYMONTH=12"])
    assert ids == [f"g1_202612{d:02d}T090000Z" for d in (3, 10, 17, 24, 31)] and warnings == []


def test_a_google_recurrence_string_cannot_add_components() -> None:
    smuggled = ["RRULE:FREQ=DAILY;COUNT=1\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:smuggled\r\n"
                "DTSTART:20261201T090000Z\r\nDTEND:20261201T170000Z\r\nX-MICROSOFT-CDO-BUSYSTATUS:OOF"]
    ids, _warnings = bounded(expand_google, smuggled)
    assert not any("smuggled" in i for i in ids), ids


# -- symbolic links in calendar folders --------------------------------------------------------


def _ooo_file(uid: str, block: str | None = None) -> bytes:
    extra = [f"X-SYNCD-BLOCK-ID:{block}"] if block else []
    return vcalendar(vevent(uid, "DTSTART:20261202T090000Z", "DTEND:20261202T170000Z", *extra))


def lookups(root: str) -> tuple[Any, Any, Any, list[str]]:
    with captured("connectors.local") as handler:
        connector = LocalConnector(Path(root), OooRules())
        connector.changes("alice", None, WINDOW)
        found = (connector.get("alice", "bobs-secret"), connector.get("alice", "inside"),
                 connector.find_by_block_id("alice", "blk"))
    return (*found, handler.lines)


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """alice's folder with one plain event and links of every kind; bob's folder beside it."""
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    alice.mkdir()
    bob.mkdir()
    (alice / "normal-ooo.ics").write_bytes(vcalendar(NORMAL_EVENT))
    (alice / "inside-target.ics").write_bytes(_ooo_file("inside"))
    (bob / "secret.ics").write_bytes(_ooo_file("bobs-secret"))
    (bob / "blk.ics").write_bytes(_ooo_file("bobs-block", block="blk"))
    (alice / "passwd.ics").symlink_to("/etc/passwd")
    (alice / "bobs-secret.ics").symlink_to(bob / "secret.ics")
    (alice / "syncd-blk.ics").symlink_to(bob / "blk.ics")  # where syncd looks for block "blk" first
    (alice / "relative.ics").symlink_to(Path("..") / "bob" / "secret.ics")
    (alice / "bob-folder").symlink_to(bob, target_is_directory=True)
    (alice / "bob-folder.ics").symlink_to(bob, target_is_directory=True)
    (alice / "inside.ics").symlink_to("inside-target.ics")  # inside the folder: skipped too
    return tmp_path


LINKS = ("passwd.ics", "bobs-secret.ics", "syncd-blk.ics", "relative.ics", "bob-folder", "bob-folder.ics",
         "inside.ics")


def test_links_in_a_calendar_folder_are_skipped_once_and_never_read(linked: Path) -> None:
    first, again, warnings = bounded(list_folder, str(linked), "alice")
    assert set(first) == set(again) == {"normal-ooo", "inside"}  # "inside" from its own file only
    for name in LINKS:
        assert len(naming(warnings, f"/{name}:")) == 1, (name, warnings)
    assert len(warnings) == len(LINKS), warnings
    assert not naming(warnings, "not an iCalendar object")  # /etc/passwd was never parsed


def test_lookups_do_not_follow_links_either(linked: Path) -> None:
    secret, inside, block, warnings = bounded(lookups, str(linked))
    assert secret is None and block is None
    assert inside is not None and inside.event_id == "inside"  # found in its own file
    assert all("symbolic link" in line for line in warnings), warnings

