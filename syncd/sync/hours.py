"""Reading the working hours that linked calendars keep, for users who take them from there.

Mailbox settings and ``calendar-availability`` have no change notifications: each link of
such a user is read again every ``working_hours_poll``, and soon after its calendar was
listed in full (`store.hours.read_again`). Each account reads its links together (Graph in
``$batch`` requests); a provider without working hours is recorded as such, once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from connectors.base import WorkingHoursSource
from connectors.registry import Connectors
from store import hours
from syncd.core.errors import SyncdError
from syncd.service import Syncd
from syncd.service.hours import UNSUPPORTED, Reading

__all__ = ["WorkingHoursReader"]

log = logging.getLogger(__name__)


class WorkingHoursReader:
    def __init__(self, service: Syncd, connectors: Connectors, *, chunk: int = 500) -> None:
        self.service = service
        self.connectors = connectors
        self.chunk = chunk

    def read_due(self) -> int:
        """Read every link whose hours are due; returns the status changes this published."""
        poll = self.service.config.daemon.working_hours_poll
        published = 0
        while True:
            now = self.service.clock()
            due = self.service.db.read(lambda s, now=now: hours.due(s, now - poll, self.chunk))  # type: ignore[misc]
            if not due:
                return published
            published += self.service.record_hours(self.read(due))
            if len(due) < self.chunk:
                return published

    def read(self, due: Sequence[hours.DueReading]) -> list[tuple[hours.DueReading, Reading]]:
        """What each link's calendar says of its owner's working hours."""
        by_account: dict[str, list[hours.DueReading]] = {}
        for item in due:
            by_account.setdefault(item.account, []).append(item)
        out: list[tuple[hours.DueReading, Reading]] = []
        now = self.service.clock()
        for account, group in by_account.items():
            answers: list[Reading]
            try:
                connector = self.connectors.for_account(account)
                if not isinstance(connector, WorkingHoursSource):
                    answers = [UNSUPPORTED] * len(group)
                else:
                    addresses = [connector.address(item.email.lower(), item.calendar) for item in group]
                    answers = list(connector.working_hours_many(addresses, now))
            except SyncdError as exc:
                answers = [exc] * len(group)
            except Exception as exc:  # a connector bug: every link of the account reports it
                log.error("account %s: reading working hours failed: %s", account, exc, exc_info=True,
                          extra={"account": account})
                answers = [exc] * len(group)
            out.extend(zip(group, answers, strict=True))
        return out
