"""Public holidays and company days off: the whole local days on which someone does not work.

A `DaysOff` is a public-holiday calendar (a country, optionally a subdivision, from the
`holidays` package) plus a set of company days off. The status rules make a user away for
each such day from local midnight to the next local midnight in the user's zone, and the
business-time clock counts no working time on it.

Holiday calendars are resolved once per (country, subdivision, observed, year) and kept in a
bounded cache: the status timer asks about the same few calendars over and over. Names are in
the country's own language ("Juldagen", "Første juledag"), so a helpdesk shows what agents
call the day.

Written in the config file and the API as::

    holidays = { country = "SE", subdivision = "", observed = true }   # or false: none
    days_off = ["2026-12-24", "2026-12-31"]

and stored as ``{"holidays": {"country": "SE", "subdivision": "", "observed": true} | false,
"days_off": ["2026-12-24"]}`` (`spec_to_json`); a missing ``holidays`` key means "as the
daemon's default". Parsing raises `DaysOffProblem` (a `ValueError`) naming what is wrong and under which
key, for the caller to prefix with where it was written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

import holidays as holiday_data

__all__ = [
    "DayOff",
    "DaysOffProblem",
    "DaysOff",
    "DaysOffSpec",
    "HolidayRule",
    "days_off_of",
    "parse_dates",
    "parse_holidays",
    "spec_from_json",
    "spec_to_json",
]

DayOffKind = Literal["holiday", "day_off"]

# The years the holiday data can be asked about; outside them a day is never a holiday.
# (The package computes any year, but a hostile "year 9999" should cost nothing.)
FIRST_YEAR, LAST_YEAR = 1950, 2200

MAX_DATES = 2000  # company days off per list: years of them, still cheap to look through

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class DaysOffProblem(ValueError):
    """A bad ``holidays`` or ``days_off`` value; ``key`` is where below it ("country", "[2]"),
    empty for the value itself."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key, self.message = key, message


@dataclass(frozen=True, slots=True)
class HolidayRule:
    """Whose public holidays: an ISO 3166 country, optionally one of its subdivisions."""

    country: str
    subdivision: str = ""
    observed: bool = True  # also the weekday a holiday falling on a weekend is observed on

    def as_json(self) -> dict[str, Any]:
        return {"country": self.country, "subdivision": self.subdivision, "observed": self.observed}


@dataclass(frozen=True, slots=True)
class DayOff:
    """One whole local day off and why."""

    day: date
    kind: DayOffKind
    name: str | None = None  # the holiday's name; None for a company day off


@dataclass(frozen=True, slots=True)
class DaysOff:
    """A person's or team's days off: public holidays and company days off."""

    holidays: HolidayRule | None = None
    dates: frozenset[date] = frozenset()

    def __bool__(self) -> bool:
        return self.holidays is not None or bool(self.dates)

    def on(self, day: date) -> DayOff | None:
        """Why ``day`` is a day off, or None. A public holiday wins over a company day off
        on the same date: it has a name to show."""
        if self.holidays is not None:
            name = holiday_names(self.holidays, day.year).get(day)
            if name is not None:
                return DayOff(day, "holiday", name)
        if day in self.dates:
            return DayOff(day, "day_off")
        return None

    def between(self, first: date, last: date) -> Iterator[DayOff]:
        """The days off from ``first`` to ``last`` inclusive, in order."""
        found: dict[date, DayOff] = {d: DayOff(d, "day_off") for d in self.dates if first <= d <= last}
        if self.holidays is not None:
            for year in range(max(first.year, FIRST_YEAR), min(last.year, LAST_YEAR) + 1):
                for day, name in holiday_names(self.holidays, year).items():
                    if first <= day <= last:
                        found[day] = DayOff(day, "holiday", name)
        for day in sorted(found):
            yield found[day]


@dataclass(frozen=True, slots=True)
class DaysOffSpec:
    """Days off as configured for one user or team: ``holidays`` None means "the default"
    (the daemon's), False means "no public holidays"; ``dates`` add to the default's."""

    holidays: HolidayRule | Literal[False] | None = None
    dates: frozenset[date] = frozenset()


def days_off_of(own: DaysOffSpec | None, default: DaysOffSpec | None = None) -> DaysOff:
    """The days off in force: the own holiday rule, else the default's; the company days
    off of both (the daemon's apply to everyone)."""
    own = own or DaysOffSpec()
    default = default or DaysOffSpec()
    rule = own.holidays if own.holidays is not None else default.holidays
    return DaysOff(rule or None, own.dates | default.dates)


@lru_cache(maxsize=512)
def holiday_names(rule: HolidayRule, year: int) -> Mapping[date, str]:
    """``rule``'s public holidays in ``year``, named in the country's language (cached)."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return {}
    language = _default_language(rule.country)
    found = holiday_data.country_holidays(rule.country, subdiv=rule.subdivision or None, years=year,
                                          observed=rule.observed, language=language)
    # Two holidays on one date come joined by "; " in the package: keep them so.
    return {day: str(name) for day, name in sorted(found.items()) if day.year == year}


@lru_cache(maxsize=64)
def _default_language(country: str) -> str | None:
    return getattr(holiday_data.country_holidays(country, years=[]), "default_language", None)


@lru_cache(maxsize=1)
def _countries() -> Mapping[str, Sequence[str]]:
    return holiday_data.list_supported_countries()


def _subdivision_aliases(country: str) -> Mapping[str, str]:
    aliases = getattr(holiday_data.country_holidays(country, years=[]), "subdivisions_aliases", None)
    return aliases or {}


def parse_holidays(value: Any) -> HolidayRule | Literal[False]:
    """``{country, subdivision?, observed?}`` or ``false`` -> the rule, or `DaysOffProblem`."""
    if value is False:
        return False
    if not isinstance(value, Mapping):
        raise DaysOffProblem("", 'expected a table like { country = "SE" } or false')
    unknown = sorted(set(value) - {"country", "subdivision", "observed"})
    if unknown:
        raise DaysOffProblem(unknown[0], "unknown key (use country, subdivision, observed)")
    country = value.get("country")
    if not isinstance(country, str) or not country.strip():
        raise DaysOffProblem("country", 'missing; give an ISO 3166 code such as "SE", "NO" or "US"')
    country = country.strip().upper()
    supported = _countries()
    if country not in supported:
        raise DaysOffProblem("country", f"unknown country {value['country']!r} (use an ISO 3166 code that the "
                                        "holidays package supports, such as SE, NO, US)")
    subdivision = value.get("subdivision", "")
    if not isinstance(subdivision, str):
        raise DaysOffProblem("subdivision", 'expected a string such as "NY", or "" for the whole country')
    subdivision = subdivision.strip()
    if subdivision:
        known = list(supported[country])
        canonical = _subdivision_aliases(country).get(subdivision, subdivision)
        match = next((s for s in known if s.upper() == canonical.upper()), None)
        if match is None:
            shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") if known else "none"
            raise DaysOffProblem("subdivision", f"{country} has no subdivision {subdivision!r} (known: {shown})")
        subdivision = match
    observed = value.get("observed", True)
    if not isinstance(observed, bool):
        raise DaysOffProblem("observed", "expected true or false")
    return HolidayRule(country, subdivision, observed)


def parse_dates(value: Any) -> frozenset[date]:
    """A list of ``"YYYY-MM-DD"`` strings (or dates) -> the set, or `DaysOffProblem`."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise DaysOffProblem("", 'expected a list of dates such as ["2026-12-24", "2026-12-31"]')
    if len(value) > MAX_DATES:
        raise DaysOffProblem("", f"at most {MAX_DATES} dates")
    out: set[date] = set()
    for i, item in enumerate(value):
        if isinstance(item, date) and not isinstance(item, datetime):
            out.add(item)
            continue
        if not isinstance(item, str):
            raise DaysOffProblem(f"[{i}]", 'expected a date such as "2026-12-24"')
        try:
            if not _DATE_RE.fullmatch(item.strip()):
                raise ValueError(item)
            out.add(date.fromisoformat(item.strip()))
        except ValueError:
            raise DaysOffProblem(f"[{i}]", f'{item!r} is not a date such as "2026-12-24"') from None
    return frozenset(out)


def spec_to_json(spec: DaysOffSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.holidays is not None:
        out["holidays"] = spec.holidays.as_json() if spec.holidays else False
    if spec.dates:
        out["days_off"] = sorted(d.isoformat() for d in spec.dates)
    return out


def spec_from_json(data: Mapping[str, Any] | None) -> DaysOffSpec:
    """The stored form back (already checked when it was written)."""
    if not data:
        return DaysOffSpec()
    rule = data.get("holidays")
    holidays: HolidayRule | Literal[False] | None = None
    if rule is False:
        holidays = False
    elif isinstance(rule, Mapping):
        holidays = HolidayRule(rule["country"], rule.get("subdivision", ""), rule.get("observed", True))
    return DaysOffSpec(holidays, frozenset(date.fromisoformat(d) for d in data.get("days_off", ())))
