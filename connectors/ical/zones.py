"""Time zones of iCalendar times: TZIDs resolved, floating times given the user's zone.

Owns `resolve_tzid` (a TZID without a VTIMEZONE read as an IANA name, a Windows zone name,
an Outlook/OWA display name such as ``(UTC+01:00) Amsterdam, Berlin, ...``, or a "globally
unique" ``/vendor/.../Europe/Berlin`` TZID) and `fix_times`, which makes every DATE-TIME of
a VEVENT aware in place or refuses the event: icalendar leaves a TZID it cannot resolve as
a naive time, indistinguishable from a floating one.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from connectors.ical.components import single
from syncd.core.errors import BadEventData

__all__ = ["fix_times", "localize", "resolve_tzid"]

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


def localize(value: Any, tzid: str | None, floating: tzinfo) -> Any:
    """Give a naive DATE-TIME its zone: the TZID's, or the user's for floating times."""
    if not isinstance(value, datetime) or value.tzinfo is not None:
        return value
    if tzid:
        tz = resolve_tzid(tzid)
        if tz is None:
            raise BadEventData(f"unknown TZID {tzid!r}")
        return value.replace(tzinfo=tz)
    return value.replace(tzinfo=floating)


def fix_times(event: icalendar.cal.Component, floating: tzinfo) -> None:
    """Make every DATE-TIME of the event aware, in place, or raise `BadEventData`.

    icalendar leaves a TZID it cannot resolve (no VTIMEZONE, not IANA/Windows) as a naive
    time, indistinguishable from a floating one; here it is resolved or refused.
    """
    errors = [f"{name}: {msg}" for name, msg in getattr(event, "errors", []) if name in _TIME_PROPERTIES]
    if errors:
        raise BadEventData("; ".join(errors))
    _fix_single_times(event, floating)
    if "DTSTART" not in event:
        raise BadEventData("no DTSTART")
    for name in ("EXDATE", "RDATE"):
        _fix_time_lists(event, name, floating)


def _fix_single_times(event: icalendar.cal.Component, floating: tzinfo) -> None:
    """DTSTART, DTEND and RECURRENCE-ID made aware, their other parameters kept."""
    for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
        prop = single(event, name)
        if prop is None:
            continue
        value = prop.dt
        tzid = prop.params.get("TZID")
        fixed = localize(value, tzid, floating)
        if fixed is not value:
            new = icalendar.vDDDTypes(fixed)
            for key, param in prop.params.items():
                if key not in ("TZID", "VALUE"):
                    new.params[key] = param  # keeps RANGE=THISANDFUTURE
            event[name] = new


def _fix_time_lists(event: icalendar.cal.Component, name: str, floating: tzinfo) -> None:
    """Every value of an EXDATE or RDATE property (one or many lines) made aware."""
    value = event.get(name)
    if value is None:
        return
    lists = value if isinstance(value, list) else [value]
    if not any(_has_naive(lst) for lst in lists):
        return
    fixed_values: list[object] = []
    for lst in lists:
        tzid = lst.params.get("TZID")
        for item in lst.dts:
            dt = item.dt
            if isinstance(dt, tuple):
                fixed_values.append(tuple(localize(part, tzid, floating) for part in dt))
            else:
                fixed_values.append(localize(dt, tzid, floating))
    event.pop(name)
    for fixed in fixed_values:
        event.add(name, [fixed])  # in a list: a PERIOD tuple is one value, not two


def _has_naive(lst: object) -> bool:
    for item in getattr(lst, "dts", []):
        parts = item.dt if isinstance(item.dt, tuple) else (item.dt,)
        if any(isinstance(p, datetime) and p.tzinfo is None for p in parts):
            return True
    return False
