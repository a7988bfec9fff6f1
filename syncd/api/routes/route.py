"""A user's route: who takes their work now or at an instant (themselves, a replacement, or nobody)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter

from syncd.api.context import ApiContext
from syncd.api.schemas import RouteOut

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["status"])
    service = ctx.service

    @r.get("/v1/users/{user_id}/route", dependencies=[ctx.read], response_model=RouteOut)
    def get_route(user_id: str, at: datetime | None = None) -> dict[str, Any]:
        return service.route(user_id, at).as_json()

    return r
