"""The fast reader of simple objects answers exactly what the full iCalendar reader answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.ical import parse_ooo_events
from connectors.ical.fast import read_simple
from syncd.core.calendars import OooRules, SyncWindow

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "data" / "ics").glob("*.ics"))
WINDOW = SyncWindow(datetime(2000, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC), "Europe/Stockholm")
RULES = OooRules(categories=("Vacation", "Semester, lång"), keywords=("OOO", "ledig"))
STAMP = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def both(data: bytes, window: SyncWindow = WINDOW, rules: OooRules = RULES) -> tuple[object, object]:
    full = parse_ooo_events(data, window, rules, etag="e", fallback_updated=STAMP, fallback_uid="file", fast=False)
    simple = read_simple(data, window, rules, etag="e", fallback_updated=STAMP, fallback_uid="file")
    return full, simple


def assert_same(data: bytes, window: SyncWindow = WINDOW, rules: OooRules = RULES) -> bool:
    """True when the fast reader took the object (and then answered as the full one)."""
    full, simple = both(data, window, rules)
    if simple is None:
        return False
    assert full.problems == []  # type: ignore[attr-defined]
    assert simple.events == full.events  # type: ignore[attr-defined]
    assert simple.uids == full.uids  # type: ignore[attr-defined]
    assert simple.outside == full.outside  # type: ignore[attr-defined]
    return True


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_real_exports_are_read_alike_or_left_to_the_full_reader(path: Path) -> None:
    assert_same(path.read_bytes())


def _text(value: str) -> str:
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def _fold(line: str) -> str:
    """RFC 5545 folding at 75 octets (here: characters), as clients write long lines."""
    chunks = [line[i:i + 74] for i in range(0, len(line), 74)] or [""]
    return "\r\n ".join(chunks)


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",;\\\n"),
                max_size=40)


@st.composite
def simple_objects(draw: st.DrawFn) -> bytes:
    all_day = draw(st.booleans())
    # naive bounds are what hypothesis wants; the value is made UTC below
    base = draw(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2039, 1, 1)))  # noqa: DTZ001
    length = draw(st.integers(min_value=-2, max_value=24 * 40))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//gen//EN", "BEGIN:VEVENT"]
    if draw(st.booleans()):
        lines.append(f"UID:{_text(draw(texts))}")
    if all_day:
        first = base.date()
        last = first + timedelta(days=length // 24)
        lines += [f"DTSTART;VALUE=DATE:{first:%Y%m%d}", f"DTEND;VALUE=DATE:{last:%Y%m%d}"]
    else:
        start = base.replace(tzinfo=UTC)
        lines += [f"DTSTART:{start:%Y%m%dT%H%M%SZ}", f"DTEND:{start + timedelta(hours=length):%Y%m%dT%H%M%SZ}"]
    if draw(st.booleans()):
        lines.append(f"SUMMARY:{_text(draw(texts | st.sampled_from(['OOO', 'Ledig dag', 'ooo trip'])))}")
    marker = draw(st.sampled_from([None, "OOF", "oof ", "BUSY"]))
    if marker is not None:
        name = draw(st.sampled_from(["X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS"]))
        lines.append(f"{name}:{marker}")
    if draw(st.booleans()):
        lines.append(f"TRANSP:{draw(st.sampled_from(['OPAQUE', 'TRANSPARENT']))}")
    if draw(st.booleans()):
        lines.append(f"STATUS:{draw(st.sampled_from(['CONFIRMED', 'CANCELLED', 'TENTATIVE']))}")
    if draw(st.booleans()):
        cats = draw(st.lists(st.sampled_from(["Vacation", "Work", "Semester, lång", "x"]), min_size=1, max_size=3))
        lines.append("CATEGORIES:" + ",".join(_text(c) for c in cats))
    if draw(st.booleans()):
        lines.append(f"X-SYNCD-BLOCK-ID:{_text(draw(texts))}")
    stamp = draw(st.sampled_from([None, "20260102T030405Z", "20260102T030405", "20260102"]))
    if stamp is not None:
        lines.append(f"{draw(st.sampled_from(['LAST-MODIFIED', 'DTSTAMP']))}:{stamp}")
    if draw(st.booleans()):
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Reminder", "TRIGGER:-PT15M", "END:VALARM"]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return ("\r\n".join(_fold(line) for line in lines) + "\r\n").encode()


@settings(max_examples=400, deadline=None)
@given(data=simple_objects(), all_events=st.booleans(),
       window_start=st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 1, 1)))
def test_generated_simple_events_are_read_alike(data: bytes, all_events: bool, window_start: date) -> None:
    rules = OooRules(categories=RULES.categories, keywords=RULES.keywords, all_events=all_events)
    start = datetime.combine(window_start, datetime.min.time(), tzinfo=UTC)
    window = SyncWindow(start, start + timedelta(days=400), "America/New_York")
    assert_same(data, window, rules)


def test_the_commonest_objects_take_the_fast_path() -> None:
    timed = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
             b"DTSTAMP:20260101T000000Z\r\nDTSTART:20261201T090000Z\r\nDTEND:20261201T170000Z\r\n"
             b"SUMMARY:Away\\, really\r\nX-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert assert_same(timed)
    all_day = timed.replace(b"DTSTART:20261201T090000Z", b"DTSTART;VALUE=DATE:20261201").replace(
        b"DTEND:20261201T170000Z", b"DTEND;VALUE=DATE:20261203")
    assert assert_same(all_day)


@pytest.mark.parametrize("line", [
    b"RRULE:FREQ=WEEKLY", b"DTSTART;TZID=Europe/Berlin:20261201T090000", b"DURATION:PT1H",
    b"RECURRENCE-ID:20261201T090000Z", b"EXDATE:20261208T090000Z",
])
def test_anything_else_goes_to_the_full_reader(line: bytes) -> None:
    data = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nBEGIN:VEVENT\r\nUID:a\r\n"
            b"DTSTART:20261201T090000Z\r\nDTEND:20261201T170000Z\r\n" + line + b"\r\n"
            b"X-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert read_simple(data, WINDOW, RULES, etag="e", fallback_updated=None, fallback_uid="f") is None
