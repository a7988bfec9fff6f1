"""Users and teams registered through the API (config-file users are read-only here)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from syncd.api.auth import Caller
from syncd.api.context import ApiContext
from syncd.api.schemas import BusinessTimeOut, CoverageOut, TeamIn, TeamOut, UserIn, UserOut, UserSummary
from syncd.service.coverage import CoverageWatch

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["users"])
    directory = ctx.directory
    coverage = ctx.coverage or CoverageWatch(ctx.service)

    @r.put("/v1/users/{user_id}", response_model=UserOut,
           responses={201: {"model": UserOut, "description": "created"}})
    def put_user(user_id: str, user: UserIn, response: Response, who: Caller = ctx.write) -> dict[str, Any]:
        out, created = directory.put_user(user_id, user.model_dump(exclude_unset=True),
                                           may_change_links=who.may("admin"))
        response.status_code = 201 if created else 200
        return out

    @r.get("/v1/users/{user_id}", dependencies=[ctx.read], response_model=UserOut)
    def get_user(user_id: str) -> dict[str, Any]:
        return directory.get_user(user_id)

    @r.delete("/v1/users/{user_id}", dependencies=[ctx.write], status_code=204)
    def delete_user(user_id: str) -> Response:
        directory.delete_user(user_id)
        return Response(status_code=204)

    @r.get("/v1/users", dependencies=[ctx.read], response_model=list[UserSummary])
    def list_users(status: Literal["available", "away"] | None = None) -> list[dict[str, Any]]:
        return directory.list_users(status)

    @r.put("/v1/teams/{team_id}", dependencies=[ctx.write], response_model=TeamOut,
           responses={201: {"model": TeamOut, "description": "created"}})
    def put_team(team_id: str, team: TeamIn, response: Response) -> dict[str, Any]:
        out, created = directory.put_team(team_id, team.members, team.model_dump(), min_available=team.min_available)
        response.status_code = 201 if created else 200
        return out

    @r.get("/v1/teams/{team_id}", dependencies=[ctx.read], response_model=TeamOut)
    def get_team(team_id: str) -> dict[str, Any]:
        return directory.get_team(team_id)

    @r.get("/v1/teams/{team_id}/business-time", dependencies=[ctx.read], response_model=BusinessTimeOut,
           response_model_exclude_none=True)
    def business_time(team_id: str, start: datetime,
                      add: Annotated[str | None, Query(max_length=32, description="e.g. 8h, 2d, 1h30m")] = None,
                      end: datetime | None = None) -> dict[str, Any]:
        """On the team's schedule: the instant at which ``add`` of working time after
        ``start`` is used up (an SLA's due time), or the working time from ``start`` to ``end``."""
        return directory.business_time(team_id, start, add=add, end=end)

    @r.get("/v1/teams/{team_id}/coverage", dependencies=[ctx.read], response_model=CoverageOut)
    def get_coverage(team_id: str, start: Annotated[datetime, Query(alias="from")],
                     end: Annotated[datetime, Query(alias="to")]) -> dict[str, Any]:
        """How many members are available, interval by interval, over at most 90 days."""
        return coverage.coverage(team_id, start, end).as_json()

    return r
