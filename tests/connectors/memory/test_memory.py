"""The connector contract run against the in-memory connector."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from connectors.memory.connector import MemoryConnector
from syncd.core.calendars import RemoteEvent
from syncd.core.ooo import OooContent
from tests.connectors.contract import ConnectorContract


@dataclass
class MemoryPerson:
    """Edits a memory calendar the way `MemoryConnector` lets a test play the person."""

    connector: MemoryConnector
    calendar: str

    def add(self, content: OooContent, ooo: bool = True) -> str:
        if ooo:
            return self.connector.add(self.calendar, content).event_id
        # an ordinary meeting: in the calendar, never listed
        event = RemoteEvent(event_id=uuid.uuid4().hex, etag="e", content=content, updated=datetime.now(UTC))
        self.connector.calendar(self.calendar).not_ooo[event.event_id] = event
        return event.event_id

    def edit(self, event_id: str, content: OooContent) -> None:
        self.connector.edit(self.calendar, event_id, content)

    def remove(self, event_id: str) -> None:
        self.connector.remove(self.calendar, event_id)

    def unmark_ooo(self, event_id: str) -> None:
        self.connector.unmark_ooo(self.calendar, event_id)


class TestMemoryConnector(ConnectorContract):
    @pytest.fixture
    def connector(self) -> MemoryConnector:
        return MemoryConnector()

    @pytest.fixture
    def calendar(self) -> str:
        return "work"

    @pytest.fixture
    def person(self, connector: MemoryConnector, calendar: str) -> MemoryPerson:
        return MemoryPerson(connector, calendar)
