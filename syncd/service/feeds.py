"""Teams' absence calendars that people subscribe to in their calendar app.

An administrator makes a **feed** for a team; its URL, ``<api.public_url>/feeds/<token>.ics``,
is the only credential: whoever has it reads the calendar, so it is shown once, kept only as
a SHA-256 digest, and revoked by deleting the feed. The calendar holds the team's members'
OOO blocks from `PAST` before now to `AHEAD` after it, at most `MAX_BLOCKS` of them (the
earliest first), one VEVENT per block: a stable UID, ``"<user> — away"`` as the summary (with
the block's title only when the feed was made with ``show_titles``), all-day blocks as DATE
values, and TRANSP:TRANSPARENT so subscribing does not make anyone look busy.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import icalendar

from store import blocks, feeds, users
from store.db import Transaction
from store.models import BlockRow, TeamFeedRow
from syncd.core.errors import ConfigError, NotFoundInStore
from syncd.core.time import format_utc
from syncd.service import Syncd

__all__ = ["AHEAD", "MAX_BLOCKS", "PAST", "FeedCalendar", "FeedEntry", "TeamFeeds", "render"]

PAST, AHEAD = timedelta(days=30), timedelta(days=365)
MAX_BLOCKS = 5000  # a team of 50 with 100 absences each in the window: ~1.4 MB; 4 MB with 500-character titles
PATH = "/feeds/"
FORMAT = "1"  # part of every ETag: change it when `render` writes the same blocks differently
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
# Refused without a lookup, in the same answer as a wrong token: the format is public anyway.
_NOBODY = NotFoundInStore("no such feed; it may have been revoked — ask an administrator for a new one")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class FeedEntry:
    """One block as the feed shows it."""

    block_id: str
    user_id: str
    title: str
    start: datetime
    end: datetime
    start_date: date | None  # all-day blocks: the first day and the day after the last
    end_date: date | None
    revision: int
    updated_at: datetime


@dataclass(frozen=True)
class FeedCalendar:
    team_id: str
    show_titles: bool
    entries: tuple[FeedEntry, ...]

    @property
    def etag(self) -> str:
        """Quoted and strong. Taken from what the calendar is made of (every block's id and
        revision), so a client that has it is answered 304 without rendering anything."""
        made_of = [FORMAT, self.team_id, str(self.show_titles)]
        made_of += [f"{e.block_id}:{e.revision}:{e.updated_at.isoformat()}" for e in self.entries]
        return f'"{hashlib.sha256("|".join(made_of).encode()).hexdigest()[:32]}"'

    def body(self) -> bytes:
        return render(self.team_id, self.entries, show_titles=self.show_titles)


class TeamFeeds:
    def __init__(self, service: Syncd) -> None:
        self.service = service
        self.db = service.db
        self.public_url = service.config.api.public_url

    def create(self, team_id: str, *, show_titles: bool = False) -> dict[str, Any]:
        """A new feed; the answer is the only time its URL is shown."""
        if self.public_url is None:
            raise ConfigError("set api.public_url (the address at which people's calendar apps reach syncd) "
                              "to make team feeds; their URLs are under it")
        token = secrets.token_urlsafe(32)

        def work(session: Transaction) -> TeamFeedRow:
            self._need_team(session, team_id)
            return feeds.add(session, team_id, _digest(token), show_titles, self.service.clock())
        row = self.db.run(work, what="making a team feed")
        return {**_feed_json(row), "url": f"{self.public_url}{PATH}{token}.ics"}

    def list(self, team_id: str) -> list[dict[str, Any]]:
        def work(session: Transaction) -> list[dict[str, Any]]:
            self._need_team(session, team_id)
            return [_feed_json(row) for row in feeds.of_team(session, team_id)]
        return self.db.read(work)

    def revoke(self, team_id: str, feed_id: str) -> None:
        def work(session: Transaction) -> None:
            self._need_team(session, team_id)
            if not feeds.drop(session, team_id, feed_id):
                raise NotFoundInStore(f"team {team_id!r} has no feed {feed_id!r}; GET /v1/teams/{team_id}/feeds "
                                      "lists them")
        self.db.run(work, what="revoking a team feed")

    def calendar(self, token: str) -> FeedCalendar:
        """The calendar a feed's token opens; `NotFoundInStore` for a wrong or revoked token."""
        if not _TOKEN.fullmatch(token):
            raise _NOBODY
        wanted = _digest(token)

        def work(session: Transaction) -> FeedCalendar:
            # Found by digest: how long the lookup takes says nothing about any real token.
            row = feeds.by_digest(session, wanted)
            if row is None or not hmac.compare_digest(row.token_digest, wanted):
                raise _NOBODY
            now = self.service.clock()
            members = users.team_members(session, row.team_id)
            found = blocks.live_between(session, members, now - PAST, now + AHEAD, MAX_BLOCKS) if members else []
            return FeedCalendar(row.team_id, row.show_titles, tuple(_entry(b) for b in found))
        return self.db.read(work)

    @staticmethod
    def _need_team(session: Transaction, team_id: str) -> None:
        if not users.team_exists(session, team_id):
            raise NotFoundInStore(f"no team {team_id!r}; create it with PUT /v1/teams/{team_id}")


def render(team_id: str, entries: Sequence[FeedEntry], *, show_titles: bool) -> bytes:
    """The team's absence calendar. It depends only on the blocks (no generation time): the
    same blocks make the same bytes, as the ETag promises."""
    cal = icalendar.Calendar()
    cal.add("prodid", "-//syncd//team absence feed//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"{team_id} — away")
    cal.add("x-published-ttl", icalendar.vDuration(timedelta(hours=1)))  # an X- property: typed by hand
    cal.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    for row in entries:
        event = icalendar.Event()
        event.add("uid", f"{row.block_id}@syncd")
        event.add("dtstamp", row.updated_at)
        event.add("last-modified", row.updated_at)
        event.add("sequence", max(row.revision - 1, 0))
        summary = f"{row.user_id} — away"
        if show_titles and row.title.strip():
            summary += f": {row.title.strip()}"
        event.add("summary", summary)
        if row.start_date is not None and row.end_date is not None:
            event.add("dtstart", row.start_date)
            event.add("dtend", row.end_date)  # exclusive, as iCalendar reads it
        else:
            event.add("dtstart", row.start)
            event.add("dtend", row.end)
        event.add("transp", "TRANSPARENT")
        event.add("categories", ["OOO"])
        cal.add_component(event)
    body: bytes = cal.to_ical()
    return body


def _entry(row: BlockRow) -> FeedEntry:
    all_day = row.all_day and row.start_date is not None and row.end_date is not None
    return FeedEntry(row.id, row.user_id, row.title, row.start, row.end, row.start_date if all_day else None,
                     row.end_date if all_day else None, row.revision, row.updated_at)


def _feed_json(row: TeamFeedRow) -> dict[str, Any]:
    return {"id": row.id, "team": row.team_id, "show_titles": row.show_titles,
            "created_at": format_utc(row.created_at)}
