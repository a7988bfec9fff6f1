"""Every error answer is ``{"error": <code>, "message": <one line a person can act on>}``,
plus fields that help (the covering blocks, the current revision ...), never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from syncd.core.errors import (
    AlreadyExists,
    ConfigError,
    ConfirmationRequired,
    NotAllowed,
    NotFoundInStore,
    RetryLater,
    StaleRevision,
    SyncdError,
    UserInputError,
)
from syncd.core.text import first_line
from syncd.core.time import format_utc
from syncd.service.directory import ConfigOwned
from syncd.service.rotations import NobodyEligible

__all__ = ["ApiError", "error_body", "install_error_handlers"]

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.extra = status, code, extra


def error_body(status: int, code: str, message: str, headers: dict[str, str] | None = None,
               **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status, headers=headers)


def _syncd_error(exc: SyncdError) -> JSONResponse:
    message = first_line(exc)
    if isinstance(exc, ConfirmationRequired):
        return error_body(409, "confirmation_required", message, blocks=exc.block_ids, until=format_utc(exc.until),
                          field="end_ooo_early")
    if isinstance(exc, NobodyEligible):
        return error_body(409, "nobody_eligible", message, eligible=[], ineligible=[
            {"user": i.user_id, "reason": i.reason, "available_at": format_utc(i.available_at)}
            for i in exc.choice.ineligible], next_available_at=format_utc(exc.choice.next_available_at))
    if isinstance(exc, StaleRevision):
        return error_body(412, "stale_revision", message, revision=exc.current_revision)
    if isinstance(exc, ConfigOwned):
        return error_body(409, "config_owned", message)
    if isinstance(exc, AlreadyExists):
        return error_body(409, "conflict", message)
    if isinstance(exc, NotAllowed):
        return error_body(403, "forbidden", message)
    if isinstance(exc, NotFoundInStore):
        return error_body(404, "not_found", message)
    if isinstance(exc, UserInputError):
        return error_body(422, "invalid", message)
    if isinstance(exc, RetryLater):
        return error_body(503, "unavailable", message, {"Retry-After": "5"})
    if isinstance(exc, ConfigError):
        return error_body(409, "config", message)
    log.error("unexpected error: %s", message, exc_info=exc)
    return error_body(500, "internal", "internal error; the syncd log has the details")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_r: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_body(exc.status, exc.code, str(exc), headers, **exc.extra)

    @app.exception_handler(SyncdError)
    async def _syncd(_r: Request, exc: SyncdError) -> JSONResponse:
        return _syncd_error(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_body(422, "invalid", f"{where}: {first.get('msg')}" if where else str(first.get("msg")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_body(exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))  # a 405 keeps Allow

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error in the API", exc_info=exc)
        return error_body(500, "internal", "internal error; the syncd log has the details")
