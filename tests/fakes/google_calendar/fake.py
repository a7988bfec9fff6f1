"""``FakeGoogleCalendar``, composed from the per-concern mixins of this package."""

from __future__ import annotations

from tests.fakes.google_calendar.base import FakeGoogleBase
from tests.fakes.google_calendar.batch import BatchMixin
from tests.fakes.google_calendar.consent import ConsentMixin
from tests.fakes.google_calendar.control import ControlMixin
from tests.fakes.google_calendar.events import EventsMixin
from tests.fakes.google_calendar.faults import FaultsMixin
from tests.fakes.google_calendar.oauth import OAuthMixin
from tests.fakes.google_calendar.routing import RoutingMixin
from tests.fakes.google_calendar.server import ServerMixin
from tests.fakes.google_calendar.sync import SyncMixin
from tests.fakes.google_calendar.watch import WatchMixin


class FakeGoogleCalendar(
    ServerMixin,
    ControlMixin,
    BatchMixin,
    RoutingMixin,
    ConsentMixin,
    OAuthMixin,
    EventsMixin,
    WatchMixin,
    SyncMixin,
    FaultsMixin,
    FakeGoogleBase,
):
    """Google Calendar v3 over HTTP on 127.0.0.1, with hooks for tests.

    Keyword arguments: ``tls`` (serve HTTPS, see :class:`~tests.fakes.google_calendar.server.ServerMixin`) and
    those of :class:`~tests.fakes.google_calendar.base.FakeGoogleBase`.
    """
