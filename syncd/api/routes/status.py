"""A user's Available / Away status: asked for (now or at an instant) and set by hand."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from syncd.api.auth import Caller
from syncd.api.context import ApiContext
from syncd.api.schemas import StatusIn, StatusOut, TimelineOut
from syncd.core.time import ensure_aware, format_utc

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["status"])
    service = ctx.service

    @r.get("/v1/users/{user_id}/status", dependencies=[ctx.read], response_model=StatusOut)
    async def get_status(user_id: str, at: datetime | None = None) -> JSONResponse:
        # The hottest endpoint: a ready response (no second validation of what StatusInfo
        # already guarantees). An answer still known to be right never gets here: it is sent
        # before routing (`syncd.api.kept_status`). This reads, from a worker thread, never
        # the event loop: the database may be slow.
        return await run_in_threadpool(
            lambda: JSONResponse(service.status(user_id, ensure_aware(at, "at") if at else None).as_json()))

    @r.get("/v1/users/{user_id}/availability", dependencies=[ctx.read], response_model=TimelineOut)
    def get_availability(user_id: str, start: Annotated[datetime, Query(alias="from")],
                         end: Annotated[datetime, Query(alias="to")]) -> JSONResponse:
        """The user's timeline from..to (at most 90 days), by the same rules as the status."""
        intervals = service.availability(user_id, start, end)
        # As built: "block" and "holiday" only where they apply, "reason" always (maybe null).
        return JSONResponse({"user": user_id, "from": format_utc(ensure_aware(start, "from")),
                             "to": format_utc(ensure_aware(end, "to")),
                             "intervals": [i.as_json() for i in intervals]})

    @r.put("/v1/users/{user_id}/status", response_model=StatusOut)
    def put_status(user_id: str, change: StatusIn, who: Caller = ctx.write) -> dict[str, Any]:
        return service.set_status(user_id, change.status, end_ooo_early=change.end_ooo_early,
                                  by=f"api:{who.name}").as_json()

    return r
