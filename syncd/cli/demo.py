"""Example calendars for `make run`: something visibly happens at any time of day.

    python -m syncd.cli.demo var/demo

writes ``var/demo/calendars/<calendar>/*.ics`` (the `local` connector's folder layout):

- ``ada``: an OOO block spanning years: always away;
- ``bo``: an ordinary meeting, never OOO: always available;
- ``cy``: a recurring OOO, 2 minutes of every 4, for two days from now: flips all the time;
- ``di-work``: an all-day OOO next week, mirrored by syncd into ``di-home``.

The folder is made afresh when missing or older than a day (cy's series has run out by then);
otherwise it is left alone, with whatever syncd or you wrote into it.
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["write_demo"]

FRESH_FOR = timedelta(days=1)


def _event(uid: str, lines: list[str]) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    body = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//syncd//demo//EN", "BEGIN:VEVENT",
                        f"UID:{uid}", f"DTSTAMP:{stamp}", *lines, "END:VEVENT", "END:VCALENDAR", ""])
    return body


def write_demo(root: Path, now: datetime) -> bool:
    """(Re)create the demo folder if needed; True when it was written."""
    marker = root / ".created-at"
    if marker.exists():
        created = datetime.fromisoformat(marker.read_text().strip())
        if now - created < FRESH_FOR:
            return False
    shutil.rmtree(root, ignore_errors=True)
    cals = root / "calendars"
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 4)
    next_monday = (now + timedelta(days=7 - now.weekday())).date()
    files = {
        "ada/ada-sabbatical.ics": _event("ada-sabbatical", [
            "SUMMARY:Sabbatical", "DTSTART;VALUE=DATE:20250101", "DTEND;VALUE=DATE:20300101",
            "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]),
        "bo/bo-standup.ics": _event("bo-standup", [
            "SUMMARY:Standup", f"DTSTART:{start:%Y%m%dT%H%M%SZ}", "DURATION:PT15M", "RRULE:FREQ=DAILY;COUNT=30",
            "X-MICROSOFT-CDO-BUSYSTATUS:BUSY"]),
        "cy/cy-flipping.ics": _event("cy-flipping", [
            "SUMMARY:Out of office (demo: 2 of every 4 minutes)", f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            "DURATION:PT2M", "RRULE:FREQ=MINUTELY;INTERVAL=4;COUNT=720", "X-MICROSOFT-CDO-BUSYSTATUS:OOF"]),
        "di-work/di-conference.ics": _event("di-conference", [
            "SUMMARY:Conference trip", f"DTSTART;VALUE=DATE:{next_monday:%Y%m%d}",
            f"DTEND;VALUE=DATE:{next_monday + timedelta(days=3):%Y%m%d}", "CATEGORIES:Out of office"]),
    }
    for name, text in files.items():
        path = cals / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    (cals / "di-home").mkdir(parents=True, exist_ok=True)
    marker.write_text(now.isoformat())
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "var/demo")
    if write_demo(target, datetime.now(UTC)):
        print(f"wrote example calendars to {target}/calendars (and a fresh database will be made there)")
    else:
        print(f"using the example calendars in {target}/calendars")
