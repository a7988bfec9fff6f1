"""OOO blocks: listed, added (timed or all-day), edited with If-Match, deleted, ended early."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from syncd.api.context import ApiContext
from syncd.api.schemas import BlockIn, BlockOut, BlockPatch, BlockWritten
from syncd.core.errors import UserInputError
from syncd.core.ooo import OooContent, all_day_content, timed_content
from syncd.core.time import ensure_aware
from syncd.service import BlockInfo, Syncd
from syncd.service.blocks import KEEP
from syncd.service.coverage import CoverageWatch

__all__ = ["router"]


def content_of(service: Syncd, data: BlockIn, user_id: str, current: BlockInfo | None = None) -> OooContent:
    """What a body asks the block to say; for a PATCH, what it leaves out stays as it is."""
    if data.date is not None or data.to_date is not None:
        if data.start is not None or data.end is not None:
            raise UserInputError("give start and end (timed) or date and to_date (all-day), not both")
        first = data.date or (current.content.start_date if current and current.all_day else None)
        if first is None:
            raise UserInputError("an all-day block needs date (and optionally to_date, inclusive)")
        last = data.to_date or first
        title = data.title or (current.title if current else None)
        return all_day_content(first, last + timedelta(days=1), service.user_timezone(user_id), title)
    if current is None and (data.start is None or data.end is None):
        raise UserInputError("give start and end (ISO 8601 with an offset), or date for an all-day block")
    if current is not None and data.start is None and data.end is None:
        return replace(current.content, title=data.title or current.title)  # title only: times stay
    start = ensure_aware(data.start, "start") if data.start else (current.start if current else None)
    end = ensure_aware(data.end, "end") if data.end else (current.end if current else None)
    assert start is not None and end is not None
    return timed_content(start, end, data.title or (current.title if current else None))


def revision(if_match: str | None) -> int | None:
    if if_match is None or if_match.strip() == "*":
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    if not raw.isdigit():
        raise UserInputError('If-Match must be the block\'s revision, e.g. If-Match: "3"')
    return int(raw)


def with_etag(block: BlockInfo, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{block.revision}"'
    return block.as_json()


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["ooo"])
    service = ctx.service
    coverage = ctx.coverage or CoverageWatch(service)

    @r.get("/v1/users/{user_id}/ooo", dependencies=[ctx.read], response_model=list[BlockOut])
    def list_blocks(user_id: str) -> list[dict[str, Any]]:
        return [b.as_json() for b in service.list_blocks(user_id)]

    @r.post("/v1/users/{user_id}/ooo", dependencies=[ctx.write], response_model=BlockWritten, status_code=201)
    def add_block(user_id: str, data: BlockIn, response: Response) -> dict[str, Any]:
        block = service.add_block(user_id, content_of(service, data, user_id), replacement=data.replacement)
        return {**with_etag(block, response), "warnings": coverage.warnings(block.id)}

    @r.get("/v1/ooo/{block_id}", dependencies=[ctx.read], response_model=BlockOut)
    def get_block(block_id: str, response: Response) -> dict[str, Any]:
        return with_etag(service.get_block(block_id), response)

    @r.patch("/v1/ooo/{block_id}", dependencies=[ctx.write], response_model=BlockWritten)
    def patch_block(block_id: str, data: BlockPatch, response: Response,
                    if_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        current = service.get_block(block_id)
        content = content_of(service, data, current.user, current)
        replacement = data.replacement if "replacement" in data.model_fields_set else KEEP
        block = service.edit_block(block_id, content, expected_revision=revision(if_match), replacement=replacement)
        return {**with_etag(block, response), "warnings": coverage.warnings(block.id)}

    @r.delete("/v1/ooo/{block_id}", dependencies=[ctx.write], status_code=204)
    def delete_block(block_id: str, if_match: Annotated[str | None, Header()] = None) -> Response:
        service.delete_block(block_id, expected_revision=revision(if_match))
        return Response(status_code=204)

    @r.post("/v1/ooo/{block_id}/end", dependencies=[ctx.write], response_model=BlockOut)
    def end_block(block_id: str, response: Response) -> dict[str, Any]:
        return with_etag(service.end_block_early(block_id), response)

    return r
