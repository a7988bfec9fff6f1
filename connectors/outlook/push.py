"""Microsoft Graph change notifications: subscriptions POST to ``/v1/hooks/outlook``.

Creating a subscription starts with a validation request carrying ``validationToken`` in the
query, which is echoed as plain text. Notifications come as JSON ``{"value": [...]}``, each
with its ``subscriptionId`` and the ``clientState`` we gave it; lifecycle notifications carry
a ``lifecycleEvent`` instead of a change. Graph retries whatever is not answered 2xx, so the
answer is 202 even when some items are not ours (those are counted and ignored).
"""

from __future__ import annotations

import json

from connectors.base import BadPush, PushNotice, PushReply, PushRequest

__all__ = ["GraphPush"]

MAX_VALIDATION_TOKEN = 1024


class GraphPush:
    def parse(self, request: PushRequest) -> PushReply:
        token = request.query.get("validationToken")
        if token is not None:
            if len(token) > MAX_VALIDATION_TOKEN:  # Graph's are short; a long one is somebody else's text
                raise BadPush(f"a validation token is at most {MAX_VALIDATION_TOKEN} characters")
            return PushReply(status=200, text=token)
        try:
            data = json.loads(request.body)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
            data = None
        items = data.get("value") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise BadPush("expected a JSON object with a 'value' list of notifications")
        notices = []
        for item in items:
            if not isinstance(item, dict):
                continue
            client_state = item.get("clientState")
            lifecycle = item.get("lifecycleEvent")
            notices.append(PushNotice(channel_id=str(item.get("subscriptionId") or ""),
                                      token=client_state if isinstance(client_state, str) else None,
                                      state="exists", lifecycle=str(lifecycle) if lifecycle else None))
        return PushReply(status=202, notices=tuple(notices))
