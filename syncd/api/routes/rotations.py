"""The rotation engine: rotations and members, the next host, assignments, and who is eligible."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from syncd.api.assign_desk import AssignDesk
from syncd.api.context import ApiContext
from syncd.api.schemas import (
    AssignIn,
    AssignmentOut,
    EligibleIn,
    EligibleOut,
    MemberIn,
    MemberPatch,
    NextOut,
    RotationIn,
    RotationOut,
    RotationPatch,
)
from syncd.core.errors import ConfigError, UserInputError
from syncd.core.time import ensure_aware, format_utc, parse_duration
from syncd.service.rotations import assignment_request

__all__ = ["router"]


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["rotations"])
    rotations = ctx.rotations
    desk = AssignDesk(rotations.assign_many)

    @r.post("/v1/rotations", dependencies=[ctx.write], response_model=RotationOut, status_code=201)
    def create_rotation(data: RotationIn) -> dict[str, Any]:
        users = [m.user for m in data.members]
        terms = {m.user: m.model_dump(include=m.model_fields_set & {"weight", "cap"}) for m in data.members}
        return rotations.create(data.name, members=users, teams=data.teams, policy=data.policy,
                                cap_window=_window(data.cap_window), terms=terms)

    @r.patch("/v1/rotations/{rotation_id}", dependencies=[ctx.write], response_model=RotationOut)
    def patch_rotation(rotation_id: str, data: RotationPatch) -> dict[str, Any]:
        return rotations.set_cap_window(rotation_id, _window(data.cap_window))

    @r.get("/v1/rotations", dependencies=[ctx.read], response_model=list[RotationOut])
    def list_rotations() -> list[dict[str, Any]]:
        return [rotations.get(rotation) for rotation in rotations.ids()]

    @r.get("/v1/rotations/{rotation_id}", dependencies=[ctx.read], response_model=RotationOut)
    def get_rotation(rotation_id: str, at: datetime | None = None) -> dict[str, Any]:
        return rotations.get(rotation_id, ensure_aware(at, "at") if at else None)

    @r.post("/v1/rotations/{rotation_id}/members", dependencies=[ctx.write], response_model=RotationOut)
    def add_member(rotation_id: str, member: MemberIn) -> dict[str, Any]:
        return rotations.add_member(rotation_id, member.user)

    @r.delete("/v1/rotations/{rotation_id}/members/{user_id}", dependencies=[ctx.write], response_model=RotationOut)
    def remove_member(rotation_id: str, user_id: str) -> dict[str, Any]:
        return rotations.remove_member(rotation_id, user_id)

    @r.patch("/v1/rotations/{rotation_id}/members/{user_id}", dependencies=[ctx.write], response_model=RotationOut)
    def patch_member(rotation_id: str, user_id: str, patch: MemberPatch) -> dict[str, Any]:
        changes = patch.model_dump(include=patch.model_fields_set)
        for name in ("available", "weight"):
            if name in changes and changes[name] is None:
                raise UserInputError(f"{name} cannot be null; leave it out to keep it")
        if not changes:
            raise UserInputError("give at least one of available, weight, cap")
        return rotations.update_member(rotation_id, user_id, changes)

    @r.get("/v1/rotations/{rotation_id}/next", dependencies=[ctx.read], response_model=NextOut)
    def preview(rotation_id: str, start: datetime | None = None) -> dict[str, Any]:
        choice = rotations.preview(rotation_id, ensure_aware(start, "start") if start else None)
        return {"member": choice.member, "eligible": list(choice.eligible),
                "ineligible": [{"user": i.user_id, "reason": i.reason, "available_at": format_utc(i.available_at)}
                               for i in choice.ineligible],
                "next_available_at": format_utc(choice.next_available_at)}

    @r.post("/v1/rotations/{rotation_id}/assign", dependencies=[ctx.write], response_model=AssignmentOut)
    async def assign(rotation_id: str, data: AssignIn) -> JSONResponse:
        # Waits on the event loop; the desk's worker thread takes the rotation's lock.
        made = await desk.assign(rotation_id, assignment_request(data.idempotency_key, data.start, data.end))
        return JSONResponse(made.as_json())

    @r.post("/v1/eligible", dependencies=[ctx.read], response_model=EligibleOut)
    def eligible(data: EligibleIn) -> dict[str, Any]:
        return rotations.eligible(data.users, data.at)

    return r


def _window(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise UserInputError(f"cap_window: {exc}") from None
