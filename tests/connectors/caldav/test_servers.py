"""The CalDAV test servers and their helpers (`tests.connectors.caldav.servers`), on real Radicale and
Xandikos: each helper works on both, and the server quirks the module docstring records hold."""

from __future__ import annotations

import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import icalendar
import pytest

from connectors.ical import parse_ooo_events
from syncd.core.calendars import OooRules, RemoteEvent, SyncWindow
from syncd.core.ooo import OooContent
from tests.connectors.caldav.servers import (
    CS,
    DAV,
    OOF_LINE,
    CalDAVError,
    CalDAVPerson,
    CalDAVServer,
    ServerKind,
    run_server,
    server,
    split_by_uid,
    vcalendar,
    vevent,
)
from tests.connectors.contract import TZ, all_day, timed

START = datetime(2026, 12, 24, 9, 17, tzinfo=UTC)
HOME = {"radicale": ("/alice/", "/alice/"), "xandikos": ("/user/", "/user/calendars/")}
INVALID_TOKEN_STATUS = {"radicale": 403, "xandikos": 412}


@pytest.fixture(scope="module", params=["radicale", "xandikos"])
def caldav(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalDAVServer]:
    kind: ServerKind = request.param
    with server(kind, tmp_path_factory.mktemp(kind)) as handle:
        yield handle


@pytest.fixture
def calendar_url(caldav: CalDAVServer) -> str:
    return caldav.make_calendar(f"cal-{uuid.uuid4().hex[:10]}")


def event(uid: str, hours: int = 2, *, summary: str = "Out of office", ooo: bool = True) -> str:
    return vevent(uid, START, START + timedelta(hours=hours), summary=summary, ooo=ooo)


def vevents(body: str) -> list[icalendar.cal.Component]:
    return [c for c in icalendar.Calendar.from_ical(body).walk("VEVENT")]


def meaning(body: str) -> list[dict[str, str]]:
    """What the events of an object say, independent of property order and folding."""
    keep = ("UID", "DTSTART", "DTEND", "SUMMARY", "TRANSP", "X-MICROSOFT-CDO-BUSYSTATUS", "RECURRENCE-ID", "RRULE")
    return [{name: _text(event[name]) for name in keep if name in event} for event in vevents(body)]


def _text(value: object) -> str:
    raw = value.to_ical() if hasattr(value, "to_ical") else value
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def path_of(href: str) -> str:
    return unquote(urlsplit(href).path)


def error_element(response_text: str) -> list[str]:
    root = ET.fromstring(response_text)
    assert root.tag == f"{{{DAV}}}error"
    return [child.tag for child in root]


def window() -> SyncWindow:
    now = datetime.now(UTC)
    return SyncWindow(now - timedelta(days=30), now + timedelta(days=365), TZ)


def read_back(caldav: CalDAVServer, calendar_url: str, uid: str) -> list[RemoteEvent]:
    """What syncd's iCalendar reader makes of the stored (server-rewritten) object."""
    found = caldav.get_event(calendar_url, uid)
    assert found is not None
    body, etag = found
    return parse_ooo_events(body.encode(), window(), OooRules(), etag=etag).events


# -- the server itself ---------------------------------------------------------------------------
def test_server_runs_on_loopback_and_discovery_finds_the_home_set(caldav: CalDAVServer) -> None:
    assert urlsplit(caldav.base_url).hostname == "127.0.0.1"
    principal, home = HOME[caldav.kind]
    assert urlsplit(caldav.principal_url).path == principal
    assert urlsplit(caldav.home_url).path == home
    assert caldav.home_url.startswith(caldav.base_url)


def test_make_calendar_creates_an_empty_calendar_under_the_home_set(caldav: CalDAVServer) -> None:
    name = f"work-{uuid.uuid4().hex[:6]}"
    url = caldav.make_calendar(name)
    assert url == f"{caldav.home_url}{name}/"
    props = caldav.properties(url, (DAV, "resourcetype"), (DAV, "displayname"))
    assert props[f"{{{DAV}}}displayname"].text == name
    assert props[f"{{{DAV}}}resourcetype"].find("{urn:ietf:params:xml:ns:caldav}calendar") is not None
    assert caldav.list_hrefs(url) == {}
    with pytest.raises(CalDAVError) as exc:
        caldav.make_calendar(name)
    assert exc.value.status in (405, 409, 403)


def test_both_advertise_sync_collection_multiget_and_ctag(caldav: CalDAVServer, calendar_url: str) -> None:
    props = caldav.properties(calendar_url, (DAV, "supported-report-set"), (CS, "getctag"), (DAV, "sync-token"))
    reports = {child.tag for report in props[f"{{{DAV}}}supported-report-set"].iter(f"{{{DAV}}}report")
               for child in report}
    assert {f"{{{DAV}}}sync-collection", "{urn:ietf:params:xml:ns:caldav}calendar-multiget",
            "{urn:ietf:params:xml:ns:caldav}calendar-query"} <= reports
    before = caldav.ctag(calendar_url)
    assert before and caldav.sync_token(calendar_url)
    caldav.put_event(calendar_url, "ctag@example.com", event("ctag@example.com"))
    assert caldav.ctag(calendar_url) != before


def test_a_server_that_does_not_start_is_reported_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('cannot bind, say'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 3.*cannot bind, say"):
        with run_server("radicale", command, tmp_path, 9, "alice", "x"):
            pass  # pragma: no cover


# -- objects -------------------------------------------------------------------------------------
def test_put_get_delete_with_etags(caldav: CalDAVServer, calendar_url: str) -> None:
    uid = f"{uuid.uuid4()}@example.com"
    etag = caldav.put_event(calendar_url, uid, event(uid), create_only=True)
    found = caldav.get_event(calendar_url, uid)
    assert found is not None and found[1] == etag
    assert meaning(found[0]) == meaning(event(uid))

    newer = caldav.put_event(calendar_url, uid, event(uid, hours=3), etag=etag)
    assert newer != etag
    with pytest.raises(CalDAVError) as stale:
        caldav.put_event(calendar_url, uid, event(uid, hours=4), etag=etag)
    assert stale.value.status == 412
    with pytest.raises(CalDAVError) as exists:
        caldav.put_event(calendar_url, uid, event(uid, hours=4), create_only=True)
    assert exists.value.status == 412
    with pytest.raises(CalDAVError) as stale_delete:
        caldav.delete_event(calendar_url, uid, etag=etag)
    assert stale_delete.value.status == 412
    found = caldav.get_event(calendar_url, uid)
    assert found is not None and found[1] == newer and meaning(found[0]) == meaning(event(uid, hours=3))

    caldav.delete_event(calendar_url, uid, etag=newer)
    assert caldav.get_event(calendar_url, uid) is None
    with pytest.raises(CalDAVError) as gone:
        caldav.delete_event(calendar_url, uid)
    assert gone.value.status == 404


def test_delete_by_href(caldav: CalDAVServer, calendar_url: str) -> None:
    caldav.put_event(calendar_url, "a@example.com", event("a@example.com"))
    (href,) = caldav.list_hrefs(calendar_url)
    caldav.delete_event(calendar_url, href)
    assert caldav.list_hrefs(calendar_url) == {}


def test_server_rewrites_the_event_on_put_but_keeps_its_meaning(caldav: CalDAVServer, calendar_url: str) -> None:
    sent = event("rewrite@example.com", summary="A summary long enough, with; commas, to need folding at 75 octets")
    etag = caldav.put_event(calendar_url, "rewrite@example.com", sent)
    found = caldav.get_event(calendar_url, "rewrite@example.com")
    assert found is not None
    body, get_etag = found
    assert body.replace("\r\n", "\n") != sent.replace("\r\n", "\n")  # reordered and refolded
    assert meaning(body) == meaning(sent)
    assert get_etag == etag  # the PUT's ETag is the stored body's
    # the rewrite is idempotent: sending back the server's own bytes keeps the ETag
    assert caldav.put_event(calendar_url, "rewrite@example.com", body, etag=etag) == etag


def test_list_hrefs_maps_each_object_to_its_etag(caldav: CalDAVServer, calendar_url: str) -> None:
    etags = {uid: caldav.put_event(calendar_url, uid, event(uid)) for uid in ("a@x", "b@x", "c")}
    hrefs = caldav.list_hrefs(calendar_url)
    assert {path_of(href): etag for href, etag in hrefs.items()} == {
        f"{urlsplit(calendar_url).path}{uid}.ics": etag for uid, etag in etags.items()
    }


# -- seeding -------------------------------------------------------------------------------------
def test_seed_500_events_in_one_call(caldav: CalDAVServer, calendar_url: str) -> None:
    uids = [f"seed-{i:04d}@example.com" for i in range(500)]
    text = vcalendar([vevent(uid, START + timedelta(days=i), START + timedelta(days=i, hours=3),
                             ooo=i % 2 == 0) for i, uid in enumerate(uids)])
    assert text.count("BEGIN:VEVENT") == 500 and text.count("BEGIN:VCALENDAR") == 1
    before = caldav.requests_made
    caldav.seed(calendar_url, text)
    if caldav.kind == "radicale":  # one PUT of the whole VCALENDAR (and a PROPFIND of the displayname)
        assert caldav.requests_made - before == 2
    hrefs = caldav.list_hrefs(calendar_url)
    assert len(hrefs) == 500
    assert {path_of(h) for h in hrefs} == {f"{urlsplit(calendar_url).path}{uid}.ics" for uid in uids}
    for i in (0, 1, 499):
        found = caldav.get_event(calendar_url, uids[i])
        assert found is not None
        (vevent_,) = vevents(found[0])
        assert str(vevent_["UID"]) == uids[i]
        assert (OOF_LINE in found[0]) == (i % 2 == 0)


def test_seed_replaces_the_content_and_keeps_the_calendar(caldav: CalDAVServer, calendar_url: str) -> None:
    name = caldav.properties(calendar_url, (DAV, "displayname"))[f"{{{DAV}}}displayname"].text
    caldav.put_event(calendar_url, "old@example.com", event("old@example.com"))
    caldav.seed(calendar_url, vcalendar([event("new-1@example.com"), event("new-2@example.com")]))
    assert sorted(path_of(h).rsplit("/", 1)[1] for h in caldav.list_hrefs(calendar_url)) == [
        "new-1@example.com.ics", "new-2@example.com.ics"]
    props = caldav.properties(calendar_url, (DAV, "displayname"), (DAV, "resourcetype"))
    assert props[f"{{{DAV}}}displayname"].text == name
    assert props[f"{{{DAV}}}resourcetype"].find("{urn:ietf:params:xml:ns:caldav}calendar") is not None
    caldav.put_event(calendar_url, "after@example.com", event("after@example.com"))
    assert len(caldav.list_hrefs(calendar_url)) == 3


TIMEZONE = """BEGIN:VTIMEZONE
TZID:Europe/Stockholm
BEGIN:STANDARD
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
END:DAYLIGHT
END:VTIMEZONE
"""


def local_event(uid: str, *extra: str) -> str:
    return "\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z",
                      "DTSTART;TZID=Europe/Stockholm:20261224T090000", "DTEND;TZID=Europe/Stockholm:20261224T100000",
                      "SUMMARY:Weekly off", OOF_LINE, *extra, "END:VEVENT"])


def test_seed_keeps_a_series_and_its_overrides_in_one_object(caldav: CalDAVServer, calendar_url: str) -> None:
    text = vcalendar([TIMEZONE, local_event("series", "RRULE:FREQ=WEEKLY;COUNT=3"),
                      local_event("series", "RECURRENCE-ID;TZID=Europe/Stockholm:20261231T090000"),
                      local_event("single")])
    assert set(split_by_uid(text)) == {"series", "single"}
    caldav.seed(calendar_url, text)
    assert len(caldav.list_hrefs(calendar_url)) == 2
    found = caldav.get_event(calendar_url, "series")
    assert found is not None
    assert len(vevents(found[0])) == 2
    assert "BEGIN:VTIMEZONE" in found[0]


def test_vcalendar_merges_vevent_results_and_bare_blocks() -> None:
    merged = vcalendar([event("a"), TIMEZONE, TIMEZONE, local_event("b")])
    cal = icalendar.Calendar.from_ical(merged)
    assert [str(c["UID"]) for c in cal.walk("VEVENT")] == ["a", "b"]
    assert len(cal.walk("VTIMEZONE")) == 1
    assert merged.count("BEGIN:VCALENDAR") == 1 and merged.endswith("END:VCALENDAR\r\n")


def test_vevent_renders_utc_times_the_oof_marker_and_all_day_dates() -> None:
    (timed_event,) = vevents(event("t@x"))
    assert timed_event.decoded("DTSTART") == START and timed_event.decoded("DTEND") == START + timedelta(hours=2)
    assert str(timed_event["X-MICROSOFT-CDO-BUSYSTATUS"]) == "OOF" and "DTSTAMP" in timed_event
    (meeting,) = vevents(event("m@x", ooo=False))
    assert "X-MICROSOFT-CDO-BUSYSTATUS" not in meeting and str(meeting["TRANSP"]) == "OPAQUE"
    (day,) = vevents(vevent("d@x", date(2026, 12, 24), date(2026, 12, 27), extra_lines=["TRANSP:TRANSPARENT"]))
    assert day.decoded("DTSTART") == date(2026, 12, 24) and str(day["TRANSP"]) == "TRANSPARENT"
    with pytest.raises(ValueError):
        vevent("n@x", datetime(2026, 1, 1), datetime(2026, 1, 2))  # noqa: DTZ001 - naive on purpose


# -- sync tokens ---------------------------------------------------------------------------------
def sync_token_of(response_text: str) -> str:
    token = ET.fromstring(response_text).findtext(f"{{{DAV}}}sync-token")
    assert token
    return token


def sync_changes(response_text: str) -> dict[str, str]:
    """{path: "changed" | "deleted"} of a sync-collection answer."""
    changes: dict[str, str] = {}
    for response in ET.fromstring(response_text).iter(f"{{{DAV}}}response"):
        href = path_of(response.findtext(f"{{{DAV}}}href") or "")
        status = response.findtext(f"{{{DAV}}}status") or ""
        changes[href] = "deleted" if " 404 " in status else "changed"
    return changes


@pytest.mark.parametrize("token", ["bogus", "well-formed"])
def test_invalid_sync_token_is_refused_with_valid_sync_token(caldav: CalDAVServer, calendar_url: str,
                                                             token: str) -> None:
    caldav.put_event(calendar_url, "t@example.com", event("t@example.com"))
    if token == "well-formed":  # a real token's shape with a digest the server never issued
        real = sync_token_of(caldav.sync_collection(calendar_url).text)
        token = real[:-8] + ("0" * 8 if not real.endswith("0" * 8) else "1" * 8)
    response = caldav.sync_collection(calendar_url, token, expect=range(400, 500))
    assert response.status_code == INVALID_TOKEN_STATUS[caldav.kind]
    assert error_element(response.text)[0] == f"{{{DAV}}}valid-sync-token"


def test_sync_collection_reports_changes_and_deletions(caldav: CalDAVServer, calendar_url: str) -> None:
    for uid in ("keep", "edit", "gone"):
        caldav.put_event(calendar_url, uid, event(uid))
    first = caldav.sync_collection(calendar_url)
    assert first.status_code == 207
    assert set(sync_changes(first.text).values()) == {"changed"} and len(sync_changes(first.text)) == 3
    caldav.put_event(calendar_url, "edit", event("edit", hours=5))
    caldav.put_event(calendar_url, "new", event("new"))
    caldav.delete_event(calendar_url, "gone")
    second = caldav.sync_collection(calendar_url, sync_token_of(first.text))
    base = urlsplit(calendar_url).path
    assert sync_changes(second.text) == {f"{base}edit.ics": "changed", f"{base}new.ics": "changed",
                                         f"{base}gone.ics": "deleted"}
    third = caldav.sync_collection(calendar_url, sync_token_of(second.text))
    assert sync_changes(third.text) == {}


def test_seed_invalidates_earlier_tokens_on_radicale_only(caldav: CalDAVServer, calendar_url: str) -> None:
    caldav.put_event(calendar_url, "before", event("before"))
    token = sync_token_of(caldav.sync_collection(calendar_url).text)
    caldav.seed(calendar_url, vcalendar([event("seeded")]))
    response = caldav.sync_collection(calendar_url, token, expect=(207, 403))
    if caldav.kind == "radicale":  # the collection was replaced, its token history with it
        assert response.status_code == 403
    else:
        base = urlsplit(calendar_url).path
        assert sync_changes(response.text) == {f"{base}seeded.ics": "changed", f"{base}before.ics": "deleted"}


def test_calendar_multiget_returns_the_bodies(caldav: CalDAVServer, calendar_url: str) -> None:
    for uid in ("m1", "m2", "m3"):
        caldav.put_event(calendar_url, uid, event(uid))
    hrefs = sorted(h for h in caldav.list_hrefs(calendar_url) if "m3" not in h)
    body = ('<?xml version="1.0" encoding="utf-8"?>'
            '<c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
            "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
            + "".join(f"<d:href>{h}</d:href>" for h in hrefs) + "</c:calendar-multiget>")
    response = caldav.report(calendar_url, body)
    assert response.status_code == 207
    datas = [e.text or "" for e in ET.fromstring(response.text).iter("{urn:ietf:params:xml:ns:caldav}calendar-data")]
    assert sorted(str(vevents(d)[0]["UID"]) for d in datas) == ["m1", "m2"]


# -- a person editing the calendar ---------------------------------------------------------------
def test_person_adds_timed_and_all_day_ooo_events(caldav: CalDAVServer, calendar_url: str) -> None:
    person = CalDAVPerson(caldav, calendar_url, TZ)
    trip = person.add(timed(5))
    vacation = person.add(all_day(10, 3))
    assert {path_of(h).rsplit("/", 1)[1] for h in caldav.list_hrefs(calendar_url)} == {
        f"{trip}.ics", f"{vacation}.ics"}
    (read,) = read_back(caldav, calendar_url, trip)
    assert read.event_id == trip and read.content == timed(5)
    (read,) = read_back(caldav, calendar_url, vacation)
    assert read.event_id == vacation and read.content == all_day(10, 3)
    found = caldav.get_event(calendar_url, vacation)
    assert found is not None and "DTSTART;VALUE=DATE:" in found[0]


def test_person_adds_an_ordinary_meeting(caldav: CalDAVServer, calendar_url: str) -> None:
    person = CalDAVPerson(caldav, calendar_url, TZ)
    meeting = person.add(timed(6), ooo=False)
    found = caldav.get_event(calendar_url, meeting)
    assert found is not None
    (component,) = vevents(found[0])
    assert "X-MICROSOFT-CDO-BUSYSTATUS" not in component and str(component["TRANSP"]) == "OPAQUE"
    assert read_back(caldav, calendar_url, meeting) == []


def test_person_edits_keeping_ooo(caldav: CalDAVServer, calendar_url: str) -> None:
    person = CalDAVPerson(caldav, calendar_url, TZ)
    event_id = person.add(timed(5))
    before = caldav.get_event(calendar_url, event_id)
    changed: OooContent = timed(5, hours=3, title="Dentist, then home")
    person.edit(event_id, changed)
    after = caldav.get_event(calendar_url, event_id)
    assert before is not None and after is not None and after[1] != before[1]
    (read,) = read_back(caldav, calendar_url, event_id)
    assert read.event_id == event_id and read.content == changed
    person.edit(event_id, all_day(20))
    (read,) = read_back(caldav, calendar_url, event_id)
    assert read.content == all_day(20)


def test_person_unmarks_and_removes(caldav: CalDAVServer, calendar_url: str) -> None:
    person = CalDAVPerson(caldav, calendar_url, TZ)
    event_id = person.add(timed(5))
    person.unmark_ooo(event_id)
    found = caldav.get_event(calendar_url, event_id)
    assert found is not None and "X-MICROSOFT-CDO-BUSYSTATUS" not in found[0]
    assert [e["SUMMARY"] for e in vevents(found[0])] == ["Out of office"]
    assert read_back(caldav, calendar_url, event_id) == []
    person.edit(event_id, timed(6))  # stays an ordinary event
    assert read_back(caldav, calendar_url, event_id) == []
    person.remove(event_id)
    assert caldav.get_event(calendar_url, event_id) is None
    assert caldav.list_hrefs(calendar_url) == {}


# -- whole-calendar uploads and time zones -------------------------------------------------------
def test_whole_vcalendar_upload_support(caldav: CalDAVServer, calendar_url: str) -> None:
    two = vcalendar([event("one@example.com"), event("two@example.com")])
    headers = {"Content-Type": "text/calendar; charset=utf-8"}
    collection = caldav.request("PUT", calendar_url, body=two, headers=headers, expect=range(200, 500))
    posted = caldav.request("POST", calendar_url, body=two, headers=headers, expect=range(200, 500))
    if caldav.kind == "radicale":
        assert collection.status_code == 201 and posted.status_code == 405
        assert len(caldav.list_hrefs(calendar_url)) == 2
        exported = caldav.request("GET", calendar_url)
        assert exported.headers["Content-Type"].startswith("text/calendar")
        assert sorted(str(e["UID"]) for e in vevents(exported.text)) == ["one@example.com", "two@example.com"]
    else:  # no collection PUT; add-member takes the whole VCALENDAR as one object
        assert collection.status_code == 405 and posted.status_code in (200, 201)
        (href,) = caldav.list_hrefs(calendar_url)
        assert posted.headers["Location"].endswith(urlsplit(href).path)
        assert caldav.request("GET", calendar_url).headers["Content-Type"].startswith("text/html")
    other_two = vcalendar([event("three@example.com"), event("four@example.com")])
    multi = caldav.request("PUT", caldav.event_url(calendar_url, "multi"), body=other_two, headers=headers,
                           expect=range(200, 500))
    if caldav.kind == "radicale":
        assert multi.status_code == 400, multi.text
    else:  # stored as one object
        assert multi.status_code == 201, multi.text
        assert len(caldav.list_hrefs(calendar_url)) == 2


def test_vtimezone_rdate_lists(caldav: CalDAVServer, calendar_url: str) -> None:
    zone = TIMEZONE.replace("RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "RDATE:20291028T030000,20311026T030000")
    caldav.put_event(calendar_url, "tz", vcalendar([zone, local_event("tz")]))
    found = caldav.get_event(calendar_url, "tz")
    assert found is not None
    rdates = [line for line in found[0].splitlines() if line.startswith("RDATE")]
    if caldav.kind == "radicale":  # only the first value of the list survives
        assert rdates == ["RDATE:20291028T030000"]
    else:
        assert rdates == ["RDATE:20291028T030000,20311026T030000"]


def test_a_uid_lives_at_one_href_only(caldav: CalDAVServer, calendar_url: str) -> None:
    caldav.put_event(calendar_url, "same@example.com", event("same@example.com"))
    response = caldav.request("PUT", f"{calendar_url}elsewhere.ics", body=event("same@example.com"),
                              headers={"Content-Type": "text/calendar; charset=utf-8"}, expect=(409, 412))
    assert response.status_code == {"radicale": 409, "xandikos": 412}[caldav.kind]
    assert error_element(response.text)[0] == "{urn:ietf:params:xml:ns:caldav}no-uid-conflict"
