"""Push notifications from calendar providers: one route, ``/v1/hooks/{provider}``; the
provider's folder says how its requests read, and each notice is checked against its channel."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from connectors.base import BadPush, PushNotice, PushRequest
from syncd.api.context import ApiContext
from syncd.api.errors import ApiError
from syncd.api.schemas import ErrorBody

__all__ = ["router"]

_TEXT = {"text/plain": {"schema": {"type": "string"}}}


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter(tags=["push"])
    push, metrics = ctx.push, ctx.metrics

    def notify(notices: tuple[PushNotice, ...]) -> int:
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

    @r.post("/v1/hooks/{provider}", status_code=200,
            responses={200: {"description": "accepted (or a validation handshake, echoed)", "content": _TEXT},
                       202: {"description": "accepted", "content": _TEXT},
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
        refused = await run_in_threadpool(notify, reply.notices)
        if refused and reply.refused_status is not None:
            raise ApiError(reply.refused_status, "forbidden", "unknown push channel or wrong channel token")
        return PlainTextResponse(reply.text, status_code=reply.status)

    return r
