"""A fast reader for the commonest iCalendar object: one plain event in UTC or whole days.

Parsing with ``icalendar`` costs about half a millisecond per object, which dominates a
first sync of thousands of events. Most objects in real calendars are one VEVENT with a UTC
or DATE start and end, no recurrence and no time zone. `read_simple` reads exactly those
with a line scanner and answers None for anything else, which then goes to the full reader
(`connectors.ical.parse_ooo_events`). Its answers equal the full reader's for every object
it accepts; ``tests/connectors/ical/test_fast.py`` checks that on real exports and generated events.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from syncd.core.calendars import OooRules, RemoteEvent, SyncWindow
from syncd.core.errors import UserInputError
from syncd.core.ooo import OooContent, all_day_content, timed_content

__all__ = ["SimpleObject", "read_simple"]

OOF_MARKERS = ("X-MICROSOFT-CDO-BUSYSTATUS", "X-MICROSOFT-CDO-INTENDEDSTATUS")
# Any of these means the full reader: recurrence, durations, time zones, other components.
_COMPLEX = frozenset({"RRULE", "RDATE", "EXDATE", "EXRULE", "RECURRENCE-ID", "DURATION"})
_TEXT_ESCAPES = {"n": "\n", "N": "\n", ",": ",", ";": ";", "\\": "\\"}


class SimpleObject:
    """The parts of `connectors.ical.ParsedObject` a simple object has."""

    __slots__ = ("events", "outside", "uids")

    def __init__(self, events: list[RemoteEvent], uids: list[str], outside: list[str]) -> None:
        self.events, self.uids, self.outside = events, uids, outside


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw[:1] in (" ", "\t") and lines:
            lines[-1] += raw[1:]
        elif raw:
            lines.append(raw)
    return lines


def _split(line: str) -> tuple[str, dict[str, str], str] | None:
    """NAME;PARAM=V:VALUE -> (NAME, params, value); None if it cannot be read simply."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            head, value = line[:i], line[i + 1:]
            break
    else:
        return None
    name, *params = head.split(";")
    found: dict[str, str] = {}
    for param in params:
        key, sep, val = param.partition("=")
        if not sep:
            return None
        found[key.strip().upper()] = val.strip().strip('"')
    return name.strip().upper(), found, value


def _text(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(_TEXT_ESCAPES.get(value[i + 1], value[i + 1]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _texts(value: str) -> list[str]:
    """A comma-separated text list (CATEGORIES), escaped commas kept."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            current.append(value[i:i + 2])
            i += 2
            continue
        if ch == ",":
            parts.append(_text("".join(current)))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append(_text("".join(current)))
    return parts


def _instant(value: str, params: dict[str, str]) -> date | datetime | None:
    """A UTC date-time or a DATE; None for anything else (floating, TZID, periods)."""
    if set(params) - {"VALUE"}:
        return None
    kind = params.get("VALUE", "").upper()
    try:
        if len(value) == 8 and kind in ("", "DATE"):
            return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
        if len(value) == 16 and value[8] == "T" and value.endswith("Z") and kind in ("", "DATE-TIME"):
            return datetime(int(value[:4]), int(value[4:6]), int(value[6:8]), int(value[9:11]), int(value[11:13]),
                            int(value[13:15]), tzinfo=UTC)
    except ValueError:
        return None
    return None


_Props = dict[str, list[tuple[dict[str, str], str]]]


def read_simple(data: bytes, window: SyncWindow, rules: OooRules, *, etag: str,
                fallback_updated: datetime | None, fallback_uid: str) -> SimpleObject | None:
    """The OOO event of a one-event object, or None when the full reader must do it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    props = _event_properties(text)
    if props is None:
        return None
    for single in ("DTSTART", "DTEND", "UID", "SUMMARY", "STATUS", "TRANSP", *OOF_MARKERS):
        if len(props.get(single, ())) > 1:
            return None
    if "DTSTART" not in props or "DTEND" not in props:
        return None
    start = _instant(props["DTSTART"][0][1].strip(), props["DTSTART"][0][0])
    end = _instant(props["DTEND"][0][1].strip(), props["DTEND"][0][0])
    if start is None or end is None or isinstance(start, datetime) != isinstance(end, datetime):
        return None
    uid = _text(props["UID"][0][1]).strip() if "UID" in props else fallback_uid
    if not uid:
        return None
    if not _is_ooo(props, rules):
        return SimpleObject([], [uid], [])
    title = " ".join(_text(v) for _p, v in props.get("SUMMARY", ())).strip() or None
    content = _content(start, end, window, title)
    if content is None:
        return None
    if not window.overlaps(content.start, content.end):
        return SimpleObject([], [uid], [uid])
    block = _first(props, "X-SYNCD-BLOCK-ID") or None  # icalendar keeps unknown X- values raw: so do we
    updated = fallback_updated
    for name in ("LAST-MODIFIED", "DTSTAMP"):
        if name in props:
            when = _instant(_first(props, name), props[name][0][0])
            if not isinstance(when, datetime):
                return None  # a local or odd stamp: let the full reader decide
            updated = when
            break
    return SimpleObject([RemoteEvent(uid, etag, content, block_id=block, updated=updated)], [uid], [])


def _event_properties(text: str) -> _Props | None:
    """The properties of the one VEVENT of a VCALENDAR (alarms skipped), each with every value;
    None for anything else: no or many events, other components, recurrence, TZIDs, odd lines."""
    depth = 0
    events = 0
    props: _Props = {}
    for line in _unfold(text):
        split = _split(line)
        if split is None:
            return None
        name, params, value = split
        if name == "BEGIN":
            kind = value.strip().upper()
            if depth == 0 and kind == "VCALENDAR":
                depth = 1
            elif depth == 1 and kind == "VEVENT":
                depth, events = 2, events + 1
            elif depth == 2 and kind == "VALARM":
                depth = 3
            else:
                return None  # VTIMEZONE, VTODO, nesting we do not read here
            continue
        if name == "END":
            depth -= 1
            continue
        if depth != 2:
            continue  # calendar properties, alarm properties
        if name in _COMPLEX or "TZID" in params:
            return None
        props.setdefault(name, []).append((params, value))
    if events != 1 or depth != 0:
        return None
    return props


def _first(props: _Props, name: str) -> str:
    return props[name][0][1].strip() if name in props else ""


def _content(start: date | datetime, end: date | datetime, window: SyncWindow, title: str | None) -> OooContent | None:
    """The period from ``start`` to ``end``; None if it has no length (the full reader reports that)."""
    try:
        if isinstance(start, datetime) and isinstance(end, datetime):
            if end <= start:
                return None
            return timed_content(start, end, title)
        if end <= start:
            return None
        return all_day_content(start, end, window.timezone, title)
    except UserInputError:
        return None


def _is_ooo(props: _Props, rules: OooRules) -> bool:
    """`connectors.ical.is_ooo` for the properties of one simple event."""
    def values(name: str) -> list[str]:
        # icalendar unescapes known text properties and keeps unknown X- values raw
        return [v if name.startswith("X-") else _text(v) for _p, v in props.get(name, ())]

    if any(s.strip().upper() == "CANCELLED" for s in values("STATUS")):
        return False
    for marker in OOF_MARKERS:
        if any(v.strip().upper() == "OOF" for v in values(marker)):
            return True
    if any(v.strip().upper() == "TRANSPARENT" for v in values("TRANSP")):
        return False
    if rules.all_events:
        return True
    wanted = {c.strip().casefold() for c in rules.categories}
    if wanted:
        categories = [c for _p, v in props.get("CATEGORIES", ()) for c in _texts(v)]
        if any(c.strip().casefold() in wanted for c in categories):
            return True
    summary = " ".join(values("SUMMARY")).casefold()
    return any(k.strip() and k.strip().casefold() in summary for k in rules.keywords)
