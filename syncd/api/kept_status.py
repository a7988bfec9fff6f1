"""The status read answered before routing, when the answer is already known.

``GET /v1/users/{id}/status`` is what a helpdesk front end polls, and most answers are kept
(`syncd.service.status_cache`: no I/O). Profiled under load, FastAPI's routing and the solving
of the route's dependencies (the token header, the path and query parameters) took three
times as long as finding and rendering the kept answer. This middleware answers those
requests itself: a GET on exactly that path, no query, a token with the ``read`` scope, and
an answer kept. Everything else, refusals included, goes on to the route, which answers
the same for the same state (`tests/api/test_kept_status.py` compares the two).
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from syncd.api.auth import TokenBook
from syncd.service import Syncd

__all__ = ["KeptStatusMiddleware"]

PREFIX, SUFFIX = "/v1/users/", "/status"


class KeptStatusMiddleware:
    def __init__(self, app: ASGIApp, service: Syncd, tokens: TokenBook) -> None:
        self.app = app
        self.service = service
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope["query_string"]:
            user_id = _status_path_user(scope)
            if user_id is not None:
                caller = self.tokens.caller(_authorization(scope))
                kept = self.service.kept_status(user_id) if caller is not None and caller.may("read") else None
                if kept is not None:
                    await JSONResponse(kept.as_json())(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _status_path_user(scope: Scope) -> str | None:
    """The user id of a ``/v1/users/{id}/status`` path, as the router would match it (one
    non-empty segment, percent-decoded), or None."""
    path: str = scope["path"]
    if scope.get("root_path") or not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    user_id = path[len(PREFIX):-len(SUFFIX)]
    return user_id if user_id and "/" not in user_id else None


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":  # the first, as the route's header parameter takes
            return bytes(value).decode("latin-1")
    return None
