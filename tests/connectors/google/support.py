"""Shared pieces for tests that run the Google connector against the fake Google server."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.google.connector import GoogleConnector
from connectors.google.options import GoogleOptions
from syncd.core.ooo import OooContent
from syncd.core.time import local_midnight, zone
from tests.fakes.google_calendar import FakeGoogleCalendar

ALICE = "alice@example.com"


@functools.cache
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def service_account_file(folder: Path, fake: FakeGoogleCalendar) -> Path:
    """A service-account key file whose token_uri is the fake's."""
    path = folder / "google-sa.json"
    path.write_text(json.dumps({
        "type": "service_account",
        "project_id": "syncd-test",
        "private_key_id": "test-key",
        "private_key": private_key_pem(),
        "client_email": "syncd@syncd-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": fake.token_uri,
    }))
    return path


def account_toml(fake: FakeGoogleCalendar, folder: Path, name: str = "gw", extra: str = "") -> str:
    """The ``[[accounts]]`` table that points syncd at the fake (a service account)."""
    return (f'[[accounts]]\nname = "{name}"\nprovider = "google"\n'
            f'service_account_file = "{service_account_file(folder, fake)}"\n'
            f'api_endpoint = "{fake.api_endpoint}"\nbatch_uri = "{fake.batch_uri}"\n{extra}')


def connector_for(fake: FakeGoogleCalendar, folder: Path, **options: Any) -> GoogleConnector:
    options.setdefault("service_account_file", str(service_account_file(folder, fake)))
    return GoogleConnector(GoogleOptions(api_endpoint=fake.api_endpoint, batch_uri=fake.batch_uri, **options))


def event_times(content: OooContent, tz_name: str, *, ooo: bool = True) -> dict[str, Any]:
    """Start and end as a person's Google Calendar writes them (OOO cannot be all-day)."""
    if content.all_day and ooo:
        assert content.start_date and content.end_date
        tz = zone(tz_name)
        start, end = local_midnight(content.start_date, tz), local_midnight(content.end_date, tz)
        return {"start": {"dateTime": start.astimezone(tz).isoformat(), "timeZone": tz_name},
                "end": {"dateTime": end.astimezone(tz).isoformat(), "timeZone": tz_name}}
    if content.all_day:
        assert content.start_date and content.end_date
        return {"start": {"date": content.start_date.isoformat()}, "end": {"date": content.end_date.isoformat()}}
    return {"start": {"dateTime": content.start.astimezone(UTC).isoformat()},
            "end": {"dateTime": content.end.astimezone(UTC).isoformat()}}


@dataclass
class GooglePerson:
    """Somebody using Google Calendar's own app on their calendar."""

    fake: FakeGoogleCalendar
    user: str = ALICE
    calendar: str = "primary"
    tz_name: str = "Europe/Stockholm"

    def add(self, content: OooContent, ooo: bool = True) -> str:
        body: dict[str, Any] = {"summary": content.title, **event_times(content, self.tz_name, ooo=ooo)}
        if ooo:
            body["eventType"] = "outOfOffice"
        return str(self.fake.add_event(self.user, self.calendar, body)["id"])

    def edit(self, event_id: str, content: OooContent) -> None:
        self.fake.edit_event(self.user, self.calendar, event_id,
                             {"summary": content.title, **event_times(content, self.tz_name)})

    def remove(self, event_id: str) -> None:
        self.fake.delete_event(self.user, self.calendar, event_id)

    def unmark_ooo(self, event_id: str) -> None:
        # Google cannot change an event's type: the person deletes the OOO entry and books
        # an ordinary event for the same time instead.
        event = next(e for e in self.fake.events(self.user, self.calendar) if e["id"] == event_id)
        self.remove(event_id)
        self.fake.add_event(self.user, self.calendar, {"summary": event.get("summary", ""),
                                                       "start": event["start"], "end": event["end"]})

    def events(self, *, ooo_only: bool = True) -> list[dict[str, Any]]:
        return [e for e in self.fake.events(self.user, self.calendar)
                if not ooo_only or e.get("eventType") == "outOfOffice"]
