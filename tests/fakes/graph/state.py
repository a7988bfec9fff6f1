"""The per-mailbox store: calendars, stored events and their tombstones, transactionIds, mailbox settings, and the
delta rounds and tokens handed out for the mailbox."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.fakes.graph.common import GraphError


@dataclass
class _DeltaState:
    """What a client has seen at the end of a round (a deltaLink) or what a round will deliver."""

    calendar: str
    start: datetime
    end: datetime
    base: str  # request path without the query, as the client sent it
    query: str  # the initial query string (for the 410 Location header)
    snapshot: dict[str, int] = field(default_factory=dict)  # instance id -> version
    seq: int = 0  # the fake's change counter when the snapshot was taken


@dataclass
class _Round:
    state: _DeltaState  # the state a deltaLink at the end of this round will stand for
    items: list[dict[str, Any]]  # internal instances or @removed stubs


@dataclass
class _Mailbox:
    upn: str
    object_id: str
    display_name: str
    primary_calendar: str
    calendars: dict[str, str] = field(default_factory=dict)  # id -> name
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # singleInstance and seriesMaster items
    tombstones: dict[str, int] = field(default_factory=dict)  # deleted item id -> seq
    transactions: dict[str, str] = field(default_factory=dict)  # transactionId -> event id
    settings: dict[str, Any] = field(default_factory=dict)
    delta_tokens: OrderedDict[str, _DeltaState] = field(default_factory=OrderedDict)
    rounds: OrderedDict[str, _Round] = field(default_factory=OrderedDict)
    expired_tokens: dict[str, tuple[int, str, _DeltaState]] = field(default_factory=dict)
    blocked: GraphError | None = None
