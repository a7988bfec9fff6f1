"""``FakeGraph``, composed from the per-concern mixins of this package, and its ``python -m`` entry point."""

from __future__ import annotations

import argparse

from tests.fakes.graph.base import FakeGraphBase
from tests.fakes.graph.batch import BatchMixin
from tests.fakes.graph.common import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID
from tests.fakes.graph.consent import ConsentMixin
from tests.fakes.graph.control import ControlMixin
from tests.fakes.graph.delta import DeltaMixin
from tests.fakes.graph.events import EventsMixin
from tests.fakes.graph.faults import FaultsMixin
from tests.fakes.graph.identity import IdentityMixin
from tests.fakes.graph.listing import ListingMixin
from tests.fakes.graph.mailbox import MailboxMixin
from tests.fakes.graph.notifications import NotifierMixin
from tests.fakes.graph.recurrence import RecurrenceMixin
from tests.fakes.graph.routing import RoutingMixin
from tests.fakes.graph.server import ServerMixin
from tests.fakes.graph.subscriptions import SubscriptionsMixin
from tests.fakes.http_support import serve_until_signalled


class FakeGraph(
    ServerMixin,
    ControlMixin,
    BatchMixin,
    RoutingMixin,
    ConsentMixin,
    IdentityMixin,
    MailboxMixin,
    EventsMixin,
    SubscriptionsMixin,
    NotifierMixin,
    DeltaMixin,
    ListingMixin,
    RecurrenceMixin,
    FaultsMixin,
    FakeGraphBase,
):
    """Microsoft identity platform + Microsoft Graph v1.0 over HTTPS on 127.0.0.1, with hooks for tests.

    Keyword arguments: see :class:`~tests.fakes.graph.base.FakeGraphBase`.
    """


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Microsoft identity platform + Graph server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--token-lifetime", type=int, default=3600)
    args = parser.parse_args(argv)
    fake = FakeGraph(tenant_id=args.tenant_id, client_id=args.client_id, client_secret=args.client_secret,
                     latency=args.latency, token_lifetime=args.token_lifetime, port=args.port)
    return serve_until_signalled(fake.start, fake.stop, lambda: f"READY {fake.base_url} {fake.ca_bundle_path}")
