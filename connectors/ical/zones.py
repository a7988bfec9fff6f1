"""Time zones of iCalendar times: TZIDs resolved, floating times given the user's zone.

Owns `resolve_tzid` (a TZID without a VTIMEZONE read as an IANA name, a Windows zone name,
an Outlook/OWA display name such as ``(UTC+01:00) Amsterdam, Berlin, ...``, or a "globally
unique" ``/vendor/.../Europe/Berlin`` TZID), `ObjectZones` (the VTIMEZONEs an object defines,
read with bounded work), and `fix_times`, which makes every DATE-TIME of a VEVENT aware in
place or refuses the event: icalendar leaves a TZID it cannot resolve as a naive time,
indistinguishable from a floating one.

A TZID resolves, in this order, to the IANA zone icalendar found for it (IANA and Windows
names), to the object's own VTIMEZONE of that TZID, then to `resolve_tzid`. A VTIMEZONE is
never read by icalendar/dateutil here: dateutil's ``tzical`` walks a STANDARD/DAYLIGHT rule
from its DTSTART on every offset it is asked for, without bound (``RRULE:FREQ=SECONDLY``
since 1970 takes hours and memory), and icalendar keeps the zone it builds in a cache shared
by the whole process, first definition of a TZID wins, so one calendar's "Customized Time
Zone" would be read with another's rules. `VtimezoneZone` has the same meaning as dateutil's
zone, its onsets read once, up to `_ZONE_HORIZON`, with a bounded walk
(`connectors.ical.walks`) and at most `_MAX_ONSETS` of them.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dateutil.rrule
import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from connectors.ical.components import prop, short, single
from connectors.ical.walks import Budget, ExpansionLimits, WalkLimit, WalkMeter, bounded_walk
from syncd.core.errors import BadEventData

__all__ = ["ObjectZones", "VtimezoneZone", "fix_times", "localize", "resolve_tzid"]

_ZONE_HORIZON = datetime(2200, 1, 1)  # noqa: DTZ001 - a wall time; onsets are read up to here (as far as `ids.all_of_time`)
_MAX_ONSETS = 10_000  # per VTIMEZONE; a real one has two a year since 1601 at most (~1,200)
_ZONE_STEPS = 300_000  # calls (`connectors.ical.walks`) to read one VTIMEZONE: ~0.2 s, ~20,000 onsets

# Properties whose parse errors make an event unusable (errors elsewhere, e.g. in a
# DESCRIPTION, are ignored).
_TIME_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")

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


# -- VTIMEZONE definitions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Observance:
    """One STANDARD or DAYLIGHT: its offsets, and its onsets as wall times in ``offset_from``."""

    offset_from: timedelta
    offset_to: timedelta
    is_dst: bool
    name: str | None
    onsets: list[datetime]  # sorted, naive

    @property
    def diff(self) -> timedelta:
        return self.offset_to - self.offset_from

    def last_onset(self, wall: datetime) -> datetime | None:
        """The latest onset at or before the wall time ``wall``."""
        i = bisect.bisect_right(self.onsets, wall)
        return self.onsets[i - 1] if i else None


class VtimezoneZone(tzinfo):
    """A VTIMEZONE as a zone, with the meaning dateutil's ``tzical`` gives it, onsets read once.

    A wall time is in the observance with the latest onset at or before it (for a repeated
    hour, ``fold=1`` is looked up one ``diff`` later, as dateutil does); before the first
    onset, in the first STANDARD. Lookups are binary searches over the onsets.
    """

    def __init__(self, tzid: str, observances: list[_Observance]) -> None:
        self.tzid = tzid
        self._observances = observances
        self._default = next((o for o in observances if not o.is_dst), observances[0])
        transitions = sorted((onset - o.offset_from, i) for i, o in enumerate(observances) for onset in o.onsets)
        self._utc = [at for at, _ in transitions]
        self._utc_observance = [observances[i] for _, i in transitions]

    def __repr__(self) -> str:
        return f"<VtimezoneZone {self.tzid!r}>"

    def _find(self, dt: datetime) -> _Observance:
        if len(self._observances) == 1:
            return self._observances[0]
        wall = dt.replace(tzinfo=None)
        found: _Observance | None = None
        found_onset: datetime | None = None
        for observance in self._observances:
            probe = wall - observance.diff if observance.diff < timedelta(0) and dt.fold else wall
            onset = observance.last_onset(probe)
            if onset is not None and (found_onset is None or found_onset < onset):
                found, found_onset = observance, onset
        return found or self._default

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None if dt is None else self._find(dt).offset_to

    def dst(self, dt: datetime | None) -> timedelta | None:
        if dt is None:
            return None
        observance = self._find(dt)
        return observance.diff if observance.is_dst else timedelta(0)

    def tzname(self, dt: datetime | None) -> str | None:
        return self.tzid if dt is None else self._find(dt).name

    def fromutc(self, dt: datetime) -> datetime:
        if dt.tzinfo is not self:
            raise ValueError("fromutc: dt.tzinfo is not self")
        at = dt.replace(tzinfo=None)
        i = bisect.bisect_right(self._utc, at)
        offset = (self._utc_observance[i - 1] if i else self._default).offset_to
        wall = (at + offset).replace(tzinfo=self)
        # the fold whose offset is the one in force: 1 only for the second of a repeated hour
        if wall.utcoffset() != offset and wall.replace(fold=1).utcoffset() == offset:
            return wall.replace(fold=1)
        return wall


def _read_observance(sub: icalendar.cal.Component, tzid: str, room: int) -> _Observance:
    """One STANDARD/DAYLIGHT with its onsets up to `_ZONE_HORIZON`, at most ``room`` of them.

    The rule set is the one dateutil's ``tzical`` builds (DTSTART always an onset; RRULE,
    RDATE, EXRULE, EXDATE), read without time zones as it does; only the walk differs: it
    stops at the horizon, and at ``room`` onsets.
    """
    start = prop(sub, "DTSTART").dt
    if not isinstance(start, datetime):
        start = datetime(start.year, start.month, start.day)  # noqa: DTZ001 - a wall time, as dateutil reads it
    start = start.replace(tzinfo=None)
    text = re.sub(r"\r?\n[ \t]", "", sub.to_ical().decode("utf-8", "replace"))
    lines = [line for line in text.splitlines()
             if re.split(r"[;:]", line, maxsplit=1)[0].upper() in ("RRULE", "RDATE", "EXRULE", "EXDATE")]
    rules: Any = [start]
    if lines:
        rules = dateutil.rrule.rrulestr("\n".join(lines), dtstart=start, compatible=True, ignoretz=True)
    onsets: list[datetime] = []
    for onset in rules:
        if onset >= _ZONE_HORIZON:
            break
        if len(onsets) >= room:
            raise BadEventData(f"VTIMEZONE {tzid!r} has more than {_MAX_ONSETS} onsets")
        onsets.append(onset)
    name = sub.get("TZNAME")
    return _Observance(prop(sub, "TZOFFSETFROM").td, prop(sub, "TZOFFSETTO").td, sub.name == "DAYLIGHT",
                       str(name[-1] if isinstance(name, list) else name) if name is not None else None, onsets)


def read_vtimezone(component: icalendar.cal.Component, meter: WalkMeter) -> VtimezoneZone:
    """A VTIMEZONE as a zone, its rules walked within ``meter``; `BadEventData` if it cannot be."""
    tzid = str(component.get("TZID", ""))
    observances: list[_Observance] = []
    try:
        with bounded_walk(meter):
            for sub in component.subcomponents:
                if sub.name in ("STANDARD", "DAYLIGHT"):
                    room = _MAX_ONSETS - sum(len(o.onsets) for o in observances)
                    observances.append(_read_observance(sub, tzid, room))
    except BadEventData:
        raise
    except Exception as exc:  # dateutil and icalendar raise ValueError, KeyError, TypeError, ...
        raise BadEventData(f"VTIMEZONE {tzid!r} cannot be read: {short(exc)}") from exc
    if not observances:
        raise BadEventData(f"VTIMEZONE {tzid!r} has no STANDARD or DAYLIGHT")
    return VtimezoneZone(tzid, observances)


class ObjectZones:
    """The VTIMEZONEs of one iCalendar object by TZID, each read on first use within ``budget``.

    A VTIMEZONE that cannot be read (too many onsets, a walk over its limits) fails every
    event that uses it, each with the same `BadEventData`, and is read only once.
    """

    def __init__(self, timezones: list[icalendar.cal.Component], budget: Budget | None = None) -> None:
        self._budget = budget if budget is not None else Budget.starting_now(ExpansionLimits())
        self._definitions: dict[str, icalendar.cal.Component] = {}
        for component in timezones:
            tzid = str(component.get("TZID", ""))
            for key in (tzid, tzid.strip("/")):
                self._definitions.setdefault(key, component)  # the first wins, as in icalendar
        self._read: dict[str, VtimezoneZone | BadEventData] = {}

    def get(self, tzid: str) -> VtimezoneZone | None:
        """The object's own zone of ``tzid``, None if it defines none; `BadEventData` if bad."""
        component = self._definitions.get(tzid)
        if component is None:
            component = self._definitions.get(tzid.strip("/"))
            if component is None:
                return None
        key = str(component.get("TZID", ""))
        known = self._read.get(key)
        if known is None:
            try:
                known = read_vtimezone(component, self._budget.meter(_ZONE_STEPS, f"VTIMEZONE {key!r}"))
            except WalkLimit as exc:
                self._budget.reached(exc)
                known = exc
            except BadEventData as exc:
                known = exc
            self._read[key] = known
        if isinstance(known, WalkLimit):
            raise WalkLimit(str(known), out_of_time=known.out_of_time)
        if isinstance(known, BadEventData):
            raise BadEventData(str(known))
        return known


# -- DATE-TIMEs made aware -----------------------------------------------------------------------

# The zones icalendar gives that syncd trusts as they are: IANA ones, UTC, and the object's own
# VTIMEZONEs as read here. Anything else with a TZID (a dateutil ``tzical`` zone from icalendar's
# process-wide cache, say) is resolved again from the TZID.
_TRUSTED = (ZoneInfo, timezone, VtimezoneZone)


def localize(value: Any, tzid: str | None, floating: tzinfo, zones: ObjectZones | None = None) -> Any:
    """Give a DATE-TIME its zone: the TZID's (see the module's order), or the user's for floating times."""
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is not None:
        if not tzid or isinstance(value.tzinfo, _TRUSTED):
            return value
        value = value.replace(tzinfo=None)
    if tzid:
        tz: tzinfo | None = zones.get(tzid) if zones is not None else None
        if tz is None:
            tz = resolve_tzid(tzid)
        if tz is None:
            raise BadEventData(f"unknown TZID {tzid!r}")
        return value.replace(tzinfo=tz)
    return value.replace(tzinfo=floating)


def fix_times(event: icalendar.cal.Component, floating: tzinfo, zones: ObjectZones | None = None) -> None:
    """Make every DATE-TIME of the event aware, in place, or raise `BadEventData`.

    icalendar leaves a TZID it cannot resolve (no VTIMEZONE, not IANA/Windows) as a naive
    time, indistinguishable from a floating one; here it is resolved (``zones`` are the
    object's own VTIMEZONEs) or refused.
    """
    errors = [f"{name}: {msg}" for name, msg in getattr(event, "errors", []) if name in _TIME_PROPERTIES]
    if errors:
        raise BadEventData("; ".join(errors))
    _fix_single_times(event, floating, zones)
    if "DTSTART" not in event:
        raise BadEventData("no DTSTART")
    for name in ("EXDATE", "RDATE"):
        _fix_time_lists(event, name, floating, zones)


def _fix_single_times(event: icalendar.cal.Component, floating: tzinfo, zones: ObjectZones | None) -> None:
    """DTSTART, DTEND and RECURRENCE-ID made aware, their other parameters kept."""
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        prop = single(event, name)
        if prop is None:
            continue
        value = prop.dt
        tzid = prop.params.get("TZID")
        fixed = localize(value, tzid, floating, zones)
        if fixed is not value:
            new = icalendar.vDDDTypes(fixed)
            for key, param in prop.params.items():
                if key not in ("TZID", "VALUE"):
                    new.params[key] = param  # keeps RANGE=THISANDFUTURE
            event[name] = new


def _fix_time_lists(event: icalendar.cal.Component, name: str, floating: tzinfo, zones: ObjectZones | None) -> None:
    """Every value of an EXDATE or RDATE property (one or many lines) made aware."""
    value = event.get(name)
    if value is None:
        return
    lists = value if isinstance(value, list) else [value]
    if not any(_needs_zone(lst) for lst in lists):
        return
    fixed_values: list[object] = []
    for lst in lists:
        tzid = lst.params.get("TZID")
        for item in lst.dts:
            dt = item.dt
            if isinstance(dt, tuple):
                fixed_values.append(tuple(localize(part, tzid, floating, zones) for part in dt))
            else:
                fixed_values.append(localize(dt, tzid, floating, zones))
    event.pop(name)
    for fixed in fixed_values:
        event.add(name, [fixed])  # in a list: a PERIOD tuple is one value, not two


def _needs_zone(lst: Any) -> bool:
    """Whether a list has a naive DATE-TIME, or one with a TZID in a zone not trusted as it is."""
    tzid = lst.params.get("TZID") if hasattr(lst, "params") else None
    for item in getattr(lst, "dts", []):
        parts = item.dt if isinstance(item.dt, tuple) else (item.dt,)
        for part in parts:
            if isinstance(part, datetime) and (
                part.tzinfo is None or (tzid and not isinstance(part.tzinfo, _TRUSTED))
            ):
                return True
    return False
