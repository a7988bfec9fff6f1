"""Link events: the helpdesk hears when a calendar link needs its owner to grant access again
(``link.reauth_required``, with a fresh connect link when syncd can make one) and when it
syncs again (``link.restored``). They go through the outbox like status events (queued in the
transaction that records the link's new state), so every sink gets them once, signed alike."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from store import outbox, users
from store.db import Transaction
from syncd.config import Config
from syncd.core.events import LINK_REAUTH_REQUIRED, LINK_RESTORED, LinkRef, link_event
from syncd.service.onboarding import Onboarding

__all__ = ["LinkNotices"]


class LinkNotices:
    def __init__(self, config: Config, sinks: Sequence[str], clock: Callable[[], datetime],
                 onboarding: Onboarding | None = None) -> None:
        self.config = config
        self.sinks = sinks
        self.clock = clock
        self.onboarding = onboarding  # makes the connect links; None: events without one

    def reauth_required(self, session: Transaction, link: LinkRef, user_id: str, error: str, *,
                        before: str | None) -> None:
        """The link failed for want of a grant. An event when it has just come to this; while
        it stays so, its connect link is kept valid (renewed a day before it would expire)."""
        user = users.by_id(session, user_id)
        if user is None:
            return
        connect = self.onboarding.renewal(session, user, link.account) if self.onboarding else None
        if before == "reauth_required":
            return
        self._queue(session, user_id, link_event(
            uuid.uuid4().hex, LINK_REAUTH_REQUIRED, user_id, user.email, link, self.clock(), error=error,
            connect_url=connect.url if connect else None, connect_expires_at=connect.expires_at if connect else None))

    def restored(self, session: Transaction, link: LinkRef, user_id: str) -> None:
        """The link synced again after it needed a grant."""
        user = users.by_id(session, user_id)
        if user is not None:
            self._queue(session, user_id, link_event(uuid.uuid4().hex, LINK_RESTORED, user_id, user.email, link,
                                                     self.clock()))

    def ref(self, link_id: int, account: str, calendar: str) -> LinkRef:
        configured = self.config.accounts.get(account)
        return LinkRef(link_id, account, configured.provider if configured else "", calendar)

    def _queue(self, session: Transaction, user_id: str, event: dict[str, Any]) -> None:
        now = self.clock()
        outbox.queue(session, [(str(event["id"]), user_id, event, now)], self.sinks, now)
