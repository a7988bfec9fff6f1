"""Google Calendar push notifications: a watch channel POSTs to ``/v1/hooks/google``.

Everything is in the headers (the body is empty): the channel id we chose, the token we gave
it, the resource state (``sync`` right after opening, then ``exists``) and Google's resource
id. A notification that is not ours is answered 403, so Google stops the channel.
"""

from __future__ import annotations

from connectors.base import PushNotice, PushReply, PushRequest

__all__ = ["GooglePush"]


class GooglePush:
    def parse(self, request: PushRequest) -> PushReply:
        headers = request.headers
        notice = PushNotice(channel_id=headers.get("x-goog-channel-id", ""), token=headers.get("x-goog-channel-token"),
                            state=headers.get("x-goog-resource-state"), resource_id=headers.get("x-goog-resource-id"))
        return PushReply(status=200, notices=(notice,), refused_status=403)
