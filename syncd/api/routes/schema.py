"""The JSON Schemas of the events every sink receives, for consumers to validate against."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from syncd.api.context import ApiContext
from syncd.core.events import COVERAGE_EVENT_SCHEMA, LINK_EVENT_SCHEMA, ROUTE_EVENT_SCHEMA, STATUS_EVENT_SCHEMA

__all__ = ["router"]


def router(_ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["events"])

    @r.get("/v1/schema/status-event.json", response_class=JSONResponse,
           responses={200: {"description": "JSON Schema (2020-12) of the status event",
                            "content": {"application/schema+json": {"schema": {"type": "object"}}}}})
    def status_event_schema() -> JSONResponse:
        return JSONResponse(STATUS_EVENT_SCHEMA, media_type="application/schema+json")

    @r.get("/v1/schema/route-event.json", response_class=JSONResponse,
           responses={200: {"description": "JSON Schema (2020-12) of the route event",
                            "content": {"application/schema+json": {"schema": {"type": "object"}}}}})
    def route_event_schema() -> JSONResponse:
        return JSONResponse(ROUTE_EVENT_SCHEMA, media_type="application/schema+json")

    @r.get("/v1/schema/link-event.json", response_class=JSONResponse,
           responses={200: {"description": "JSON Schema (2020-12) of the link events",
                            "content": {"application/schema+json": {"schema": {"type": "object"}}}}})
    def link_event_schema() -> JSONResponse:
        return JSONResponse(LINK_EVENT_SCHEMA, media_type="application/schema+json")

    @r.get("/v1/schema/coverage-event.json", response_class=JSONResponse,
           responses={200: {"description": "JSON Schema (2020-12) of the coverage events",
                            "content": {"application/schema+json": {"schema": {"type": "object"}}}}})
    def coverage_event_schema() -> JSONResponse:
        return JSONResponse(COVERAGE_EVENT_SCHEMA, media_type="application/schema+json")

    return r
