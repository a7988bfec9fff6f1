"""The OpenAPI document and its browsable page, for token holders (unless ``api.public_docs``):
they list every route and body, which a stranger has no need to see."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from syncd.api.context import ApiContext

__all__ = ["router"]


def router(ctx: ApiContext, app: FastAPI) -> APIRouter:
    r = APIRouter(dependencies=[ctx.read], include_in_schema=False)

    @r.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @r.get("/docs")
    def docs() -> HTMLResponse:
        # The page's own request for /openapi.json carries no token: with public_docs off, the
        # document is fetched separately (curl -H 'Authorization: Bearer …' …/openapi.json).
        return get_swagger_ui_html(openapi_url="/openapi.json", title="syncd API")

    return r
