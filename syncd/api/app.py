"""The HTTP API application: its routers, wired to the service at construction.

FastAPI on uvicorn, served by `syncd run`. Everything is JSON; times are ISO 8601 with an
offset; every error is ``{"error": <code>, "message": <one line a person can act on>}``
(`syncd.api.errors`). Bearer tokens carry scopes, ``read`` ⊂ ``write`` ⊂ ``admin``
(`syncd.api.auth`). The OpenAPI document at ``/openapi.json`` is the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, FastAPI

from syncd import __version__
from syncd.api.auth import TokenBook, caller_of, scope_check
from syncd.api.context import ApiContext
from syncd.api.errors import install_error_handlers
from syncd.api.kept_status import KeptStatusMiddleware
from syncd.api.routes import (
    connect,
    documents,
    feeds,
    hooks,
    links,
    ooo,
    operations,
    rotations,
    route,
    schema,
    status,
    users,
)
from syncd.api.schemas import ERRORS
from syncd.service import Syncd
from syncd.service.coverage import CoverageWatch
from syncd.service.directory import Directory
from syncd.service.metrics import Metrics
from syncd.service.onboarding import Onboarding
from syncd.service.push import PushChannels
from syncd.service.rotations import RotationEngine

__all__ = ["create_app"]


def create_app(service: Syncd, *, metrics: Metrics | None = None,
               scheduler_alive: Callable[[], bool] = lambda: True, push: PushChannels | None = None,
               onboarding: Onboarding | None = None, coverage: CoverageWatch | None = None) -> FastAPI:
    config = service.config
    tokens = TokenBook(config.api)
    engine = RotationEngine(service, recent_window=config.daemon.rotation_recent_window)
    ctx = ApiContext(service=service, directory=Directory(service, engine), rotations=engine, metrics=metrics,
                     push=push, scheduler_alive=scheduler_alive, caller=Depends(caller_of(tokens)),
                     read=Depends(scope_check(tokens, "read")), write=Depends(scope_check(tokens, "write")),
                     admin=Depends(scope_check(tokens, "admin")), onboarding=onboarding,
                     coverage=coverage or CoverageWatch(service))
    public_docs = config.api.public_docs
    app = FastAPI(title="syncd", version=__version__, responses=ERRORS,
                  docs_url="/docs" if public_docs else None, openapi_url="/openapi.json" if public_docs else None,
                  redoc_url=None, description="Out-of-office calendar sync and Available/Away status for a helpdesk.")
    install_error_handlers(app)
    if not public_docs:
        app.include_router(documents.router(ctx, app))
    app.include_router(operations.router(ctx, public=config.api.public_health))
    for module in (users, status, route, ooo, rotations, links, hooks, schema, connect, feeds):
        app.include_router(module.router(ctx))
    app.add_middleware(KeptStatusMiddleware, service=service, tokens=tokens)
    return app
