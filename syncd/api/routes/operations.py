"""Health, readiness and metrics: what load balancers, probes and Prometheus ask."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from syncd import __version__
from syncd.api.auth import Caller
from syncd.api.context import ApiContext
from syncd.core.text import first_line

__all__ = ["router"]


def router(ctx: ApiContext, *, public: bool) -> APIRouter:
    r = APIRouter(tags=["operations"], dependencies=[] if public else [ctx.read])

    @r.get("/healthz")
    async def healthz() -> dict[str, Any]:
        # On the event loop, which never waits for the database: it answers while the workers are busy.
        return {"ok": True, "version": __version__}

    @r.get("/readyz", responses={503: {"description": "not ready", "model": dict[str, Any]}})
    def readyz(caller: Caller | None = ctx.caller) -> JSONResponse:
        """Whether this replica can serve. Without a token only the names of failing checks:
        user ids, calendar addresses and database errors are for a ``read`` token."""
        checks: dict[str, Any] = {}
        try:
            ctx.service.db.ping()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = first_line(exc)
        checks["scheduler"] = "ok" if ctx.scheduler_alive() else "not running"
        stuck = ctx.service.stuck_links()
        checks["links"] = "ok" if not stuck else f"{len(stuck)} link(s) overdue: {', '.join(stuck[:5])}"
        ready = all(v == "ok" for v in checks.values())
        if caller is not None and caller.may("read"):
            body: dict[str, Any] = {"ready": ready, "checks": checks}
        else:
            body = {"ready": ready, "failing": sorted(name for name, v in checks.items() if v != "ok")}
        return JSONResponse(body, status_code=200 if ready else 503)

    @r.get("/metrics", response_class=PlainTextResponse)
    def prometheus() -> Response:
        if ctx.metrics is None:
            return PlainTextResponse("", media_type="text/plain")
        payload, content_type = ctx.metrics.render()
        return Response(payload, media_type=content_type)

    return r
