"""Fuzzing the iCalendar reader: any bytes a calendar holds are read within the time bound, and
the only error is the reader's own `BadEventData`.

Hypothesis writes iCalendar text that is valid enough to reach the expansion: VCALENDARs of
VEVENTs and VTIMEZONEs (sometimes nested, unterminated, folded or interleaved with junk
lines) whose properties take random and hostile values: RRULE/EXRULE parts from the
absurd (FREQ=SECONDLY, every BYxxx value, rules that never match) to the ordinary, dates
from the year 0 to 9999, TZIDs that are IANA, Windows, Outlook display names, custom,
"globally unique" or unknown. Each example is timed on its own and must finish within five
times ``expand_seconds`` of CPU: that is the bound being tested, stated generously. CI runs a
few hundred examples; the ``slow`` run many more.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import ical
from syncd.core.calendars import OooRules, SyncWindow
from syncd.core.errors import BadEventData

LIMITS = ical.ExpansionLimits(max_occurrences=200, expand_seconds=1.0)
# The bound is on the CPU the reading takes (`time.thread_time`), timed per example: the wall
# time of a niced test beside benchmarks on a shared machine measures the scheduler too. The
# deadline itself runs on the wall clock, as in production, and CPU time never exceeds it.
BOUND = 5 * LIMITS.expand_seconds
HANG = 30.0  # wall seconds after which a reading is interrupted: a hang fails instead of stalling
WINDOWS = [
    SyncWindow(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC), "Europe/Stockholm"),
    SyncWindow(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC), "America/New_York"),  # all of time
]
RULES = [OooRules(all_events=True), OooRules(), OooRules(categories=("Vacation",), keywords=("OOO",))]
TZIDS = ["Europe/Berlin", "UTC", "W. Europe Standard Time", "(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, "
         "Vienna", "Customized Time Zone", "Hostile Zone", "/mozilla.org/20070129_1/Europe/Berlin", "Nowhere/Unknown",
         "", '"Quoted Zone"']
FREQS = ["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY", "FORTNIGHTLY", ""]  # last 2: bad
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


# -- values ------------------------------------------------------------------------------------
# Mostly valid, so that most objects get past icalendar's parser to the expansion; now and
# then a value that is not (icalendar refuses the whole object then, or the reader the event).


def rarely(usual: st.SearchStrategy[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.integers(0, 9).flatmap(lambda n: odd if n == 0 else usual)


days = st.one_of(st.dates(date(2020, 1, 1), date(2030, 12, 31)), st.dates(date(1, 1, 1), date(9999, 12, 31)))
clock = st.times().map(lambda t: t.replace(microsecond=0))
dates = days.map(lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}")
date_times = st.builds(lambda d, t, z: f"{d.year:04d}{d.month:02d}{d.day:02d}T{t:%H%M%S}{z}",
                       days, clock, st.sampled_from(["", "Z"]))
junk = st.text(max_size=12)
durations = st.builds(lambda sign, n, unit: f"{sign}P{'T' if unit in 'HMS' else ''}{n}{unit}",
                      st.sampled_from(["", "", "-"]), st.one_of(st.integers(0, 48), st.integers(0, 10**6)),
                      st.sampled_from("WDHMS"))


def _numbers(lo: int, hi: int) -> st.SearchStrategy[str]:
    """A BYxxx list: a few values, every value there is, or (rarely) some out of range."""
    every = ",".join(str(i) for i in range(lo, hi + 1) if i != 0)
    valid = [i for i in range(lo, hi + 1) if i != 0]
    some = st.lists(st.sampled_from(valid), min_size=1, max_size=8).map(lambda v: ",".join(map(str, v)))
    odd = st.lists(st.integers(lo - 3, hi + 3), min_size=1, max_size=4).map(lambda v: ",".join(map(str, v)))
    return rarely(st.one_of(some, some, st.just(every)), odd)


by_day = st.lists(st.builds(lambda n, d: f"{n}{d}", st.sampled_from(["", "", "1", "-1", "2", "53", "-5", "+3"]),
                            st.sampled_from(DAYS)), min_size=1, max_size=7).map(",".join)
rule_parts = st.fixed_dictionaries({"FREQ": rarely(st.sampled_from(FREQS[:-2]), st.sampled_from(FREQS[-2:]))},
                                   optional={
    "INTERVAL": rarely(st.integers(1, 4).map(str), st.sampled_from(["0", "-1", "10000", "x"])),
    "COUNT": st.one_of(st.integers(1, 60), st.integers(1, 10**9)).map(str),
    "UNTIL": st.one_of(dates, date_times),
    "BYSECOND": _numbers(0, 59), "BYMINUTE": _numbers(0, 59), "BYHOUR": _numbers(0, 23),
    "BYDAY": by_day, "BYMONTHDAY": _numbers(-31, 31), "BYYEARDAY": _numbers(-366, 366),
    "BYWEEKNO": _numbers(-53, 53), "BYMONTH": _numbers(1, 12), "BYSETPOS": _numbers(-10, 10),
    "WKST": st.sampled_from(DAYS),
})
rules = rarely(rule_parts.map(lambda parts: ";".join(f"{k}={v}" for k, v in parts.items())),
               st.text(alphabet="FREQ=SECONDLY;BYDAY,0123456789-", max_size=40))
hostile_rules = st.sampled_from([  # the shapes that used to hang a worker, mixed in often
    "FREQ=SECONDLY", "FREQ=SECONDLY;INTERVAL=2", "FREQ=MINUTELY;COUNT=100000000",
    "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=HOURLY;BYMONTH=4;BYMONTHDAY=31;BYHOUR=1",
    "FREQ=YEARLY;BYMONTH=1,2,3,4,5,6,7,8,9,10,11,12;BYHOUR=" + ",".join(map(str, range(24)))
    + ";BYMINUTE=" + ",".join(map(str, range(60))) + ";BYSECOND=" + ",".join(map(str, range(60))),
])
any_rules = st.one_of(rules, rules, hostile_rules)
tzids = st.sampled_from(TZIDS)
tz_param = tzids.map(lambda tzid: f";TZID={tzid}" if tzid else "")


@st.composite
def vevent_lines(draw: st.DrawFn) -> list[str]:
    """The lines of one VEVENT: a start, an end, perhaps recurrence, and the odd extra."""
    timed = draw(st.booleans())
    point = date_times if timed else dates
    param = draw(tz_param) if timed else ";VALUE=DATE"
    lines = [f"UID:{draw(st.sampled_from(['a', 'b', 'c', 'd', '']))}", f"DTSTART{param}:{draw(point)}"]
    lines.append(draw(st.one_of(point.map(lambda v: f"DTEND{param}:{v}"), durations.map(lambda v: f"DURATION:{v}"),
                                st.just(""))))
    lines += draw(st.lists(any_rules.map(lambda r: f"RRULE:{r}"), max_size=2))
    lines += draw(st.lists(any_rules.map(lambda r: f"EXRULE:{r}"), max_size=1))
    for name in ("RDATE", "EXDATE"):
        if draw(st.booleans()):
            lines.append(f"{name}{param}:" + ",".join(draw(st.lists(point, min_size=1, max_size=6))))
    if timed and draw(st.integers(0, 4)) == 0:
        lines.append(f"RDATE;VALUE=PERIOD:{draw(date_times)}/{draw(st.one_of(date_times, durations))}")
    if draw(st.integers(0, 3)) == 0:
        rid = draw(point)
        lines.append(f"RECURRENCE-ID{param}{draw(st.sampled_from(['', ';RANGE=THISANDFUTURE']))}:{rid}")
    lines += draw(st.lists(st.sampled_from([
        "X-MICROSOFT-CDO-BUSYSTATUS:OOF", "X-MICROSOFT-CDO-BUSYSTATUS:OOF", "SUMMARY:OOO", "SUMMARY:lunch",
        "CATEGORIES:Vacation,Work", "TRANSP:TRANSPARENT", "STATUS:CANCELLED", "SEQUENCE:3", "SEQUENCE:-1",
        "DTSTAMP:20260101T000000Z", "LAST-MODIFIED:20260101T000000Z", "DTSTART:20261201T090000Z",
    ]), max_size=4))
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.one_of(junk, st.builds(lambda n, v: f"{n}:{v}", st.sampled_from(
            ["DTSTART", "DTEND", "RRULE", "RDATE", "EXDATE", "DURATION", "RECURRENCE-ID", "X-JUNK"]), junk))))
    return ["BEGIN:VEVENT", *(line for line in lines if line), "END:VEVENT"]


offsets = rarely(st.builds(lambda s, h, m: f"{s}{h:02d}{m:02d}", st.sampled_from("+-"), st.integers(0, 14),
                           st.sampled_from([0, 30, 45])), junk)
observance = st.builds(
    lambda kind, start, rule, rdate, frm, to: [f"BEGIN:{kind}", f"DTSTART:{start}", *rule, *rdate,
                                               f"TZOFFSETFROM:{frm}", f"TZOFFSETTO:{to}", f"TZNAME:{kind[:3]}",
                                               f"END:{kind}"],
    rarely(st.sampled_from(["STANDARD", "DAYLIGHT"]), st.just("X-OTHER")),
    st.one_of(st.just("16010101T020000"), st.just("19700101T000000"),
              st.builds(lambda d, t: f"{d.year:04d}{d.month:02d}{d.day:02d}T{t:%H%M%S}", days, clock)),
    st.lists(st.one_of(st.just("FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU"), st.just("FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU"),
                       any_rules).map(lambda r: f"RRULE:{r}"), max_size=2),
    st.lists(st.lists(date_times.map(lambda v: v.rstrip("Z")), min_size=1, max_size=4)
             .map(lambda v: "RDATE:" + ",".join(v)), max_size=1),
    offsets, offsets,
)
vtimezone = st.builds(lambda tzid, parts: ["BEGIN:VTIMEZONE", f"TZID:{tzid}", *(x for p in parts for x in p),
                                           "END:VTIMEZONE"],
                      st.sampled_from([t for t in TZIDS if t]), st.lists(observance, max_size=3))
vevent = st.recursive(  # now and then nested, or cut short
    vevent_lines(),
    lambda inner: st.builds(lambda outer, nested, cut: (outer[:-1] + nested + outer[-1:])[: cut or None],
                            vevent_lines(), inner, st.sampled_from([0, 0, 0, -1])),
    max_leaves=2,
)


@st.composite
def calendars(draw: st.DrawFn) -> bytes:
    parts = draw(st.lists(st.one_of(vevent, vevent, vtimezone), min_size=1, max_size=6))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fuzz//EN", *(x for p in parts for x in p)]
    if draw(st.integers(0, 9)):
        lines.append("END:VCALENDAR")
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), draw(junk))
    text = "\r\n".join(lines) + "\r\n"
    for at in sorted(draw(st.lists(st.integers(0, len(text)), max_size=2)), reverse=True):
        text = text[:at] + "\r\n " + text[at:]  # folded anywhere, as writers do (and worse)
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data += b"\xff\xfe\x00"
    return data


# -- the property ------------------------------------------------------------------------------


class _Hang(BaseException):
    """Raised by the alarm in a reading that runs far past the bound (nothing may catch it)."""


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (main thread, POSIX), so a hang fails, not stalls."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise _Hang(f"still reading after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _read_within_bound(data: bytes, window: SyncWindow, rules: OooRules) -> None:
    started, cpu_started = time.monotonic(), time.thread_time()
    with warnings.catch_warnings(), _alarm(HANG):
        warnings.simplefilter("ignore")  # as in production: icalendar warns of guessed TZIDs, say
        try:
            parsed = ical.parse_ooo_events(data, window, rules, etag="e", limits=LIMITS)
        except BadEventData:
            parsed = None
    took, cpu = time.monotonic() - started, time.thread_time() - cpu_started
    assert cpu <= BOUND, (f"reading took {cpu:.1f} s of CPU ({took:.1f} s), over {BOUND:g} s:\n"
                          f"{data.decode('utf-8', 'replace')}")
    if parsed is not None:
        for event in parsed.events:
            assert window.overlaps(event.content.start, event.content.end)
        per_series: dict[str | None, int] = {}
        for event in parsed.events:
            per_series[event.series_id] = per_series.get(event.series_id, 0) + 1
        assert all(n <= LIMITS.max_occurrences for s, n in per_series.items() if s is not None)


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.filter_too_much])


@settings(max_examples=300, **FUZZ)  # type: ignore[arg-type]
@given(data=calendars(), window=st.sampled_from(WINDOWS), rules=st.sampled_from(RULES))
def test_any_calendar_is_read_within_the_bound(data: bytes, window: SyncWindow, rules: OooRules) -> None:
    _read_within_bound(data, window, rules)


@pytest.mark.slow
@settings(max_examples=5_000, **FUZZ)  # type: ignore[arg-type]
@given(data=calendars(), window=st.sampled_from(WINDOWS), rules=st.sampled_from(RULES))
def test_any_calendar_is_read_within_the_bound_long_run(data: bytes, window: SyncWindow, rules: OooRules) -> None:
    _read_within_bound(data, window, rules)
