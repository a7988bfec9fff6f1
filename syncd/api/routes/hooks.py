"""Push notifications from calendar providers: one route, ``/v1/hooks/{provider}``; the
provider's folder says how its requests read, and each notice is checked against its channel.

A hook is open to the internet, so what a stranger can make it do is bounded: it exists only
for providers some account has push configured for; a body over `MAX_BODY` or more than
`MAX_NOTICES` notifications is refused before anything is looked up; a malformed body is a
400; and a notice for an unknown channel or with a wrong token writes nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from connectors.base import BadPush, PushRequest
from syncd.api.context import ApiContext
from syncd.api.errors import ApiError
from syncd.api.schemas import ErrorBody

__all__ = ["MAX_BODY", "MAX_NOTICES", "router"]

MAX_BODY = 1 << 20  # bytes; a provider's notification batch is a few KB
MAX_NOTICES = 1000
_TEXT = {"text/plain": {"schema": {"type": "string"}}}


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, "too_large", f"a push notification body is at most {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", f"a push notification body is at most {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["push"])
    push = ctx.push

    @r.post("/v1/hooks/{provider}", status_code=200,
            responses={200: {"description": "accepted (or a validation handshake, echoed)", "content": _TEXT},
                       202: {"description": "accepted", "content": _TEXT},
                       400: {"model": ErrorBody, "description": "not a notification of this provider"},
                       403: {"model": ErrorBody, "description": "unknown channel or wrong channel token"},
                       404: {"model": ErrorBody, "description": "no push notifications configured for it"},
                       413: {"model": ErrorBody, "description": "body or batch too large"}})
    async def hook(provider: str, request: Request) -> Response:
        """A calendar provider's push notifications; each is authenticated by its channel's token."""
        receiver = push.receiver(provider) if push is not None and provider in push.providers() else None
        if push is None or receiver is None:
            raise ApiError(404, "not_found", f"no push notifications are configured for {provider!r}")
        try:
            reply = receiver.parse(PushRequest({k.lower(): v for k, v in request.headers.items()},
                                               dict(request.query_params), await _body(request)))
        except BadPush as exc:
            raise ApiError(400, "bad_request", str(exc)) from None
        if len(reply.notices) > MAX_NOTICES:
            raise ApiError(413, "too_large", f"at most {MAX_NOTICES} notifications in one request")
        refused = await run_in_threadpool(push.receive, reply.notices) if reply.notices else 0
        if refused and ctx.metrics is not None:
            ctx.metrics.push_refused.inc(refused)
        if refused and reply.refused_status is not None:
            raise ApiError(reply.refused_status, "forbidden", "unknown push channel or wrong channel token")
        # The body may echo what a caller sent (a validation token): never let a browser sniff it as HTML.
        return PlainTextResponse(reply.text, status_code=reply.status, headers={"X-Content-Type-Options": "nosniff"})

    return r
