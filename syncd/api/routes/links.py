"""Calendar links and their sync state, and releasing deletions held by the safety valve."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from syncd.api.context import ApiContext
from syncd.api.schemas import LinkOut

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["links"], dependencies=[ctx.admin])
    service = ctx.service

    def listed() -> list[dict[str, Any]]:
        rows = service.links()
        return ctx.onboarding.with_connect_urls(rows) if ctx.onboarding else rows

    @r.get("/v1/links", response_model=list[LinkOut])
    def links() -> list[dict[str, Any]]:
        return listed()

    @r.post("/v1/links/{link_id}/release-deletions", response_model=LinkOut)
    def release(link_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:  # the column's range
        service.release_deletions(link_id)
        return next(link for link in listed() if link["id"] == link_id)

    return r
