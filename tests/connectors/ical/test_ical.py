"""iCalendar handling: real exports from tests/data/ics (facts from their SOURCES notes), then
hand-written cases for the OOO rules, recurrence, time zones, limits and what syncd writes."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
import recurring_ical_events
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors import ical
from syncd.core.calendars import EventDraft, OooRules, SyncWindow
from syncd.core.errors import BadEventData, NotFound
from syncd.core.ooo import OooContent, all_day_content, timed_content

DATA = Path(__file__).resolve().parents[2] / "data" / "ics"
SAMPLES = sorted(DATA.glob("*.ics"))
EVERYTHING = OooRules(all_events=True)
STOCKHOLM = "Europe/Stockholm"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def window(start: date, end: date, tz: str = STOCKHOLM) -> SyncWindow:
    return SyncWindow(datetime(start.year, start.month, start.day, tzinfo=UTC),
                      datetime(end.year, end.month, end.day, tzinfo=UTC), tz)


WIDE = window(date(2000, 1, 1), date(2030, 1, 1))


MARKERS_ONLY = OooRules()


def parse(data: bytes | str, rules: OooRules = MARKERS_ONLY, win: SyncWindow = WIDE, **kw: object) -> ical.ParsedObject:
    if isinstance(data, str):
        data = (DATA / data).read_bytes()
    return ical.parse_ooo_events(data, win, rules, etag="etag-1", **kw)  # type: ignore[arg-type]


def cal(*events: str, timezones: str = "") -> bytes:
    body = "\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", timezones, *events, "END:VCALENDAR"))
    return "\r\n".join(line for line in body.split("\n") if line).encode() + b"\r\n"


def event(uid: str, *lines: str) -> str:
    return "\n".join(("BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z", *lines, "END:VEVENT"))


OOF = "X-MICROSOFT-CDO-BUSYSTATUS:OOF"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def starts(result: ical.ParsedObject) -> dict[str, datetime]:
    return {e.event_id: e.content.start for e in result.events}


# -- the samples -------------------------------------------------------------------------------


def test_attribution_lists_every_sample_with_a_permissive_license() -> None:
    text = (DATA / "ATTRIBUTION.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert sorted(re.findall(r"^\| `([^`]+)`", "\n".join(rows), re.M)) == [p.name for p in SAMPLES]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert re.fullmatch(r"`[0-9a-f]{40}`", cells[3]), row
        assert cells[4].split()[0] in {"MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0"}, row


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
@pytest.mark.parametrize("rules", [OooRules(), EVERYTHING], ids=["markers", "all-events"])
def test_every_sample_parses(sample: Path, rules: OooRules) -> None:
    result = parse(sample.read_bytes(), rules, fallback_uid=sample.stem)
    ids = [e.event_id for e in result.events]
    assert len(ids) == len(set(ids))
    for e in result.events:
        assert WIDE.overlaps(e.content.start, e.content.end)
        assert e.content.start.tzinfo is not None and e.content.end > e.content.start
        assert e.etag == "etag-1"
        assert e.updated is not None and e.updated.tzinfo is not None


def test_o365_private_oof_appointment_is_ooo_though_no_keyword_can_see_it() -> None:
    rules = OooRules(keywords=("vacation", "out of office"), categories=("Vacation",))
    (oof,) = parse("outlook-o365-oof-private-orphan-override.ics", rules).events
    uid = ("040000008200E00074C5B7101A82E00800000000687C546B5596DA01000000000000000"
           "010000000309AE93C8C3A94489F90ADBEA30C2F2B")
    # an override whose master is not in the file: still one period, named by its instant
    assert oof.event_id == f"{uid}/20241018T070000Z" and oof.series_id == uid
    assert oof.content == timed_content(utc(2024, 10, 18, 7), utc(2024, 10, 18, 14), "Private Appointment")
    assert oof.updated == utc(2025, 10, 19, 1, 30, 24)  # DTSTAMP: there is no LAST-MODIFIED
    assert oof.block_id is None


def test_windows_tzids_with_vtimezones_give_the_right_instants() -> None:
    result = parse("outlook-exchange2010-windows-tzids-exdate-list.ics", EVERYTHING)
    assert sorted(starts(result).values()) == [utc(2020, 9, 10, 7), utc(2020, 9, 15, 15, 30)]
    assert sorted(e.content.end for e in result.events) == [utc(2020, 9, 10, 7, 30), utc(2020, 9, 15, 16, 30)]


def test_display_name_tzids_without_vtimezone_are_mapped_to_iana() -> None:
    raw = icalendar.Calendar.from_ical((DATA / "outlook-owa2012-display-name-tzids.ics").read_bytes())
    assert raw.walk("VEVENT")[0]["DTSTART"].dt.tzinfo is None  # what icalendar alone makes of them
    result = parse("outlook-owa2012-display-name-tzids.ics", EVERYTHING, window(date(2020, 10, 1), date(2020, 11, 4)),
                   fallback_uid="owa")
    assert starts(result) == {
        "owa": utc(2020, 10, 28, 2, 30),  # 13:30 in Sydney, summer time (+11)
        "owa-1": utc(2020, 10, 28, 17, 30),  # 13:30 in New York, still summer time (-4)
        "owa-2": utc(2020, 11, 2, 18, 30),  # 13:30 in New York after the change (-5)
        "owa-3/20201102T183000Z": utc(2020, 11, 2, 18, 30),
    }
    assert result.events[0].content.title == "TEST Syd"


def test_a_broken_dtstart_skips_only_its_own_event() -> None:
    data = (DATA / "outlook-exchange2010-windows-tzids-exdate-list.ics").read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - the hazard: one bad line breaks the whole calendar
        recurring_ical_events.of(icalendar.Calendar.from_ical(data)).between((2020, 1, 1), (2021, 1, 1))
    # make every event OOO (the broken one is "free" in the export) to see it skipped, not the others
    result = parse(data.replace(b"BUSYSTATUS:FREE", b"BUSYSTATUS:OOF"), EVERYTHING)
    uids = {e.event_id.split("/")[0][-8:] for e in result.events}
    assert uids == {"8268179F", "D8E0160E", "09E7A37F"}
    assert len(result.problems) == 1 and "DTSTART" in result.problems[0]
    exdates = {date(2020, 7, 21), date(2020, 7, 23), date(2020, 7, 28), date(2020, 8, 13)}
    series_days = {e.content.start.astimezone(ZoneInfo("America/Los_Angeles")).date()
                   for e in result.events if e.series_id}
    assert series_days and not series_days & exdates  # the folded EXDATE list is honoured
    assert {e.content.start.astimezone(ZoneInfo("America/Los_Angeles")).hour for e in result.events
            if e.series_id} == {12}


def test_exchange_all_day_series_moved_by_a_date_time_recurrence_id() -> None:
    # The export marks the series FREE; as OOF it is the shape of an Outlook "away" series.
    data = (DATA / "outlook-exchange2010-allday-moved-recurrence.ics").read_bytes()
    assert parse(data).events == []  # transparent and FREE: not OOO
    result = parse(data.replace(b"BUSYSTATUS:FREE", b"BUSYSTATUS:OOF"), win=window(date(2026, 2, 18), date(2026, 3, 6)))
    days = {e.event_id.rpartition("/")[2]: (e.content.start_date, e.content.end_date) for e in result.events}
    assert days == {
        "20260219": (date(2026, 2, 19), date(2026, 2, 20)),
        "20260224": (date(2026, 2, 24), date(2026, 2, 25)),
        "20260226": (date(2026, 2, 27), date(2026, 2, 28)),  # moved a day later, same id
        "20260303": (date(2026, 3, 3), date(2026, 3, 4)),
        "20260305": (date(2026, 3, 5), date(2026, 3, 6)),
    }
    assert all(e.content.all_day and e.content.timezone == STOCKHOLM for e in result.events)


def test_exchange_date_time_exdate_on_an_all_day_series() -> None:
    result = parse("outlook-exchange2010-allday-biweekly-exdate.ics", EVERYTHING)
    assert sorted(e.event_id for e in result.events if e.event_id.startswith("111/")) == [
        "111/20240701", "111/20240729"]  # 07-15 excluded by EXDATE;TZID=...:20240715T000000
    first = next(e for e in result.events if e.event_id == "111/20240701")
    assert first.content == all_day_content(date(2024, 7, 1), date(2024, 7, 8), STOCKHOLM, "test123")


def test_a_series_across_a_southern_dst_change_keeps_its_local_time() -> None:
    result = parse("outlook-exchange-nz-southern-dst-blank-lines.ics", EVERYTHING,
                   window(date(2026, 3, 28), date(2026, 4, 12)))
    auckland = ZoneInfo("Pacific/Auckland")
    assert [(s.astimezone(auckland).hour, s.hour) for s in starts(result).values()] == [
        (15, 2), (15, 2), (15, 3), (15, 3)]  # +13 until 5 April, then +12
    assert len(result.outside) == 2  # the two single events exist, outside this window


def test_a_free_busy_only_calendar_has_no_events() -> None:
    result = parse("zimbra-vfreebusy-published.ics", EVERYTHING)
    assert result.events == [] and result.problems == [] and result.uids == []


def test_an_rrule_that_does_not_parse_skips_its_series_with_a_problem() -> None:
    result = parse("outlook-cdo-exchange-gmt-offset-tzid-spaced-byday.ics", EVERYTHING)
    assert result.events == []
    assert len(result.problems) == 1 and "RRULE" in result.problems[0]


def test_floating_times_are_read_in_the_users_zone() -> None:
    sova = "02d7e71d-6903-11db-bb22-d4dd07f6c8b9"
    in_stockholm = starts(parse("mozilla-sunbird-folded-names-floating-times.ics", EVERYTHING))
    in_tokyo = starts(parse("mozilla-sunbird-folded-names-floating-times.ics", EVERYTHING,
                            window(date(2000, 1, 1), date(2030, 1, 1), "Asia/Tokyo")))
    assert in_stockholm[sova] == utc(2006, 11, 1, 9)
    assert in_tokyo[sova] == utc(2006, 11, 1, 1)
    assert len(in_stockholm) == 6  # the VTODO is not an event


def test_multi_day_all_day_events_keep_their_dates() -> None:
    result = parse("icloud-caldav-multiday-allday-rdate-vtimezone.ics", EVERYTHING,
                   window(date(2023, 10, 1), date(2023, 10, 31)))
    by_id = {e.event_id: e.content for e in result.events}
    assert by_id["020C71BB-A981-4520-83E9-98E488A60863"] == all_day_content(
        date(2023, 10, 11), date(2023, 10, 13), STOCKHOLM, "Multi-day event")
    assert by_id["3B4E9E16-8D79-422F-B48F-888861099B5B"].end_date == date(2023, 10, 18)
    daily = [i for i in by_id if i.startswith("6D0A3855")]  # unbounded daily series: the window's days
    assert len(daily) == 30


def test_legacy_outlook_tzid_with_commas_and_weekday_series() -> None:
    result = parse("outlook2003-legacy-tzid-weekday-standup.ics", EVERYTHING,
                   window(date(2009, 3, 9), date(2009, 3, 17)))
    sydney = ZoneInfo("Australia/Sydney")
    local = [s.astimezone(sydney) for s in starts(result).values()]
    assert {(t.hour, t.minute) for t in local} == {(9, 30)}
    assert all(t.weekday() < 5 for t in local)
    assert len(local) == 6


def test_transparent_holiday_category_is_not_ooo() -> None:
    data = (DATA / "nextcloud-calendar-allday-yearly-categories-transparent.ics").read_bytes()
    assert parse(data, OooRules(categories=("holiday",))).events == []
    assert parse(data, EVERYTHING).events == []
    opaque = parse(data.replace(b"TRANSP:TRANSPARENT", b"TRANSP:OPAQUE"), OooRules(categories=("HOLIDAY",)),
                   window(date(2025, 1, 1), date(2026, 1, 1)))
    (holiday,) = opaque.events
    assert holiday.event_id == "c9876d46-b3e1-4536-9b6b-1fe1001e4b01/20250920"
    assert holiday.content.start_date == date(2025, 9, 20)


def test_customized_time_zone_series() -> None:
    result = parse("outlook-exchange-customized-timezone-tentative.ics", EVERYTHING,
                   window(date(2024, 5, 1), date(2024, 6, 1)))
    assert sorted(starts(result).values()) == [utc(2024, 5, 2, 9), utc(2024, 5, 21, 13)]


# -- recognising OOO -------------------------------------------------------------------------


def vevent(*lines: str) -> icalendar.cal.Component:
    return icalendar.Calendar.from_ical(cal(event("x", "DTSTART:20261224T090000Z", *lines))).walk("VEVENT")[0]


@pytest.mark.parametrize(("lines", "rules", "expected"), [
    ((OOF,), OooRules(), True),
    (("X-MICROSOFT-CDO-BUSYSTATUS:oof",), OooRules(), True),
    (("X-MICROSOFT-CDO-INTENDEDSTATUS:OOF",), OooRules(), True),
    (("X-MICROSOFT-CDO-BUSYSTATUS:BUSY", "X-MICROSOFT-CDO-INTENDEDSTATUS:OOF"), OooRules(), True),
    ((OOF, "TRANSP:TRANSPARENT"), OooRules(), True),
    ((OOF, "STATUS:CANCELLED"), OooRules(), False),
    (("X-MICROSOFT-CDO-BUSYSTATUS:BUSY",), OooRules(), False),
    (("SUMMARY:Vacation",), OooRules(), False),
    (("CATEGORIES:Travel,VACATION",), OooRules(categories=("vacation",)), True),
    (("CATEGORIES:Travel", "CATEGORIES:Out of Office"), OooRules(categories=("out of office",)), True),
    (("CATEGORIES:Vacation days",), OooRules(categories=("vacation",)), False),
    (("SUMMARY:Off sick today",), OooRules(keywords=("SICK",)), True),
    (("SUMMARY:Off sick today", "TRANSP:TRANSPARENT"), OooRules(keywords=("sick",)), False),
    (("CATEGORIES:Vacation", "TRANSP:TRANSPARENT"), OooRules(categories=("vacation",)), False),
    (("SUMMARY:Standup",), OooRules(all_events=True), True),
    (("SUMMARY:Standup", "TRANSP:TRANSPARENT"), OooRules(all_events=True), False),
    (("SUMMARY:Standup", "STATUS:CANCELLED"), OooRules(all_events=True), False),
    (("SUMMARY:Standup",), OooRules(keywords=("",)), False),
])
def test_is_ooo(lines: tuple[str, ...], rules: OooRules, expected: bool) -> None:
    assert ical.is_ooo(vevent(*lines), rules) is expected


def test_intended_status_only_all_day_series() -> None:
    data = cal(event("away", "DTSTART;VALUE=DATE:20261207", "DTEND;VALUE=DATE:20261208",
                     "RRULE:FREQ=WEEKLY;UNTIL=20261215;BYDAY=MO", "X-MICROSOFT-CDO-INTENDEDSTATUS:OOF",
                     "SUMMARY:Parental leave"))
    result = parse(data)
    assert [e.event_id for e in result.events] == ["away/20261207", "away/20261214"]
    assert all(e.series_id == "away" for e in result.events)


def test_event_that_is_not_ooo_is_not_returned() -> None:
    assert parse(cal(event("m", "DTSTART:20261224T090000Z", "DTEND:20261224T100000Z", "SUMMARY:Meeting"))).events == []


# -- recurrence --------------------------------------------------------------------------------


def daily(uid: str = "d", *extra: str, count: int = 5) -> str:
    return event(uid, "DTSTART:20261201T080000Z", "DTEND:20261201T160000Z", f"RRULE:FREQ=DAILY;COUNT={count}",
                 OOF, "SUMMARY:Away", *extra)


def test_a_cancelled_occurrence_is_dropped() -> None:
    cancelled = event("d", "RECURRENCE-ID:20261202T080000Z", "DTSTART:20261202T080000Z",
                      "DTEND:20261202T160000Z", OOF, "STATUS:CANCELLED")
    ids = [e.event_id for e in parse(cal(daily(), cancelled)).events]
    assert ids == ["d/20261201T080000Z", "d/20261203T080000Z", "d/20261204T080000Z", "d/20261205T080000Z"]


def test_an_override_can_make_one_occurrence_ordinary() -> None:
    busy = event("d", "RECURRENCE-ID:20261203T080000Z", "DTSTART:20261203T080000Z",
                 "DTEND:20261203T090000Z", "X-MICROSOFT-CDO-BUSYSTATUS:BUSY")
    assert "d/20261203T080000Z" not in starts(parse(cal(daily(), busy)))


def test_exdate_rdate_and_moved_occurrence() -> None:
    moved = event("d", "RECURRENCE-ID:20261204T080000Z", "DTSTART:20261210T120000Z", "DTEND:20261210T130000Z",
                  OOF, "X-SYNCD-BLOCK-ID:b42", "LAST-MODIFIED:20261111T111111Z")
    series = daily("d", "EXDATE:20261202T080000Z", "RDATE:20261220T080000Z")
    result = parse(cal(series, moved))
    assert starts(result) == {
        "d/20261201T080000Z": utc(2026, 12, 1, 8),
        "d/20261203T080000Z": utc(2026, 12, 3, 8),
        "d/20261204T080000Z": utc(2026, 12, 10, 12),
        "d/20261205T080000Z": utc(2026, 12, 5, 8),
        "d/20261220T080000Z": utc(2026, 12, 20, 8),
    }
    by_id = {e.event_id: e for e in result.events}
    assert by_id["d/20261204T080000Z"].block_id == "b42"
    assert by_id["d/20261204T080000Z"].updated == utc(2026, 11, 11, 11, 11, 11)
    assert by_id["d/20261201T080000Z"].block_id is None


def test_floating_rdate_periods_and_exdates() -> None:
    data = cal(event("p", "DTSTART:20261201T090000", "DTEND:20261201T100000",
                     "RDATE;VALUE=PERIOD:20261220T090000/PT3H,20261221T090000/20261221T100000",
                     "RDATE:20261222T090000", "EXDATE:20261222T090000", OOF))
    result = parse(data)
    assert [(e.event_id, e.content.end - e.content.start) for e in result.events] == [
        ("p/20261201T080000Z", timedelta(hours=1)),
        ("p/20261220T080000Z", timedelta(hours=3)),
        ("p/20261221T080000Z", timedelta(hours=1)),
    ]


def test_a_dst_crossing_series_keeps_wall_clock_time() -> None:
    data = cal(event("w", "DTSTART;TZID=Europe/Stockholm:20261019T090000",
                     "DTEND;TZID=Europe/Stockholm:20261019T170000", "RRULE:FREQ=WEEKLY;COUNT=3", OOF))
    assert list(starts(parse(data)).values()) == [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), utc(2026, 11, 2, 8)]


def test_only_occurrences_in_the_window_are_returned() -> None:
    data = cal(daily(count=400))
    result = parse(data, win=window(date(2027, 1, 1), date(2027, 1, 4)))
    assert list(starts(result)) == ["d/20270101T080000Z", "d/20270102T080000Z", "d/20270103T080000Z"]


@pytest.mark.parametrize("start", ["20261219T000000Z", "20010101T000000Z"])
def test_a_secondly_series_without_end_is_bounded(start: str) -> None:
    data = cal(event("s", f"DTSTART:{start}", "DURATION:PT1S", "RRULE:FREQ=SECONDLY", OOF))
    result = parse(data, win=window(date(2026, 12, 20), date(2027, 12, 20)),
                   limits=ical.ExpansionLimits(max_occurrences=100))
    assert len(result.events) == 100
    assert result.events[0].content.start == utc(2026, 12, 20)
    assert len(result.problems) == 1 and "more than 100 occurrences" in result.problems[0]


def test_exdates_do_not_cut_a_bounded_series_short() -> None:
    exdates = ",".join(f"202612{d:02d}T080000Z" for d in range(1, 26))  # 25 of 30 days excluded
    result = parse(cal(daily("d", f"EXDATE:{exdates}", count=30)), limits=ical.ExpansionLimits(max_occurrences=10))
    assert len(result.events) == 5 and result.problems == []
    fewer = ",".join(f"202612{d:02d}T080000Z" for d in range(1, 16))  # 15 left: over the limit
    result = parse(cal(daily("d", f"EXDATE:{fewer}", count=30)), limits=ical.ExpansionLimits(max_occurrences=10))
    assert [e.event_id for e in result.events][:2] == ["d/20261216T080000Z", "d/20261217T080000Z"]
    assert len(result.events) == 10 and len(result.problems) == 1


def test_expansion_time_is_bounded_per_object() -> None:
    calls = itertools.count()
    limits = ical.ExpansionLimits(expand_seconds=3, clock=lambda: 0.0 if next(calls) < 30 else 100.0)
    data = cal(*(daily(f"d{i}") for i in range(10)))
    result = parse(data, win=window(date(2026, 12, 1), date(2026, 12, 8)), limits=limits)
    assert 0 < len(result.events) < 50
    assert any("stopped after 3 s" in p for p in result.problems)


def test_a_long_counted_series_from_long_ago_is_refused() -> None:
    data = cal(event("s", "DTSTART:20010101T000000Z", "DURATION:PT1S", "RRULE:FREQ=SECONDLY;COUNT=999999999", OOF))
    result = parse(data, win=window(date(2026, 12, 20), date(2027, 12, 20)))
    assert result.events == [] and "too long to expand" in result.problems[0]


def test_a_series_that_ended_before_the_window_end_costs_little() -> None:
    data = cal(event("s", "DTSTART:20261220T000000Z", "DURATION:PT1S", "RRULE:FREQ=SECONDLY;COUNT=500", OOF),
               event("u", "DTSTART:20261220T000000Z", "DURATION:PT1S", "RRULE:FREQ=SECONDLY;UNTIL=20261220T000359Z",
                     OOF))
    result = parse(data, win=window(date(2026, 12, 1), date(2027, 12, 20)))
    assert len([e for e in result.events if e.series_id == "s"]) == 500
    assert len([e for e in result.events if e.series_id == "u"]) == 240
    assert result.problems == []


# -- times --------------------------------------------------------------------------------------


def test_duration_is_honoured() -> None:
    data = cal(event("t", "DTSTART:20261224T090000Z", "DURATION:PT1H30M", OOF),
               event("a", "DTSTART;VALUE=DATE:20261224", "DURATION:P3D", OOF))
    by_id = {e.event_id: e.content for e in parse(data).events}
    assert by_id["t"] == timed_content(utc(2026, 12, 24, 9), utc(2026, 12, 24, 10, 30))
    assert by_id["a"] == all_day_content(date(2026, 12, 24), date(2026, 12, 27), STOCKHOLM)


def test_all_day_without_dtend_lasts_one_day() -> None:
    (e,) = parse(cal(event("a", "DTSTART;VALUE=DATE:20261224", OOF))).events
    assert (e.content.start_date, e.content.end_date) == (date(2026, 12, 24), date(2026, 12, 25))


def test_timed_without_end_has_no_length_and_is_skipped() -> None:
    result = parse(cal(event("t", "DTSTART:20261224T090000Z", OOF), event("ok", "DTSTART:20261224T090000Z",
                                                                         "DTEND:20261224T100000Z", OOF)))
    assert [e.event_id for e in result.events] == ["ok"]
    assert len(result.problems) == 1 and "event t" in result.problems[0]


def test_a_series_without_length_is_reported_once() -> None:
    result = parse(cal(event("s", "DTSTART:20261201T090000Z", "RRULE:FREQ=DAILY;COUNT=20", OOF)))
    assert result.events == [] and len(result.problems) == 1 and "occurrence s/" in result.problems[0]


def test_an_unknown_tzid_skips_the_event_rather_than_guessing() -> None:
    result = parse(cal(event("m", "DTSTART;TZID=Mars/Olympus:20261224T090000",
                             "DTEND;TZID=Mars/Olympus:20261224T100000", OOF)))
    assert result.events == []
    assert result.problems == ["event m: unknown TZID 'Mars/Olympus'"]


def test_a_windows_zone_name_without_vtimezone() -> None:
    result = parse(cal(event("w", "DTSTART;TZID=W. Europe Standard Time:20261224T090000",
                             "DTEND;TZID=W. Europe Standard Time:20261224T100000", OOF)))
    assert starts(result) == {"w": utc(2026, 12, 24, 8)}


@pytest.mark.parametrize(("tzid", "expected"), [
    ("Europe/Stockholm", "Europe/Stockholm"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ('"(UTC-05:00) Eastern Time (US & Canada)"', "America/New_York"),
    ("(GMT+10:00) Canberra, Melbourne, Sydney", "Australia/Sydney"),
    ("(UTC) Dublin, Edinburgh, Lisbon, London", "Europe/London"),
    ("(GMT) Greenwich Mean Time : Dublin, Edinburgh, Lisbon, London", "Europe/London"),
    ("Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna", "Europe/Berlin"),
    ("/mozilla.org/20070129_1/Europe/Berlin", "Europe/Berlin"),
    ("/freeassociation.sourceforge.net/Tzfile/America/Argentina/Buenos_Aires", "America/Argentina/Buenos_Aires"),
])
def test_resolve_tzid(tzid: str, expected: str) -> None:
    resolved = ical.resolve_tzid(tzid)
    assert resolved is not None
    sample = datetime(2026, 1, 15, 12)  # noqa: DTZ001 - compared as wall time in both zones
    assert resolved.utcoffset(sample) == ZoneInfo(expected).utcoffset(sample)


@pytest.mark.parametrize("tzid", ["", "Mars/Olympus", "GMT +0100 (Standard) / GMT +0200 (Daylight)", "../../etc"])
def test_resolve_tzid_refuses_what_it_does_not_know(tzid: str) -> None:
    assert ical.resolve_tzid(tzid) is None


def test_every_display_name_maps_to_a_real_zone() -> None:
    for name, olson in ical._DISPLAY_NAMES.items():
        assert ical.resolve_tzid(f"(UTC+01:00) {name}") is not None, name
        ZoneInfo(olson)


# -- ids, blocks, malformed input -------------------------------------------------------------


def test_ids_and_fields_of_a_plain_event() -> None:
    data = cal(event("syncd-b1", "DTSTART:20261224T090000Z", "DTEND:20261224T100000Z", OOF,
                     "X-SYNCD-BLOCK-ID:b1", "SUMMARY:  Away  "))
    (e,) = parse(data).events
    assert (e.event_id, e.series_id, e.block_id, e.content.title) == ("syncd-b1", None, "b1", "Away")
    assert e.updated == utc(2026, 1, 1)


def test_updated_falls_back_to_the_given_time() -> None:
    data = cal("BEGIN:VEVENT\nUID:x\nDTSTART:20261224T090000Z\nDTEND:20261224T100000Z\n" + OOF + "\nEND:VEVENT")
    (e,) = parse(data, fallback_updated=utc(2026, 5, 5)).events
    assert e.updated == utc(2026, 5, 5)


def test_events_outside_the_window_are_known_but_not_returned() -> None:
    data = cal(event("far", "DTSTART:20281224T090000Z", "DTEND:20281224T100000Z", OOF),
               event("meeting", "DTSTART:20281224T090000Z", "DTEND:20281224T100000Z"))
    result = parse(data, win=window(date(2026, 1, 1), date(2027, 1, 1)))
    assert result.events == [] and result.outside == ["far"] and result.uids == ["far", "meeting"]


def test_events_without_uid_get_stand_ins() -> None:
    anon = "BEGIN:VEVENT\nDTSTART:20261224T090000Z\nDTEND:20261224T100000Z\n" + OOF + "\nEND:VEVENT"
    result = parse(cal(anon, anon), fallback_uid="file")
    assert [e.event_id for e in result.events] == ["file", "file-1"]


@pytest.mark.parametrize("data", [b"", b"hello", b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", b"\xff\xfe\x00"])
def test_not_icalendar_is_bad_event_data(data: bytes) -> None:
    with pytest.raises(BadEventData):
        parse(data)


def test_a_doubled_dtstart_skips_the_event() -> None:
    result = parse(cal(event("x", "DTSTART:20261224T090000Z", "DTSTART:20261225T090000Z",
                             "DTEND:20261225T100000Z", OOF)))
    assert result.events == [] and "DTSTART appears 2 times" in result.problems[0]


def test_event_ids_split_back() -> None:
    assert ical.split_event_id("abc/20261224T090000Z") == ("abc", "20261224T090000Z")
    assert ical.split_event_id("abc/20261224") == ("abc", "20261224")
    assert ical.split_event_id("https://x/y") == ("https://x/y", None)
    assert ical.split_event_id("plain") == ("plain", None)
    assert ical.occurrence_id("u", datetime(2026, 12, 24, 10, tzinfo=ZoneInfo(STOCKHOLM))) == "u/20261224T090000Z"
    assert ical.format_instant(date(2026, 12, 24)) == "20261224"


# -- writing ---------------------------------------------------------------------------------------


def draft(content: OooContent, block_id: str = "b1") -> EventDraft:
    return EventDraft(block_id=block_id, content=content, timezone=STOCKHOLM)


timed_contents = st.builds(
    lambda start, minutes, title: timed_content(start, start + timedelta(minutes=minutes), title),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2029, 1, 1),  # noqa: DTZ001 - hypothesis bounds
                 timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0)),
    st.integers(min_value=1, max_value=60 * 24 * 40),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
        lambda t: t.strip() == t and t != ""),
)
all_day_contents = st.builds(
    lambda first, days, title: all_day_content(first, first + timedelta(days=days), STOCKHOLM, title),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2029, 1, 1)),
    st.integers(min_value=1, max_value=60),
    st.sampled_from(["Vacation", "Semester; Italien, Rom", "Tjänsteresa\\Oslo"]),
)


@settings(max_examples=60, deadline=None)
@given(content=st.one_of(timed_contents, all_day_contents))
def test_what_we_write_reads_back_the_same(content: OooContent) -> None:
    data = ical.new_event_bytes("syncd-b1", draft(content), NOW)
    (e,) = parse(data).events
    assert (e.event_id, e.block_id, e.updated) == ("syncd-b1", "b1", NOW)
    assert e.content == content


def test_replace_event_keeps_the_rest() -> None:
    original = cal(event("p", "DTSTART:20261224T090000Z", "DURATION:PT1H", OOF, "DESCRIPTION:Ski trip",
                         "CATEGORIES:Family", "SEQUENCE:4", "BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M",
                         "DESCRIPTION:Pack", "END:VALARM"))
    new = all_day_content(date(2026, 12, 23), date(2026, 12, 28), STOCKHOLM, "Ski trip")
    data = ical.replace_event(original, "p", draft(new, "b9"), NOW, OooRules())
    (e,) = parse(data).events
    assert e.content == new and e.block_id == "b9"
    written = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
    assert str(written["DESCRIPTION"]) == "Ski trip" and "DURATION" not in written
    assert int(written["SEQUENCE"]) == 5 and len(written.walk("VALARM")) == 1
    with pytest.raises(NotFound):
        ical.replace_event(original, "other", draft(new), NOW, OooRules())
    with pytest.raises(NotFound):
        ical.replace_event(cal(daily()), "d", draft(new), NOW, OooRules())


BERLIN_SERIES = event("b", "DTSTART;TZID=Europe/Berlin:20261207T130000", "DTEND;TZID=Europe/Berlin:20261207T170000",
                      "RRULE:FREQ=WEEKLY;COUNT=4", OOF, "DESCRIPTION:Mondays off")


@pytest.mark.parametrize("series", [
    BERLIN_SERIES,
    BERLIN_SERIES.replace("TZID=Europe/Berlin", "TZID=W. Europe Standard Time"),
    event("b", "DTSTART:20261207T130000", "DTEND:20261207T170000", "RRULE:FREQ=WEEKLY;COUNT=4", OOF),  # floating
], ids=["iana", "windows", "floating"])
def test_override_one_occurrence(series: str) -> None:
    win = window(date(2026, 12, 1), date(2027, 1, 31), "Europe/Berlin")
    before = parse(cal(series), win=win)
    target = before.events[1].event_id
    assert target == "b/20261214T120000Z"
    moved = timed_content(utc(2026, 12, 15, 8), utc(2026, 12, 15, 9), "Tuesday instead")
    data = ical.override_occurrence(cal(series), "b", "20261214T120000Z", draft(moved, "b5"), NOW, OooRules(),
                                    ZoneInfo("Europe/Berlin"))
    after = {e.event_id: e for e in parse(data, win=win).events}
    assert set(after) == {e.event_id for e in before.events}  # replaced, not added
    assert after[target].content == moved and after[target].block_id == "b5"
    again = ical.override_occurrence(data, "b", "20261214T120000Z", draft(moved, "b6"), NOW, OooRules(),
                                     ZoneInfo("Europe/Berlin"))
    overrides = [c for c in icalendar.Calendar.from_ical(again).walk("VEVENT") if "RECURRENCE-ID" in c]
    assert len(overrides) == 1 and str(overrides[0]["X-SYNCD-BLOCK-ID"]) == "b6"


FIRST_OF_DECEMBER = timed_content(utc(2026, 12, 1), utc(2026, 12, 2))


def test_exclude_occurrence() -> None:
    win = window(date(2026, 12, 1), date(2027, 1, 31))
    data = ical.exclude_occurrence(cal(BERLIN_SERIES), "b", "20261214T120000Z", NOW, ZoneInfo(STOCKHOLM))
    assert data
    assert "b/20261214T120000Z" not in starts(parse(data, win=win))
    assert len(parse(data, win=win).events) == 3
    assert ical.exclude_occurrence(data, "b", "20261214T120000Z", NOW, ZoneInfo(STOCKHOLM)) is None
    assert ical.exclude_occurrence(data, "nope", "20261214T120000Z", NOW, ZoneInfo(STOCKHOLM)) is None
    with pytest.raises(NotFound):
        ical.override_occurrence(data, "b", "20261214T120000Z", draft(FIRST_OF_DECEMBER),
                                 NOW, OooRules(), ZoneInfo(STOCKHOLM))


def test_exclude_an_all_day_occurrence_and_an_orphan_override() -> None:
    series = event("a", "DTSTART;VALUE=DATE:20261207", "RRULE:FREQ=DAILY;COUNT=3", OOF)
    data = ical.exclude_occurrence(cal(series), "a", "20261208", NOW, ZoneInfo(STOCKHOLM))
    assert data and b"EXDATE;VALUE=DATE:20261208" in data
    assert [e.event_id for e in parse(data).events] == ["a/20261207", "a/20261209"]
    orphan = (DATA / "outlook-o365-oof-private-orphan-override.ics").read_bytes()
    uid = ical.event_uids(orphan)[0]
    assert ical.exclude_occurrence(orphan, uid, "20241018T070000Z", NOW, ZoneInfo(STOCKHOLM)) == b""


def test_remove_event() -> None:
    two = cal(event("one", "DTSTART:20261224T090000Z", OOF), event("two", "DTSTART:20261225T090000Z", OOF))
    data = ical.remove_event(two, "one")
    assert data and ical.event_uids(data) == ["two"]
    assert ical.remove_event(data, "two") == b""
    assert ical.remove_event(data, "one") is None
    assert ical.remove_event(cal(daily()), "d") is None  # a series is addressed per occurrence
