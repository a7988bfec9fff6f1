"""Shared pieces for tests that run the Outlook connector against the fake Microsoft Graph."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Any

from connectors.outlook.connector import OutlookConnector
from connectors.outlook.options import OutlookOptions
from syncd.core.ooo import OooContent
from tests.fakes.graph import FakeGraph

ALICE = "alice@contoso.com"


def options_for(fake: FakeGraph, **extra: Any) -> dict[str, Any]:
    """The account's config options that point syncd at the fake."""
    return {"tenant_id": fake.tenant_id, "client_id": fake.client_id, "client_secret": fake.client_secret,
            "authority": fake.authority, "graph_url": fake.graph_url, "ca_bundle": fake.ca_bundle_path, **extra}


def account_toml(fake: FakeGraph, name: str = "m365", extra: str = "") -> str:
    """The ``[[accounts]]`` table that points syncd at the fake (app-only sign-in); the
    secret comes from ``client_secret_env`` if ``extra`` names it, else literally."""
    secret = "" if "client_secret_env" in extra else f'client_secret = "{fake.client_secret}"\n'
    return (f'[[accounts]]\nname = "{name}"\nprovider = "outlook"\ntenant_id = "{fake.tenant_id}"\n'
            f'client_id = "{fake.client_id}"\n{secret}authority = "{fake.authority}"\n'
            f'graph_url = "{fake.graph_url}"\nca_bundle = "{fake.ca_bundle_path}"\n{extra}')


def connector_for(fake: FakeGraph, **extra: Any) -> OutlookConnector:
    return OutlookConnector(OutlookOptions(**options_for(fake, **extra)))


def event_times(content: OooContent, tz_name: str) -> dict[str, Any]:
    if content.all_day:
        assert content.start_date and content.end_date
        return {"isAllDay": True,
                "start": {"dateTime": f"{content.start_date}T00:00:00", "timeZone": tz_name},
                "end": {"dateTime": f"{content.end_date}T00:00:00", "timeZone": tz_name}}
    return {"start": {"dateTime": content.start.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": content.end.astimezone(UTC).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}}


@dataclass
class OutlookPerson:
    """Somebody using Outlook on their mailbox's calendar."""

    fake: FakeGraph
    user: str = ALICE
    tz_name: str = "Europe/Stockholm"

    def add(self, content: OooContent, ooo: bool = True) -> str:
        body = {"subject": content.title, "showAs": "oof" if ooo else "busy", **event_times(content, self.tz_name)}
        return str(self.fake.add_event(self.user, body)["id"])

    def edit(self, event_id: str, content: OooContent) -> None:
        self.fake.edit_event(self.user, event_id, {"subject": content.title, **event_times(content, self.tz_name)})

    def remove(self, event_id: str) -> None:
        self.fake.delete_event(self.user, event_id)

    def unmark_ooo(self, event_id: str) -> None:
        self.fake.edit_event(self.user, event_id, {"showAs": "busy"})

    def events(self, *, ooo_only: bool = True) -> list[dict[str, Any]]:
        return [e for e in self.fake.events(self.user) if not ooo_only or e.get("showAs") == "oof"]
