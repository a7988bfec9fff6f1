"""Teams' absence calendar feeds: the admin calls that make, list and revoke them, and the
feed itself, which a calendar app fetches by its secret URL with no other credential."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Response

from syncd.api.context import ApiContext
from syncd.api.schemas import FeedIn, FeedOut, NewFeedOut
from syncd.core.errors import NotFoundInStore
from syncd.service.feeds import PATH, TeamFeeds

__all__ = ["router"]

MAX_NAME = 64  # "<43-character token>.ics"
_HEADERS = {
    "Cache-Control": "private, no-cache",  # calendar apps revalidate with the ETag
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["feeds"])
    team_feeds = TeamFeeds(ctx.service)

    @r.post("/v1/teams/{team_id}/feeds", dependencies=[ctx.admin], response_model=NewFeedOut, status_code=201)
    def create_feed(team_id: str, data: FeedIn) -> dict[str, Any]:
        return team_feeds.create(team_id, show_titles=data.show_titles)

    @r.get("/v1/teams/{team_id}/feeds", dependencies=[ctx.admin], response_model=list[FeedOut])
    def list_feeds(team_id: str) -> list[dict[str, Any]]:
        return team_feeds.list(team_id)

    @r.delete("/v1/teams/{team_id}/feeds/{feed_id}", dependencies=[ctx.admin], status_code=204)
    def revoke_feed(team_id: str, feed_id: str) -> Response:
        team_feeds.revoke(team_id, feed_id)
        return Response(status_code=204)

    @r.get(PATH + "{name}", responses={
        200: {"content": {"text/calendar": {"schema": {"type": "string"}}}, "description": "the team's absences"},
        304: {"description": "unchanged since the ETag given in If-None-Match"}})
    def feed(name: str, if_none_match: str | None = Header(default=None, max_length=1024)) -> Response:
        if len(name) > MAX_NAME or not name.endswith(".ics"):
            raise NotFoundInStore("no such feed; a feed's URL ends in .ics")
        calendar = team_feeds.calendar(name.removesuffix(".ics"))
        headers = {**_HEADERS, "ETag": calendar.etag}
        if if_none_match is not None and _matches(if_none_match, calendar.etag):
            return Response(status_code=304, headers=headers)  # the usual answer, and nothing rendered
        return Response(calendar.body(), media_type="text/calendar; charset=utf-8", headers=headers)

    return r


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110's weak comparison, as If-None-Match uses: any listed tag, or ``*``."""
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags
