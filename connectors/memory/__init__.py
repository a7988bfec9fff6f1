"""An in-memory calendar: first-class for tests and embedders, and the model the others follow."""

from __future__ import annotations

from connectors.base import AccountSettings, CalendarConnector, Provider

__all__ = ["PROVIDER"]


def _build(_account: AccountSettings) -> CalendarConnector:
    from connectors.memory.connector import MemoryConnector

    return MemoryConnector()


PROVIDER = Provider("memory", _build, ooo_rules=True)
