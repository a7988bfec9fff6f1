"""The HTTP API: how the helpdesk and its assignment engine talk to syncd.

FastAPI on uvicorn, served by `syncd run`. Everything is JSON; times are ISO 8601 with an
offset; every error is ``{"error": <code>, "message": <one line a person can act on>}``
plus fields that help (the covering blocks, the current revision …), never a traceback.
Bearer tokens come from the config file, are kept only as hashes, and carry scopes:
``read`` ⊂ ``write`` ⊂ ``admin``. The OpenAPI document at ``/openapi.json`` is the reference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from connectors.base import BadPush, PushNotice, PushRequest
from syncd import __version__
from syncd.config import ApiConfig
from syncd.core.errors import (
    ConfigError,
    ConfirmationRequired,
    NotFoundInStore,
    RetryLater,
    StaleRevision,
    SyncdError,
    UserInputError,
)
from syncd.core.ooo import all_day_content, timed_content
from syncd.core.time import ensure_aware, format_utc
from syncd.directory import ConfigOwned, Directory
from syncd.metrics import Metrics
from syncd.push import PushChannels
from syncd.rotations import NobodyEligible, RotationEngine
from syncd.service import BlockInfo, Syncd

__all__ = ["TokenBook", "create_app"]

log = logging.getLogger("syncd.api")
SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}


# -- auth --------------------------------------------------------------------------------
class TokenBook:
    """The configured bearer tokens, kept as SHA-256 digests only."""

    def __init__(self, api: ApiConfig) -> None:
        self._tokens = [(hashlib.sha256(t.token.encode()).digest(), t.name, t.scopes) for t in api.tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def lookup(self, presented: str) -> tuple[str, tuple[str, ...]] | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, name, scopes in self._tokens:  # compare with every token: timing says nothing
            if hmac.compare_digest(known, digest):
                found = (name, scopes)
        return found


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


# -- bodies ------------------------------------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str
    message: str
    model_config = ConfigDict(extra="allow")


class CalendarIn(Strict):
    account: str
    calendar: str = "primary"
    sync_ooo: bool = True
    direction: Literal["two-way", "pull", "push"] = "two-way"


class UserIn(Strict):
    email: str
    timezone: str
    working_hours: dict[str, str | list[str]] | None = None
    calendars: list[CalendarIn] = Field(default_factory=list)


class CalendarOut(BaseModel):
    id: int
    account: str
    calendar: str
    sync_ooo: bool
    direction: str
    state: str
    last_success: str | None
    last_error: str | None


class UserOut(BaseModel):
    id: str
    email: str
    timezone: str
    origin: str
    working_hours: dict[str, list[str]]
    calendars: list[CalendarOut]


class UserSummary(BaseModel):
    id: str
    email: str
    timezone: str
    origin: str
    status: str | None
    reason: str | None
    since: str | None


class TeamIn(Strict):
    members: list[str]


class TeamOut(BaseModel):
    id: str
    members: list[str]


class StatusOut(BaseModel):
    user: str
    status: Literal["available", "away"]
    reason: str
    since: str | None
    until: str | None
    blocks: list[str]


class StatusIn(Strict):
    status: Literal["available", "away"]
    end_ooo_early: bool = False


class BlockIn(Strict):
    start: datetime | None = None
    end: datetime | None = None
    date: dt.date | None = None
    to_date: dt.date | None = None
    title: str | None = Field(default=None, max_length=500)


class BlockPatch(BlockIn):
    pass


class BlockOut(BaseModel):
    id: str
    start: str
    end: str
    all_day: bool
    title: str
    source: str
    revision: int


class RotationIn(Strict):
    name: str = Field(min_length=1, max_length=300)
    members: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    policy: Literal["reset", "calibrate"] = "reset"


class MemberOut(BaseModel):
    user: str
    available: bool
    status: str
    assignments: float
    recent: int
    last_assigned_at: str | None
    eligible: bool
    reason: str | None
    available_at: str | None


class RotationOut(BaseModel):
    id: str
    name: str
    policy: str
    counts_since: str | None
    users: list[str]
    teams: list[str]
    members: list[MemberOut]
    next: str | None


class MemberIn(Strict):
    user: str


class MemberToggle(Strict):
    available: bool


class IneligibleOut(BaseModel):
    user: str
    reason: str
    available_at: str | None


class NextOut(BaseModel):
    member: str | None
    eligible: list[str]
    ineligible: list[IneligibleOut]
    next_available_at: str | None


class AssignIn(Strict):
    idempotency_key: str = Field(min_length=1, max_length=300)
    start: datetime | None = None
    end: datetime | None = None


class AssignmentOut(BaseModel):
    assignment_id: str
    rotation: str
    member: str
    start: str | None
    end: str | None
    created_at: str | None
    replayed: bool


class EligibleIn(Strict):
    users: list[str]
    at: datetime | None = None


class EligibleOut(BaseModel):
    eligible: list[str]
    ineligible: list[IneligibleOut]


class LinkOut(BaseModel):
    id: int
    user: str
    account: str
    calendar: str
    direction: str
    enabled: bool
    sync_ooo: bool
    state: str
    last_sync: str | None
    last_success: str | None
    last_error: str | None
    failures: int
    held_deletions: int
    next_poll: str | None
    owner: str | None = Field(description="the replica syncing it now, or the one that synced it last")
    syncing: bool = Field(description="a replica holds its lease now")
    lag_s: float | None = Field(description="seconds since its last successful sync")


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text_}
    for code, text_ in ((400, "bad request"), (401, "missing or wrong token"), (403, "token lacks the scope"),
                        (404, "no such thing"), (409, "conflict: see message"), (412, "stale revision"),
                        (422, "invalid body or parameters"), (503, "temporarily unavailable"))
}


# -- the app -----------------------------------------------------------------------------
def create_app(service: Syncd, *, metrics: Metrics | None = None,
               scheduler_alive: Callable[[], bool] = lambda: True, push: PushChannels | None = None) -> FastAPI:
    config = service.config
    tokens = TokenBook(config.api)
    directory = Directory(service)
    rotations = RotationEngine(service, recent_window=config.daemon.rotation_recent_window)
    app = FastAPI(title="syncd", version=__version__, responses=ERRORS,
                  description="Out-of-office calendar sync and Available/Away status for a helpdesk.")

    def scope(needed: str) -> Callable[..., Awaitable[str]]:
        async def check(authorization: Annotated[str | None, Header()] = None) -> str:  # async: no thread hop
            if not tokens:
                raise ApiError(401, "unauthorized", "no API tokens are configured; add [api].tokens to the config")
            if not authorization or not authorization.lower().startswith("bearer "):
                raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
            found = tokens.lookup(authorization[7:].strip())
            if found is None:
                raise ApiError(401, "unauthorized", "unknown token")
            name, scopes = found
            if max((SCOPE_RANK.get(s, -1) for s in scopes), default=-1) < SCOPE_RANK[needed]:
                raise ApiError(403, "forbidden", f"token {name!r} lacks the {needed!r} scope")
            return name
        return check

    read, write, admin = Depends(scope("read")), Depends(scope("write")), Depends(scope("admin"))
    public = config.api.public_health

    # -- errors --------------------------------------------------------------------------
    def body(status: int, code: str, message: str, headers: dict[str, str] | None = None,
             **extra: Any) -> JSONResponse:
        return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return body(exc.status, exc.code, str(exc), headers, **exc.extra)

    @app.exception_handler(SyncdError)
    async def _syncd_error(_r: Request, exc: SyncdError) -> JSONResponse:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ConfirmationRequired):
            return body(409, "confirmation_required", message, blocks=exc.block_ids, until=format_utc(exc.until),
                        field="end_ooo_early")
        if isinstance(exc, NobodyEligible):
            return body(409, "nobody_eligible", message, eligible=[], ineligible=[
                {"user": i.user_id, "reason": i.reason, "available_at": format_utc(i.available_at)}
                for i in exc.choice.ineligible], next_available_at=format_utc(exc.choice.next_available_at))
        if isinstance(exc, StaleRevision):
            return body(412, "stale_revision", message, revision=exc.current_revision)
        if isinstance(exc, ConfigOwned):
            return body(409, "config_owned", message)
        if isinstance(exc, NotFoundInStore):
            return body(404, "not_found", message)
        if isinstance(exc, UserInputError):
            return body(422, "invalid", message)
        if isinstance(exc, RetryLater):
            return body(503, "unavailable", message, {"Retry-After": "5"})
        if isinstance(exc, ConfigError):
            return body(409, "config", message)
        log.error("unexpected error: %s", message, exc_info=exc)
        return body(500, "internal", "internal error; the syncd log has the details")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return body(422, "invalid", f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return body(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))  # a 405 keeps Allow

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in the API", exc_info=exc)
        return body(500, "internal", "internal error; the syncd log has the details")

    # -- operations ----------------------------------------------------------------------
    health_deps = [] if public else [read]

    @app.get("/healthz", tags=["operations"], dependencies=health_deps)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/readyz", tags=["operations"], dependencies=health_deps,
             responses={503: {"description": "not ready", "model": dict[str, Any]}})
    def readyz() -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            service.db.read(lambda s: s.execute(text("SELECT 1")))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = str(exc).splitlines()[0]
        checks["scheduler"] = "ok" if scheduler_alive() else "not running"
        stuck = service.stuck_links()
        checks["links"] = "ok" if not stuck else f"{len(stuck)} link(s) overdue: {', '.join(stuck[:5])}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], dependencies=health_deps, response_class=PlainTextResponse)
    def prometheus() -> Response:
        if metrics is None:
            return PlainTextResponse("", media_type="text/plain")
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    # -- users and teams -----------------------------------------------------------------
    @app.put("/v1/users/{user_id}", tags=["users"], dependencies=[write], response_model=UserOut,
             responses={201: {"model": UserOut, "description": "created"}})
    def put_user(user_id: str, user: UserIn, response: Response) -> dict[str, Any]:
        out, created = directory.put_user(user_id, user.model_dump())
        response.status_code = 201 if created else 200
        return out

    @app.get("/v1/users/{user_id}", tags=["users"], dependencies=[read], response_model=UserOut)
    def get_user(user_id: str) -> dict[str, Any]:
        return directory.get_user(user_id)

    @app.delete("/v1/users/{user_id}", tags=["users"], dependencies=[write], status_code=204)
    def delete_user(user_id: str) -> Response:
        directory.delete_user(user_id)
        return Response(status_code=204)

    @app.get("/v1/users", tags=["users"], dependencies=[read], response_model=list[UserSummary])
    def list_users(status: Literal["available", "away"] | None = None) -> list[dict[str, Any]]:
        return directory.list_users(status)

    @app.put("/v1/teams/{team_id}", tags=["users"], dependencies=[write], response_model=TeamOut,
             responses={201: {"model": TeamOut, "description": "created"}})
    def put_team(team_id: str, team: TeamIn, response: Response) -> dict[str, Any]:
        out, created = directory.put_team(team_id, team.members)
        response.status_code = 201 if created else 200
        return out

    @app.get("/v1/teams/{team_id}", tags=["users"], dependencies=[read], response_model=TeamOut)
    def get_team(team_id: str) -> dict[str, Any]:
        return directory.get_team(team_id)

    # -- status --------------------------------------------------------------------------
    @app.get("/v1/users/{user_id}/status", tags=["status"], dependencies=[read], response_model=StatusOut)
    async def get_status(user_id: str, at: datetime | None = None) -> JSONResponse:
        # The hottest endpoint: a short SQLite/PostgreSQL read run inline (no thread hop), and
        # a ready response (no second validation of what StatusInfo already guarantees).
        return JSONResponse(service.status(user_id, ensure_aware(at, "at") if at else None).as_json())

    @app.put("/v1/users/{user_id}/status", tags=["status"], dependencies=[write], response_model=StatusOut)
    def put_status(user_id: str, change: StatusIn, who: str = write) -> dict[str, Any]:
        return service.set_status(user_id, change.status, end_ooo_early=change.end_ooo_early,
                                  by=f"api:{who}").as_json()

    # -- OOO blocks ----------------------------------------------------------------------
    def content_of(data: BlockIn, user_id: str, current: BlockInfo | None = None) -> Any:
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

    @app.get("/v1/users/{user_id}/ooo", tags=["ooo"], dependencies=[read], response_model=list[BlockOut])
    def list_blocks(user_id: str) -> list[dict[str, Any]]:
        return [b.as_json() for b in service.list_blocks(user_id)]

    @app.post("/v1/users/{user_id}/ooo", tags=["ooo"], dependencies=[write], response_model=BlockOut,
              status_code=201)
    def add_block(user_id: str, data: BlockIn, response: Response) -> dict[str, Any]:
        return with_etag(service.add_block(user_id, content_of(data, user_id)), response)

    @app.get("/v1/ooo/{block_id}", tags=["ooo"], dependencies=[read], response_model=BlockOut)
    def get_block(block_id: str, response: Response) -> dict[str, Any]:
        return with_etag(service.get_block(block_id), response)

    @app.patch("/v1/ooo/{block_id}", tags=["ooo"], dependencies=[write], response_model=BlockOut)
    def patch_block(block_id: str, data: BlockPatch, response: Response,
                    if_match: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        current = service.get_block(block_id)
        content = content_of(data, current.user, current)
        return with_etag(service.edit_block(block_id, content, expected_revision=revision(if_match)), response)

    @app.delete("/v1/ooo/{block_id}", tags=["ooo"], dependencies=[write], status_code=204)
    def delete_block(block_id: str, if_match: Annotated[str | None, Header()] = None) -> Response:
        service.delete_block(block_id, expected_revision=revision(if_match))
        return Response(status_code=204)

    @app.post("/v1/ooo/{block_id}/end", tags=["ooo"], dependencies=[write], response_model=BlockOut)
    def end_block(block_id: str, response: Response) -> dict[str, Any]:
        return with_etag(service.end_block_early(block_id), response)

    # -- rotations -----------------------------------------------------------------------
    @app.post("/v1/rotations", tags=["rotations"], dependencies=[write], response_model=RotationOut,
              status_code=201)
    def create_rotation(data: RotationIn) -> dict[str, Any]:
        return rotations.create(data.name, members=data.members, teams=data.teams, policy=data.policy)

    @app.get("/v1/rotations", tags=["rotations"], dependencies=[read], response_model=list[RotationOut])
    def list_rotations() -> list[dict[str, Any]]:
        return [rotations.get(r) for r in rotations.ids()]

    @app.get("/v1/rotations/{rotation_id}", tags=["rotations"], dependencies=[read], response_model=RotationOut)
    def get_rotation(rotation_id: str, at: datetime | None = None) -> dict[str, Any]:
        return rotations.get(rotation_id, ensure_aware(at, "at") if at else None)

    @app.post("/v1/rotations/{rotation_id}/members", tags=["rotations"], dependencies=[write],
              response_model=RotationOut)
    def add_member(rotation_id: str, member: MemberIn) -> dict[str, Any]:
        return rotations.add_member(rotation_id, member.user)

    @app.delete("/v1/rotations/{rotation_id}/members/{user_id}", tags=["rotations"], dependencies=[write],
                response_model=RotationOut)
    def remove_member(rotation_id: str, user_id: str) -> dict[str, Any]:
        return rotations.remove_member(rotation_id, user_id)

    @app.patch("/v1/rotations/{rotation_id}/members/{user_id}", tags=["rotations"], dependencies=[write],
               response_model=RotationOut)
    def toggle_member(rotation_id: str, user_id: str, toggle: MemberToggle) -> dict[str, Any]:
        return rotations.set_available(rotation_id, user_id, toggle.available)

    @app.get("/v1/rotations/{rotation_id}/next", tags=["rotations"], dependencies=[read], response_model=NextOut)
    def preview(rotation_id: str, start: datetime | None = None) -> dict[str, Any]:
        choice = rotations.preview(rotation_id, ensure_aware(start, "start") if start else None)
        return {"member": choice.member, "eligible": list(choice.eligible),
                "ineligible": [{"user": i.user_id, "reason": i.reason, "available_at": format_utc(i.available_at)}
                               for i in choice.ineligible],
                "next_available_at": format_utc(choice.next_available_at)}

    @app.post("/v1/rotations/{rotation_id}/assign", tags=["rotations"], dependencies=[write],
              response_model=AssignmentOut)
    async def assign(rotation_id: str, data: AssignIn) -> JSONResponse:
        # Inline, not in a worker thread: assignments are serialised on the rotation's lock
        # anyway, and sixteen threads queueing for it only add hand-offs.
        made = rotations.assign(rotation_id, data.idempotency_key, start=data.start, end=data.end)
        return JSONResponse(made.as_json())

    @app.post("/v1/eligible", tags=["rotations"], dependencies=[read], response_model=EligibleOut)
    def eligible(data: EligibleIn) -> dict[str, Any]:
        return rotations.eligible(data.users, data.at)

    # -- calendar links ------------------------------------------------------------------
    @app.get("/v1/links", tags=["links"], dependencies=[admin], response_model=list[LinkOut])
    def links() -> list[dict[str, Any]]:
        return service.links()

    @app.post("/v1/links/{link_id}/release-deletions", tags=["links"], dependencies=[admin],
              response_model=LinkOut)
    def release(link_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> dict[str, Any]:  # the column's range
        service.release_deletions(link_id)
        return next(link for link in service.links() if link["id"] == link_id)

    # -- push notifications from calendar providers ---------------------------------------
    text_body = {"text/plain": {"schema": {"type": "string"}}}

    @app.post("/v1/hooks/{provider}", tags=["push"], status_code=200,
              responses={200: {"description": "accepted (or a validation handshake, echoed)", "content": text_body},
                         202: {"description": "accepted", "content": text_body},
                         403: {"model": ErrorBody, "description": "unknown channel or wrong channel token"},
                         404: {"model": ErrorBody, "description": "no such provider, or it has no push"}})
    async def hook(provider: str, request: Request) -> Response:
        """A calendar provider's push notifications; each is authenticated by its channel's token."""
        receiver = push.receiver(provider) if push is not None else None
        if receiver is None:
            raise ApiError(404, "not_found", f"no push notifications for {provider!r}")
        try:
            reply = receiver.parse(PushRequest({k.lower(): v for k, v in request.headers.items()},
                                               dict(request.query_params), await request.body()))
        except BadPush as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        refused = await run_in_threadpool(_notify, reply.notices)
        if refused and reply.refused_status is not None:
            raise ApiError(reply.refused_status, "forbidden", "unknown push channel or wrong channel token")
        return PlainTextResponse(reply.text, status_code=reply.status)

    def _notify(notices: tuple[PushNotice, ...]) -> int:
        """Hand each notice to the push channels; how many were not ours (counted, nothing synced)."""
        refused = 0
        for notice in notices:
            accepted = push is not None and (
                push.lifecycle(notice.channel_id, notice.token, notice.lifecycle) if notice.lifecycle
                else push.notify(notice.channel_id, notice.token, notice.state, notice.resource_id))
            if not accepted:
                refused += 1
                if metrics is not None:
                    metrics.push_refused.inc()
        return refused

    return app
