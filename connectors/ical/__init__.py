"""iCalendar objects as OOO events: reading them, and writing the changes syncd makes.

This module owns the meaning of iCalendar data for syncd and does no file I/O:

- which VEVENTs are out of office (`is_ooo`);
- turning the bytes of one iCalendar object into `RemoteEvent`s inside a sync window
  (`parse_ooo_events`): time zones resolved (Windows and Outlook display names mapped to
  IANA), recurring series expanded per UID with bounded work, cancelled occurrences dropped;
- the bytes syncd writes: a new OOO event (`new_event_bytes`), a plain event rewritten
  (`replace_event`), one occurrence overridden (`override_occurrence`) or excluded
  (`exclude_occurrence`), a UID removed (`remove_event`).

Event ids: a non-recurring event's id is its UID; an occurrence of a series is
``<uid>/<recurrence instant>``, the instant written ``20261224T090000Z`` (UTC) for timed
series and ``20261224`` for all-day ones. Ids are stable when an occurrence is moved,
because the instant is the RECURRENCE-ID, not the new start.

Real exports are messy (see ``tests/data/ics/ATTRIBUTION.md``): one broken DTSTART or RRULE
makes recurring-ical-events fail for a whole calendar, so every UID is expanded on its own
and a failure skips that UID only, reported as one line in `ParsedObject.problems`.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.rrule
import icalendar
import recurring_ical_events
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from connectors.ical.fast import read_simple
from syncd.core.calendars import EventDraft, OooRules, RemoteEvent, SyncWindow
from syncd.core.errors import BadEventData, NotFound
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import zone

__all__ = [
    "PRODID",
    "ExpansionLimits",
    "ParsedObject",
    "event_uids",
    "exclude_occurrence",
    "format_instant",
    "is_ooo",
    "new_event_bytes",
    "all_of_time",
    "instant_time",
    "lookup_window",
    "occurrence_id",
    "pack_ids",
    "unpack_ids",
    "override_occurrence",
    "parse_ooo_events",
    "remove_event",
    "replace_event",
    "resolve_tzid",
    "split_event_id",
]

PRODID = "-//syncd//syncd//EN"
OOF_MARKERS = ("X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS")
BLOCK_ID_PROPERTY = "X-SYNCD-BLOCK-ID"

# Properties whose parse errors make an event unusable (errors elsewhere, e.g. in a
# DESCRIPTION, are ignored).
_TIME_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")
_INSTANT_RE = re.compile(r"^\d{8}(T\d{6}Z)?$")
_FREQ_STEP = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": timedelta(days=1),
    "WEEKLY": timedelta(weeks=1),
}
# dateutil walks a rule from DTSTART; beyond this many periods before the window we move
# DTSTART forward on the rule's own lattice instead (FREQ=SECONDLY since 2001 would hang).
_MAX_PERIODS_BEFORE_WINDOW = 10_000
_MAX_PERIODS_WITH_COUNT = 2_000_000  # COUNT pins DTSTART; dateutil walks ~1 M steps a second
_FAR_PAST = datetime(1900, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ExpansionLimits:
    """Bounds on the work spent expanding recurring series of one iCalendar object."""

    max_occurrences: int = 1000  # per series; the first ones are kept
    expand_seconds: float = 2.0  # wall time per object
    clock: Callable[[], float] = time.monotonic


@dataclass(slots=True)
class ParsedObject:
    """The OOO events of one iCalendar object inside a window."""

    events: list[RemoteEvent] = field(default_factory=list)
    uids: list[str] = field(default_factory=list)  # every UID in the object, OOO or not
    problems: list[str] = field(default_factory=list)  # one line per skipped event / limit hit
    # OOO events and moved occurrences that exist but lie outside the window: moved away, not gone
    outside: list[str] = field(default_factory=list)


# -- event ids -----------------------------------------------------------------------------


def format_instant(value: date | datetime) -> str:
    """A recurrence instant as written in event ids: ``20261224`` or ``20261224T090000Z``."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a recurrence instant needs a time zone")
        return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return value.strftime("%Y%m%d")


def _parse_instant(text: str) -> date | datetime:
    if len(text) == 8:
        return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).date()
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def occurrence_id(uid: str, instant: date | datetime) -> str:
    return f"{uid}/{format_instant(instant)}"


def split_event_id(event_id: str) -> tuple[str, str | None]:
    """``uid/instant`` -> (uid, instant text); a plain UID -> (uid, None)."""
    uid, sep, tail = event_id.rpartition("/")
    if sep and uid and _INSTANT_RE.match(tail):
        return uid, tail
    return event_id, None


def pack_ids(ids: tuple[str, ...]) -> list[object]:
    """Event ids (for a cursor) with the occurrences of one series as ``[uid, instant, ...]``: a series with
    hundreds of occurrences should not repeat its UID hundreds of times in the cursor."""
    packed: list[object] = []
    series: dict[str, list[str]] = {}
    for event_id in ids:
        uid, instant = split_event_id(event_id)
        if instant is None:
            packed.append(event_id)
            continue
        if uid not in series:
            series[uid] = [uid]
            packed.append(series[uid])
        series[uid].append(instant)
    return packed


def unpack_ids(packed: object) -> tuple[str, ...]:
    if not isinstance(packed, list):
        raise ValueError("ids")
    ids: list[str] = []
    for item in packed:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, list) and item and all(isinstance(i, str) for i in item):
            ids.extend(f"{item[0]}/{instant}" for instant in item[1:])
        else:
            raise ValueError("ids")
    return tuple(ids)


def instant_time(instant: str) -> datetime:
    if len(instant) == 8:
        return datetime.strptime(instant, "%Y%m%d").replace(tzinfo=UTC)
    return datetime.strptime(instant, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def lookup_window(last: SyncWindow | None, instant: str | None = None) -> SyncWindow:
    """The window to read one event in: the calendar's last listed window (or the default
    one), moved to the occurrence's instant when that lies outside it."""
    window = last
    if window is None:
        now = datetime.now(UTC)
        window = SyncWindow(now - timedelta(days=30), now + timedelta(days=365), "UTC")
    if instant is not None:
        at = instant_time(instant)
        if not window.start <= at < window.end:
            window = SyncWindow(at - timedelta(days=2), at + timedelta(days=2), window.timezone)
    return window


def all_of_time(timezone: str) -> SyncWindow:
    """All of time, for looking up one single event wherever it was moved."""
    return SyncWindow(datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC), timezone)


# -- time zones ----------------------------------------------------------------------------

# Outlook/OWA display names (``tzutil /l``), written as TZIDs without a VTIMEZONE by older
# Exchange publishing; keys are the text after the "(UTC+01:00) " prefix, lower case.
_DISPLAY_NAMES = {
    "international date line west": "Etc/GMT+12",
    "coordinated universal time-11": "Etc/GMT+11",
    "aleutian islands": "America/Adak",
    "hawaii": "Pacific/Honolulu",
    "marquesas islands": "Pacific/Marquesas",
    "alaska": "America/Anchorage",
    "coordinated universal time-09": "Etc/GMT+9",
    "baja california": "America/Tijuana",
    "coordinated universal time-08": "Etc/GMT+8",
    "pacific time (us & canada)": "America/Los_Angeles",
    "pacific time (us & canada); tijuana": "America/Los_Angeles",
    "arizona": "America/Phoenix",
    "chihuahua, la paz, mazatlan": "America/Mazatlan",
    "mountain time (us & canada)": "America/Denver",
    "yukon": "America/Whitehorse",
    "central america": "America/Guatemala",
    "central time (us & canada)": "America/Chicago",
    "easter island": "Pacific/Easter",
    "guadalajara, mexico city, monterrey": "America/Mexico_City",
    "saskatchewan": "America/Regina",
    "bogota, lima, quito": "America/Bogota",
    "bogota, lima, quito, rio branco": "America/Bogota",
    "chetumal": "America/Cancun",
    "eastern time (us & canada)": "America/New_York",
    "haiti": "America/Port-au-Prince",
    "havana": "America/Havana",
    "indiana (east)": "America/Indiana/Indianapolis",
    "turks and caicos": "America/Grand_Turk",
    "asuncion": "America/Asuncion",
    "atlantic time (canada)": "America/Halifax",
    "caracas": "America/Caracas",
    "cuiaba": "America/Cuiaba",
    "georgetown, la paz, manaus, san juan": "America/La_Paz",
    "santiago": "America/Santiago",
    "newfoundland": "America/St_Johns",
    "araguaina": "America/Araguaina",
    "brasilia": "America/Sao_Paulo",
    "cayenne, fortaleza": "America/Cayenne",
    "city of buenos aires": "America/Argentina/Buenos_Aires",
    "buenos aires": "America/Argentina/Buenos_Aires",
    "greenland": "America/Nuuk",
    "montevideo": "America/Montevideo",
    "punta arenas": "America/Punta_Arenas",
    "saint pierre and miquelon": "America/Miquelon",
    "salvador": "America/Bahia",
    "coordinated universal time-02": "Etc/GMT+2",
    "azores": "Atlantic/Azores",
    "cabo verde is.": "Atlantic/Cape_Verde",
    "cape verde is.": "Atlantic/Cape_Verde",
    "coordinated universal time": "Etc/UTC",
    "dublin, edinburgh, lisbon, london": "Europe/London",
    "greenwich mean time : dublin, edinburgh, lisbon, london": "Europe/London",
    "monrovia, reykjavik": "Atlantic/Reykjavik",
    "casablanca, monrovia, reykjavik": "Atlantic/Reykjavik",
    "sao tome": "Africa/Sao_Tome",
    "casablanca": "Africa/Casablanca",
    "amsterdam, berlin, bern, rome, stockholm, vienna": "Europe/Berlin",
    "belgrade, bratislava, budapest, ljubljana, prague": "Europe/Budapest",
    "brussels, copenhagen, madrid, paris": "Europe/Paris",
    "sarajevo, skopje, warsaw, zagreb": "Europe/Warsaw",
    "west central africa": "Africa/Lagos",
    "amman": "Asia/Amman",
    "athens, bucharest": "Europe/Bucharest",
    "athens, bucharest, istanbul": "Europe/Bucharest",
    "beirut": "Asia/Beirut",
    "cairo": "Africa/Cairo",
    "chisinau": "Europe/Chisinau",
    "damascus": "Asia/Damascus",
    "gaza, hebron": "Asia/Hebron",
    "harare, pretoria": "Africa/Johannesburg",
    "helsinki, kyiv, riga, sofia, tallinn, vilnius": "Europe/Kyiv",
    "helsinki, kiev, riga, sofia, tallinn, vilnius": "Europe/Kyiv",
    "jerusalem": "Asia/Jerusalem",
    "kaliningrad": "Europe/Kaliningrad",
    "khartoum": "Africa/Khartoum",
    "tripoli": "Africa/Tripoli",
    "windhoek": "Africa/Windhoek",
    "baghdad": "Asia/Baghdad",
    "istanbul": "Europe/Istanbul",
    "kuwait, riyadh": "Asia/Riyadh",
    "minsk": "Europe/Minsk",
    "moscow, st. petersburg": "Europe/Moscow",
    "moscow, st. petersburg, volgograd": "Europe/Moscow",
    "nairobi": "Africa/Nairobi",
    "tehran": "Asia/Tehran",
    "abu dhabi, muscat": "Asia/Dubai",
    "baku": "Asia/Baku",
    "tbilisi": "Asia/Tbilisi",
    "yerevan": "Asia/Yerevan",
    "kabul": "Asia/Kabul",
    "ashgabat, tashkent": "Asia/Tashkent",
    "ekaterinburg": "Asia/Yekaterinburg",
    "islamabad, karachi": "Asia/Karachi",
    "chennai, kolkata, mumbai, new delhi": "Asia/Kolkata",
    "sri jayawardenepura": "Asia/Colombo",
    "kathmandu": "Asia/Kathmandu",
    "astana": "Asia/Almaty",
    "dhaka": "Asia/Dhaka",
    "omsk": "Asia/Omsk",
    "yangon (rangoon)": "Asia/Yangon",
    "bangkok, hanoi, jakarta": "Asia/Bangkok",
    "krasnoyarsk": "Asia/Krasnoyarsk",
    "novosibirsk": "Asia/Novosibirsk",
    "beijing, chongqing, hong kong, urumqi": "Asia/Shanghai",
    "irkutsk": "Asia/Irkutsk",
    "kuala lumpur, singapore": "Asia/Singapore",
    "perth": "Australia/Perth",
    "taipei": "Asia/Taipei",
    "ulaanbaatar": "Asia/Ulaanbaatar",
    "osaka, sapporo, tokyo": "Asia/Tokyo",
    "seoul": "Asia/Seoul",
    "yakutsk": "Asia/Yakutsk",
    "adelaide": "Australia/Adelaide",
    "darwin": "Australia/Darwin",
    "brisbane": "Australia/Brisbane",
    "canberra, melbourne, sydney": "Australia/Sydney",
    "guam, port moresby": "Pacific/Port_Moresby",
    "hobart": "Australia/Hobart",
    "vladivostok": "Asia/Vladivostok",
    "magadan": "Asia/Magadan",
    "solomon is., new caledonia": "Pacific/Guadalcanal",
    "auckland, wellington": "Pacific/Auckland",
    "fiji": "Pacific/Fiji",
    "nuku'alofa": "Pacific/Tongatapu",
    "samoa": "Pacific/Apia",
    "kiritimati island": "Pacific/Kiritimati",
}
_DISPLAY_PREFIX_RE = re.compile(r"^\((?:utc|gmt)(?:\s*[+-]\d{1,2}(?::?\d{2})?)?\)\s*", re.IGNORECASE)
_WINDOWS_NAMES = {name.lower(): olson for name, olson in WINDOWS_TO_OLSON.items()}


def _zoneinfo(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@functools.lru_cache(maxsize=512)
def resolve_tzid(tzid: str) -> tzinfo | None:
    """The zone a TZID names without a VTIMEZONE: IANA, Windows or Outlook display name.

    None when it cannot be resolved; callers skip the event then rather than guess.
    """
    name = " ".join(tzid.strip().strip('"').split())
    if not name:
        return None
    candidates = [name]
    lowered = name.lower()
    if lowered in _WINDOWS_NAMES:
        candidates.append(_WINDOWS_NAMES[lowered])
    display = _DISPLAY_PREFIX_RE.sub("", lowered)
    if display in _DISPLAY_NAMES:
        candidates.append(_DISPLAY_NAMES[display])
    if display in _WINDOWS_NAMES:
        candidates.append(_WINDOWS_NAMES[display])
    if name.startswith("/"):
        # "globally unique" TZIDs such as /mozilla.org/20070129_1/Europe/Berlin
        parts = name.strip("/").split("/")
        candidates.extend("/".join(parts[i:]) for i in range(1, len(parts)))
    for candidate in candidates:
        found = _zoneinfo(candidate)
        if found is not None:
            return found
    return None


# -- recognising OOO -----------------------------------------------------------------------


def _texts(component: icalendar.cal.Component, name: str) -> list[str]:
    value = component.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in values:
        cats = getattr(item, "cats", None)
        if cats is not None:
            out.extend(str(cat) for cat in cats)
        else:
            out.append(str(item))
    return out


def is_ooo(event: icalendar.cal.Component, rules: OooRules) -> bool:
    """Whether a VEVENT (or one occurrence of it) is an out-of-office period.

    The Outlook OOF markers count regardless of TRANSP; the operator's rules never count for
    transparent ("free") events; cancelled events never count.
    """
    if any(s.strip().upper() == "CANCELLED" for s in _texts(event, "STATUS")):
        return False
    for marker in OOF_MARKERS:
        if any(v.strip().upper() == "OOF" for v in _texts(event, marker)):
            return True
    if any(v.strip().upper() == "TRANSPARENT" for v in _texts(event, "TRANSP")):
        return False
    if rules.all_events:
        return True
    wanted = {c.strip().casefold() for c in rules.categories}
    if wanted and any(c.strip().casefold() in wanted for c in _texts(event, "CATEGORIES")):
        return True
    summary = " ".join(_texts(event, "SUMMARY")).casefold()
    return any(k.strip() and k.strip().casefold() in summary for k in rules.keywords)


# -- reading -------------------------------------------------------------------------------


def _load(data: bytes) -> icalendar.cal.Component:
    try:
        return icalendar.Calendar.from_ical(data)
    except Exception as exc:  # icalendar raises ValueError, IndexError, UnicodeError, ...
        # icalendar quotes the offending line: keep event text (a SUMMARY, say) out of logs
        reason = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", _short(exc))
        raise BadEventData(f"not an iCalendar object: {reason}") from exc


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _events(cal: icalendar.cal.Component, fallback_uid: str) -> list[icalendar.cal.Component]:
    """The VEVENTs, each with a UID (a missing one gets a stable stand-in)."""
    events = list(cal.walk("VEVENT"))
    missing = 0
    for event in events:
        if not str(event.get("UID", "")).strip():
            event.pop("UID", None)
            event.add("UID", fallback_uid if missing == 0 else f"{fallback_uid}-{missing}")
            missing += 1
    return events


def _uid(event: icalendar.cal.Component) -> str:
    return str(event["UID"]).strip()


def event_uids(data: bytes, fallback_uid: str = "event") -> list[str]:
    """Every UID in an iCalendar object, in order of appearance."""
    return list(dict.fromkeys(_uid(e) for e in _events(_load(data), fallback_uid)))


def _value(component: icalendar.cal.Component, name: str) -> Any:
    """A property as icalendar parsed it (its many value classes share no useful type)."""
    return component.get(name)


def _start(component: icalendar.cal.Component) -> date | datetime:
    value = _value(component, "DTSTART").dt
    assert isinstance(value, date)
    return value


def _single(event: icalendar.cal.Component, name: str) -> Any:
    value = event.get(name)
    if isinstance(value, list):
        raise BadEventData(f"{name} appears {len(value)} times")
    return value


def _localize(value: Any, tzid: str | None, floating: tzinfo) -> Any:
    """Give a naive DATE-TIME its zone: the TZID's, or the user's for floating times."""
    if not isinstance(value, datetime) or value.tzinfo is not None:
        return value
    if tzid:
        tz = resolve_tzid(tzid)
        if tz is None:
            raise BadEventData(f"unknown TZID {tzid!r}")
        return value.replace(tzinfo=tz)
    return value.replace(tzinfo=floating)


def _fix_times(event: icalendar.cal.Component, floating: tzinfo) -> None:
    """Make every DATE-TIME of the event aware, in place, or raise `BadEventData`.

    icalendar leaves a TZID it cannot resolve (no VTIMEZONE, not IANA/Windows) as a naive
    time, indistinguishable from a floating one; here it is resolved or refused.
    """
    errors = [f"{name}: {msg}" for name, msg in getattr(event, "errors", []) if name in _TIME_PROPERTIES]
    if errors:
        raise BadEventData("; ".join(errors))
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        prop = _single(event, name)
        if prop is None:
            continue
        value = prop.dt
        tzid = prop.params.get("TZID")
        fixed = _localize(value, tzid, floating)
        if fixed is not value:
            new = icalendar.vDDDTypes(fixed)
            for key, param in prop.params.items():
                if key not in ("TZID", "VALUE"):
                    new.params[key] = param  # keeps RANGE=THISANDFUTURE
            event[name] = new
    if "DTSTART" not in event:
        raise BadEventData("no DTSTART")
    for name in ("EXDATE", "RDATE"):
        value = event.get(name)
        if value is None:
            continue
        lists = value if isinstance(value, list) else [value]
        if not any(_has_naive(lst) for lst in lists):
            continue
        fixed_values: list[object] = []
        for lst in lists:
            tzid = lst.params.get("TZID")
            for item in lst.dts:
                dt = item.dt
                if isinstance(dt, tuple):
                    fixed_values.append(tuple(_localize(part, tzid, floating) for part in dt))
                else:
                    fixed_values.append(_localize(dt, tzid, floating))
        event.pop(name)
        for fixed in fixed_values:
            event.add(name, [fixed])  # in a list: a PERIOD tuple is one value, not two


def _has_naive(lst: object) -> bool:
    for item in getattr(lst, "dts", []):
        parts = item.dt if isinstance(item.dt, tuple) else (item.dt,)
        if any(isinstance(p, datetime) and p.tzinfo is None for p in parts):
            return True
    return False


def _end_of(event: icalendar.cal.Component, start: date | datetime) -> date | datetime:
    """DTEND, else DTSTART + DURATION, else one day (all-day) or zero length (timed)."""
    end = _single(event, "DTEND")
    if end is not None:
        value: date | datetime = end.dt
        return value
    duration = _single(event, "DURATION")
    if duration is not None:
        moved: date | datetime = start + duration.dt
        return moved
    if isinstance(start, datetime):
        return start
    return start + timedelta(days=1)


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _updated(event: icalendar.cal.Component, fallback: datetime | None) -> datetime | None:
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        prop = event.get(name)
        if prop is not None and not isinstance(prop, list):
            when = _when(getattr(prop, "dt", None))
            if when is not None:
                return when
    return fallback


def _instant_key(value: date | datetime, all_day_series: bool) -> str:
    """The recurrence instant of an occurrence, as written in its event id."""
    if isinstance(value, datetime):
        if all_day_series:
            # Exchange writes RECURRENCE-ID;TZID=...:20260226T000000 against DATE series
            return value.strftime("%Y%m%d")
        return format_instant(value)
    return value.strftime("%Y%m%d")


@dataclass(slots=True)
class _Context:
    window: SyncWindow
    rules: OooRules
    etag: str
    fallback_updated: datetime | None
    floating: tzinfo
    limits: ExpansionLimits
    deadline: float
    result: ParsedObject
    out_of_time: bool = False


def _content(component: icalendar.cal.Component, ctx: _Context, what: str | None) -> OooContent | None:
    """The OOO content of one occurrence, or None if it has none (noted as a problem
    unless ``what`` is None)."""
    start = _start(component)
    end = _end_of(component, start)
    title = " ".join(_texts(component, "SUMMARY")).strip() or None
    problem = None
    if isinstance(start, datetime):
        if not isinstance(end, datetime):
            problem = "DTEND is a date but DTSTART a date-time"
        elif end.astimezone(UTC) <= start.astimezone(UTC):
            problem = "does not end after it starts (no DTEND?); an OOO period needs a length"
        else:
            return timed_content(start.astimezone(UTC), end.astimezone(UTC), title)
    elif isinstance(end, datetime) or end <= start:
        problem = f"all-day event with a bad end {end!s}"
    else:
        return all_day_content(start, end, ctx.window.timezone, title)
    if what is not None:
        ctx.result.problems.append(f"{what}: {problem}")
    return None


def _remote(
    component: icalendar.cal.Component, content: OooContent, event_id: str, series_id: str | None, ctx: _Context
) -> RemoteEvent:
    block = _texts(component, BLOCK_ID_PROPERTY)
    return RemoteEvent(
        event_id=event_id,
        etag=ctx.etag,
        content=content,
        block_id=block[0].strip() if block and block[0].strip() else None,
        updated=_updated(component, ctx.fallback_updated),
        series_id=series_id,
    )


def _single_events(uid: str, group: list[icalendar.cal.Component], ctx: _Context) -> list[RemoteEvent]:
    """A UID without RRULE/RDATE: the event itself, or orphan overrides without a master."""
    out: list[RemoteEvent] = []
    for component in group:
        recurrence = component.get("RECURRENCE-ID")
        if recurrence is None:
            event_id, series_id = uid, None
        else:
            all_day = not isinstance(_start(component), datetime)
            event_id, series_id = f"{uid}/{_instant_key(recurrence.dt, all_day)}", uid
        if any(e.event_id == event_id for e in out) or not is_ooo(component, ctx.rules):
            continue
        content = _content(component, ctx, f"event {uid}")
        if content is None:
            continue
        if ctx.window.overlaps(content.start, content.end):
            out.append(_remote(component, content, event_id, series_id, ctx))
        else:
            ctx.result.outside.append(event_id)
    return out


def _rule_period(master: icalendar.cal.Component) -> timedelta | None:
    """The fixed step of a single RRULE with FREQ up to WEEKLY, else None."""
    rules = master.get("RRULE")
    if rules is None or isinstance(rules, list):
        return None
    step = _FREQ_STEP.get(str((rules.get("FREQ") or [""])[0]).upper())
    if step is None:
        return None
    interval = int((rules.get("INTERVAL") or [1])[0] or 1)
    return step * max(interval, 1)


def _shift_start(master: icalendar.cal.Component, window_start: datetime) -> None:
    """Move a high-frequency series' DTSTART close to the window, on the rule's own lattice.

    dateutil iterates from DTSTART, so FREQ=SECONDLY since 2001 would take hours before the
    first occurrence in the window. Only for a single RRULE without COUNT (COUNT counts from
    the original DTSTART) and FREQ up to WEEKLY (adding whole periods keeps BYxxx meaning).
    """
    period = _rule_period(master)
    start = _start(master)
    if period is None or not isinstance(start, datetime):
        return
    end = _end_of(master, start)
    duration = end - start if isinstance(end, datetime) else timedelta(0)
    target = window_start - duration - period
    periods = (target - start) // period
    if periods <= _MAX_PERIODS_BEFORE_WINDOW:
        return
    if _value(master, "RRULE").get("COUNT"):
        if periods > _MAX_PERIODS_WITH_COUNT:
            raise BadEventData(f"RRULE with COUNT runs {periods} periods before the window; too long to expand")
        return
    shifted = start + periods * period  # wall-clock arithmetic, like dateutil's
    while shifted > target:  # a DST change between start and target may put us past it
        shifted -= period * ((shifted - target) // period + 1)
    master["DTSTART"] = icalendar.vDDDTypes(shifted)
    if "DTEND" in master:
        master["DTEND"] = icalendar.vDDDTypes(shifted + duration)


def _until(value: object, start: date | datetime) -> date | datetime | None:
    """An RRULE's UNTIL in the form dateutil accepts with ``start``.

    Where the two disagree (a DATE against a zoned start, a UTC time against a DATE series)
    the zone is unknown here, so it is moved late enough for any zone: a superset is safe.
    """
    if not isinstance(value, date):
        return None
    slack = timedelta(hours=14)  # the largest UTC offset
    if isinstance(start, datetime) and start.tzinfo is not None:
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC) + slack
        return datetime(value.year, value.month, value.day, tzinfo=UTC) + timedelta(days=1) + slack
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) + slack if value.tzinfo is not None else value
    return datetime(value.year, value.month, value.day)  # noqa: DTZ001 - floating, like start


class _RuleBound:
    """Where a series' RRULEs reach their ``nth`` start after an instant, read with dateutil.

    Expanding up to that instant touches at most ``nth`` occurrences per RRULE however dense
    the rule is, so one chunk of FREQ=SECONDLY cannot turn into millions of components.
    The rules are parsed once and cached: stretch after stretch reuses the walk so far.
    """

    def __init__(self, master: icalendar.cal.Component) -> None:
        start = _start(master)
        self.naive = not isinstance(start, datetime) or start.tzinfo is None
        first = start if isinstance(start, datetime) else datetime(start.year, start.month, start.day)  # noqa: DTZ001
        rules = master.get("RRULE")
        self.rules: list[dateutil.rrule.rrule] = []
        for rule in [] if rules is None else rules if isinstance(rules, list) else [rules]:
            # with COUNT, UNTIL is redundant for a bound (and dateutil warns about both)
            until = None if rule.get("COUNT") else _until((rule.get("UNTIL") or [None])[0], start)
            open_rule: Any = icalendar.vRecur({k: v for k, v in rule.items() if k.upper() != "UNTIL"})
            text = open_rule.to_ical().decode()
            parsed = dateutil.rrule.rrulestr(text, dtstart=first, cache=True)
            self.rules.append(parsed.replace(until=until) if until is not None else parsed)

    def nth_after(self, after: datetime, nth: int) -> datetime | None:
        """The ``nth`` start at or after ``after`` (UTC), or None if the rules end before."""
        since = after.astimezone(UTC).replace(tzinfo=None) if self.naive else after
        nth = max(nth, 1)
        bound: datetime | None = None
        for rule in self.rules:
            last = next(itertools.islice(rule.xafter(since, count=nth, inc=True), nth - 1, None), None)
            if last is None:
                continue
            last_utc = last.astimezone(UTC) if last.tzinfo is not None else last.replace(tzinfo=UTC)
            bound = last_utc if bound is None else min(bound, last_utc)
        return bound


def _series_events(
    uid: str, group: list[icalendar.cal.Component], timezones: list[icalendar.cal.Component], ctx: _Context
) -> list[RemoteEvent]:
    """Expand one recurring UID inside the window, chunk by chunk, within the limits.

    Each stretch expanded ends where the rule's next ``limit`` starts end (`_rule_bound`),
    so no single recurring-ical-events call can produce more than about ``limit``
    occurrences; chunks grow over sparse stretches and shrink over dense ones.
    """
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    all_day = not isinstance(_start((masters or group)[0]), datetime)
    # all-day dates are read in the user's zone later: a day of margin for every zone
    margin = timedelta(days=1) if all_day else timedelta(0)
    lo, hi = ctx.window.start - margin, ctx.window.end + margin
    limit = ctx.limits.max_occurrences
    length = timedelta(0)
    if master is not None:
        _shift_start(master, lo)
        start = _start(master)
        end = _end_of(master, start)
        length = abs(end - start) if type(end) is type(start) else timedelta(days=1)
    for override in group:
        recurrence = override.get("RECURRENCE-ID")
        if recurrence is not None and is_ooo(override, ctx.rules):
            content = _content(override, ctx, None)
            if content is not None and not ctx.window.overlaps(content.start, content.end):
                ctx.result.outside.append(f"{uid}/{_instant_key(recurrence.dt, all_day)}")
    sub = icalendar.Calendar()
    for tz in timezones:
        sub.add_component(tz)
    for component in group:
        sub.add_component(component)
    query = recurring_ical_events.of(sub)

    found: dict[str, tuple[OooContent, RemoteEvent]] = {}
    seen: set[str] = set()
    try:
        rule_bound = _RuleBound(master) if master is not None else None
    except (ValueError, TypeError, OverflowError):
        rule_bound = None  # recurring-ical-events may still read a rule dateutil refuses as is

    def stretch_end(since: datetime) -> datetime:
        if rule_bound is None:
            return hi
        bound = rule_bound.nth_after(since, limit + 1 - len(seen))
        return hi if bound is None else min(hi, bound + length + margin + timedelta(seconds=1))

    span, chunk_start = timedelta(minutes=15), lo
    stretch = stretch_end(lo)
    reported = False
    while chunk_start < hi:
        if ctx.limits.clock() > ctx.deadline:
            ctx.out_of_time = True
            break
        if chunk_start >= stretch:
            stretch = max(stretch_end(chunk_start), chunk_start + timedelta(seconds=1))
        chunk_end = chunk_start + min(span, stretch - chunk_start, hi - chunk_start)
        batch = query.between(chunk_start, chunk_end)
        for component in batch:
            key = _instant_key(component["RECURRENCE-ID"].dt, all_day)
            if key in seen:
                continue
            seen.add(key)
            if not is_ooo(component, ctx.rules):
                continue
            content = _content(component, ctx, None if reported else f"occurrence {uid}/{key}")
            reported = reported or content is None  # one line per series is enough
            if content is not None and ctx.window.overlaps(content.start, content.end):
                found[key] = (content, _remote(component, content, f"{uid}/{key}", uid, ctx))
        if len(seen) > limit:
            ctx.result.problems.append(f"series {uid}: more than {limit} occurrences in the window; kept the first")
            break
        if len(batch) < 64:
            span = min(span * 2, timedelta(days=400))
        elif len(batch) > 256:
            span = max(span / 2, timedelta(minutes=1))
        chunk_start = chunk_end
    ordered = sorted(found.values(), key=lambda pair: (pair[0].start, pair[1].event_id))
    return [event for _, event in ordered[:limit]]


def parse_ooo_events(
    data: bytes,
    window: SyncWindow,
    rules: OooRules,
    *,
    etag: str,
    fallback_updated: datetime | None = None,
    fallback_uid: str = "event",
    limits: ExpansionLimits | None = None,
    only_uid: str | None = None,
    fast: bool = True,
) -> ParsedObject:
    """The OOO events of one iCalendar object that overlap ``window``.

    Raises `BadEventData` when the bytes are not iCalendar at all; a bad event (broken
    DTSTART or RRULE, unknown TZID, no length) skips that UID and adds a line to ``problems``.
    ``fallback_uid`` names events without a UID (the object's file name, say); ``only_uid``
    looks at one UID and leaves the others unexpanded. Simple one-event objects are read by
    `connectors.ical_fast` (the same answer, ~20x faster); ``fast=False`` always uses icalendar.
    """
    simple = read_simple(data, window, rules, etag=etag, fallback_updated=fallback_updated,
                         fallback_uid=fallback_uid) if fast else None
    if simple is not None and (only_uid is None or simple.uids == [only_uid]):
        return ParsedObject(events=simple.events, uids=simple.uids, outside=simple.outside)
    limits = limits or ExpansionLimits()
    cal = _load(data)
    result = ParsedObject()
    ctx = _Context(
        window=window,
        rules=rules,
        etag=etag,
        fallback_updated=fallback_updated,
        floating=zone(window.timezone),
        limits=limits,
        deadline=limits.clock() + limits.expand_seconds,
        result=result,
    )
    groups: dict[str, list[icalendar.cal.Component]] = {}
    for event in _events(cal, fallback_uid):
        groups.setdefault(_uid(event), []).append(event)
    result.uids = list(groups)
    timezones = list(cal.walk("VTIMEZONE"))
    for uid, group in groups.items():
        # only series with something OOO are worth expanding
        if (only_uid is not None and uid != only_uid) or not any(is_ooo(c, rules) for c in group):
            continue
        try:
            for component in group:
                _fix_times(component, ctx.floating)
            if any(c.get("RRULE") is not None or c.get("RDATE") is not None for c in group):
                if ctx.out_of_time:
                    result.problems.append(f"series {uid}: not expanded, out of time")
                    continue
                result.events.extend(_series_events(uid, group, timezones, ctx))
            else:
                result.events.extend(_single_events(uid, group, ctx))
        except Exception as exc:  # noqa: BLE001 - one broken UID must not stop the others
            result.problems.append(f"event {uid}: {_short(exc)}")
    if ctx.out_of_time:
        result.problems.append(f"expansion stopped after {limits.expand_seconds:g} s; later occurrences skipped")
    return result


# -- writing -------------------------------------------------------------------------------


def _set(component: icalendar.cal.Component, name: str, value: object) -> None:
    component.pop(name, None)
    component.add(name, value)


def _set_times(component: icalendar.cal.Component, content: OooContent) -> None:
    for name in ("DTSTART", "DTEND", "DURATION"):
        component.pop(name, None)
    if content.all_day:
        assert content.start_date is not None and content.end_date is not None
        component.add("DTSTART", content.start_date)
        component.add("DTEND", content.end_date)
    else:
        component.add("DTSTART", content.start.astimezone(UTC))
        component.add("DTEND", content.end.astimezone(UTC))


def _stamp(component: icalendar.cal.Component, now: datetime) -> None:
    now = now.astimezone(UTC).replace(microsecond=0)
    _set(component, "DTSTAMP", now)
    _set(component, "LAST-MODIFIED", now)


def _apply_draft(component: icalendar.cal.Component, draft: EventDraft, rules: OooRules, now: datetime) -> None:
    """Times, title and block id from the draft; every other property stays as it was."""
    _set_times(component, draft.content)
    _set(component, "SUMMARY", draft.content.title)
    _set(component, BLOCK_ID_PROPERTY, draft.block_id)
    _stamp(component, now)
    sequence = component.get("SEQUENCE")
    try:
        _set(component, "SEQUENCE", int(sequence) + 1 if sequence is not None else 0)
    except (TypeError, ValueError):
        pass
    if not is_ooo(component, rules):
        # e.g. it was OOO by a summary keyword that the new title lacks
        _set(component, "X-MICROSOFT-CDO-BUSYSTATUS", "OOF")


def new_event_bytes(uid: str, draft: EventDraft, now: datetime) -> bytes:
    """A VCALENDAR holding the one OOO event syncd writes for a block."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    event = icalendar.Event()
    event.add("UID", uid)
    _stamp(event, now)
    event.add("SUMMARY", draft.content.title)
    _set_times(event, draft.content)
    event.add("TRANSP", "OPAQUE")
    event.add("X-MICROSOFT-CDO-BUSYSTATUS", "OOF")
    event.add(BLOCK_ID_PROPERTY, draft.block_id)
    cal.add_component(event)
    return bytes(cal.to_ical())


def _group(cal: icalendar.cal.Component, uid: str, fallback_uid: str) -> list[icalendar.cal.Component]:
    return [e for e in _events(cal, fallback_uid) if _uid(e) == uid]


def _is_series(event: icalendar.cal.Component) -> bool:
    return event.get("RRULE") is not None or event.get("RDATE") is not None


def replace_event(
    data: bytes, uid: str, draft: EventDraft, now: datetime, rules: OooRules, *, fallback_uid: str = "event"
) -> bytes:
    """Rewrite a non-recurring event's times, title and block id. Raises `NotFound`."""
    cal = _load(data)
    masters = [e for e in _group(cal, uid, fallback_uid) if e.get("RECURRENCE-ID") is None]
    if not masters:
        raise NotFound(f"no event with UID {uid!r}")
    if _is_series(masters[0]):
        raise NotFound(f"{uid!r} is a recurring series; address one occurrence as {uid}/<instant>")
    _apply_draft(masters[0], draft, rules, now)
    return bytes(cal.to_ical())


def _raw_instant(value: object, params: dict[str, str], all_day_series: bool, floating: tzinfo) -> str | None:
    """The id instant of a RECURRENCE-ID/EXDATE value as stored (naive times resolved)."""
    if not isinstance(value, date):
        return None
    try:
        fixed = _localize(value, params.get("TZID"), floating)
    except BadEventData:
        return None
    assert isinstance(fixed, date)
    return _instant_key(fixed, all_day_series)


def _recurrence_value(
    master: icalendar.cal.Component, instant: str, floating: tzinfo
) -> date | datetime:
    """The RECURRENCE-ID/EXDATE value for an instant, in the form the master's DTSTART uses."""
    start_prop = _value(master, "DTSTART")
    start = start_prop.dt
    parsed = _parse_instant(instant)
    if not isinstance(start, datetime):
        if isinstance(parsed, datetime):
            raise NotFound(f"instant {instant} is a time but the series is all-day")
        return parsed
    if not isinstance(parsed, datetime):
        raise NotFound(f"instant {instant} is a date but the series is timed")
    if start.tzinfo is None and not start_prop.params.get("TZID"):
        return parsed.astimezone(floating).replace(tzinfo=None)  # floating series
    return parsed  # UTC matches a TZID series too (RFC 5545 3.8.4.4)


def _override_for(
    group: list[icalendar.cal.Component], instant: str, all_day_series: bool, floating: tzinfo
) -> icalendar.cal.Component | None:
    for component in group:
        prop = component.get("RECURRENCE-ID")
        if prop is not None and not isinstance(prop, list):
            if _raw_instant(prop.dt, prop.params, all_day_series, floating) == instant:
                return component
    return None


def _excluded(master: icalendar.cal.Component, instant: str, all_day_series: bool, floating: tzinfo) -> bool:
    value = master.get("EXDATE")
    if value is None:
        return False
    for lst in value if isinstance(value, list) else [value]:
        for item in lst.dts:
            if _raw_instant(item.dt, lst.params, all_day_series, floating) == instant:
                return True
    return False


def _all_day_series(group: list[icalendar.cal.Component]) -> bool:
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    return not isinstance(_start((masters or group)[0]), datetime)


_NOT_COPIED = {"RRULE", "RDATE", "EXDATE", "EXRULE", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID", "SEQUENCE"}


def override_occurrence(
    data: bytes,
    uid: str,
    instant: str,
    draft: EventDraft,
    now: datetime,
    rules: OooRules,
    floating: tzinfo,
    *,
    fallback_uid: str = "event",
) -> bytes:
    """Add or replace the RECURRENCE-ID override of one occurrence. Raises `NotFound`.

    A new override starts as a copy of the master's properties (title, OOF marker,
    categories...) with the draft's times, title and block id.
    """
    cal = _load(data)
    group = _group(cal, uid, fallback_uid)
    if not group:
        raise NotFound(f"no event with UID {uid!r}")
    all_day = _all_day_series(group)
    override = _override_for(group, instant, all_day, floating)
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    if override is None:
        if master is None or not _is_series(master):
            raise NotFound(f"{uid}/{instant} is not an occurrence of a series")
        if _excluded(master, instant, all_day, floating):
            raise NotFound(f"occurrence {uid}/{instant} was deleted")
        override = icalendar.Event()
        for name, value in master.property_items(recursive=False):
            if name not in ("BEGIN", "END") and name not in _NOT_COPIED:
                override.add(name, value, encode=False)
        override.add("RECURRENCE-ID", _recurrence_value(master, instant, floating))
        override.add("SEQUENCE", 0)
        cal.add_component(override)
    _apply_draft(override, draft, rules, now)
    return bytes(cal.to_ical())


def exclude_occurrence(
    data: bytes, uid: str, instant: str, now: datetime, floating: tzinfo, *, fallback_uid: str = "event"
) -> bytes | None:
    """Delete one occurrence: EXDATE on the master, its override dropped.

    None when there is nothing to delete (no such UID, or already excluded); ``b""`` when no
    VEVENT is left (the caller removes the object).
    """
    cal = _load(data)
    group = _group(cal, uid, fallback_uid)
    if not group:
        return None
    all_day = _all_day_series(group)
    override = _override_for(group, instant, all_day, floating)
    masters = [c for c in group if c.get("RECURRENCE-ID") is None]
    master = masters[0] if masters else None
    changed = False
    if override is not None:
        cal.subcomponents.remove(override)
        changed = True
    if master is not None and _is_series(master) and not _excluded(master, instant, all_day, floating):
        master.add("EXDATE", _recurrence_value(master, instant, floating))
        _stamp(master, now)
        changed = True
    if not changed:
        return None
    if not list(cal.walk("VEVENT")):
        return b""
    return bytes(cal.to_ical())


def remove_event(data: bytes, uid: str, *, fallback_uid: str = "event") -> bytes | None:
    """Drop a non-recurring event (every VEVENT of its UID).

    None if there is no such event, or the UID is a recurring series (its id is never the
    plain UID); ``b""`` when no VEVENT is left (the caller removes the object).
    """
    cal = _load(data)
    group = _group(cal, uid, fallback_uid)
    if not group or any(_is_series(c) for c in group):
        return None
    cal.subcomponents = [c for c in cal.subcomponents if not any(c is g for g in group)]
    if not list(cal.walk("VEVENT")):
        return b""
    return bytes(cal.to_ical())
