"""syncd wired as the daemon wires it for connecting calendars, beside the fake Google and
Microsoft identity platforms, with a browser that answers their consent pages (for the tests
of the onboarding service and of the connect pages)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from connectors.registry import Connectors
from store.db import Database
from store.models import OutboxRow
from syncd.config import Config, load_config
from syncd.service import Syncd
from syncd.service.credentials import CredentialVault, new_key
from syncd.service.notices import LinkNotices
from syncd.service.onboarding import CALLBACK_PATH, Onboarding
from syncd.sync import LinkSyncer
from tests.conftest import Clock
from tests.consent_browser import ConsentBrowser
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph
from tests.known_secrets import register

PUBLIC = "http://127.0.0.1:8765"
GOOGLE_CLIENT = "1234-syncd.apps.googleusercontent.com"
GOOGLE_SECRET = "GOCSPX-syncd-test-client-secret"
ALICE = "alice@example.com"  # Google
CAROL = "carol@contoso.com"  # Microsoft 365
DAVE = "dave@example.com"  # a local calendar only


ADMIN_TOKEN = "connect-admin-token-0123456789"
WRITE_TOKEN = "connect-write-token-0123456789"
register(ADMIN_TOKEN)
register(WRITE_TOKEN)


def serve_google() -> Iterator[FakeGoogleCalendar]:
    """The fake Google, over TLS, knowing syncd's OAuth client (for a fixture to yield from)."""
    with FakeGoogleCalendar(tls=True) as fake:
        fake.add_oauth_client(GOOGLE_CLIENT, GOOGLE_SECRET, redirect_uris=[PUBLIC + CALLBACK_PATH])
        yield fake


def serve_graph() -> Iterator[FakeGraph]:
    """The fake Microsoft identity platform and Graph, knowing syncd's app (for a fixture to yield from)."""
    with FakeGraph() as fake:
        fake.add_app(fake.client_id, secret=fake.client_secret, redirect_uris=[PUBLIC + CALLBACK_PATH])
        yield fake


def config_text(google: FakeGoogleCalendar, graph: FakeGraph, folder: Path, *, public: str | None = PUBLIC,
                helpdesk: str = "Acme Support") -> str:
    api = (f'public_url = "{public}"\nhelpdesk_name = {json.dumps(helpdesk)}\n' if public else "") + (
        f'tokens = [{{ name = "root", token = "{ADMIN_TOKEN}", scopes = ["admin"] }}, '
        f'{{ name = "hd", token = "{WRITE_TOKEN}", scopes = ["write"] }}]\n')
    return f'''
[daemon]
database_url = "sqlite:///{folder / 'unused.db'}"

[api]
{api}
[[accounts]]
name = "workspace"
provider = "google"
client_id = "{GOOGLE_CLIENT}"
client_secret = "{GOOGLE_SECRET}"
token_key = "{new_key()}"
auth_uri = "{google.auth_uri}"
token_uri = "{google.token_uri}"
certs_uri = "{google.certs_uri}"
api_endpoint = "{google.api_endpoint}"
batch_uri = "{google.batch_uri}"
ca_bundle = "{google.ca_bundle_path}"

[[accounts]]
name = "m365"
provider = "outlook"
auth = "delegated"
tenant_id = "{graph.tenant_id}"
client_id = "{graph.client_id}"
client_secret = "{graph.client_secret}"
token_key = "{new_key()}"
authority = "{graph.authority}"
graph_url = "{graph.graph_url}"
ca_bundle = "{graph.ca_bundle_path}"

[[accounts]]
name = "folder"
provider = "local"
root = "{folder / 'calendars'}"

[[users]]
id = "alice"
email = "{ALICE}"
timezone = "Europe/Stockholm"
calendars = [{{ account = "workspace" }}]

[[users]]
id = "carol"
email = "{CAROL}"
timezone = "Europe/Stockholm"
calendars = [{{ account = "m365" }}]

[[users]]
id = "dave"
email = "{DAVE}"
timezone = "Europe/Stockholm"
calendars = [{{ account = "folder", calendar = "dave" }}]

[[sinks]]
type = "stdout"
'''


def load(text: str, folder: Path) -> Config:
    path = folder / "syncd.toml"
    path.write_text(text)
    (folder / "calendars" / "dave").mkdir(parents=True, exist_ok=True)
    return load_config(path)


@dataclass
class World:
    """syncd as the daemon wires it, the fakes, and a browser."""

    config: Config
    service: Syncd
    vault: CredentialVault
    onboarding: Onboarding
    syncer: LinkSyncer
    browser: ConsentBrowser
    google: FakeGoogleCalendar
    graph: FakeGraph
    clock: Clock
    woken: list[str]

    def connect(self, link_url: str, button: str = "allow", **typed: str) -> dict[str, str]:
        """The agent opens the link, presses the button, answers the provider; the answer that
        comes back to syncd's callback, and the browser's cookie."""
        token = link_url.rsplit("/", 1)[1]
        redirect = self.onboarding.begin(token)
        answer = self.browser.consent(redirect.url, button, **typed)
        return {**answer, "__browser": redirect.browser_secret}

    def complete(self, answer: dict[str, str]) -> Any:
        answer = dict(answer)
        browser = answer.pop("__browser")
        return self.onboarding.complete(answer, browser)

    def outbox(self) -> list[dict[str, Any]]:
        return self.service.db.read(lambda s: [dict(p) for p in s.scalars(select(OutboxRow.payload)
                                                                            .order_by(OutboxRow.seq))])

    def link_events(self) -> list[dict[str, Any]]:
        return [e for e in self.outbox() if str(e["type"]).startswith("link.")]

    def state(self, user: str) -> str:
        return next(str(row["state"]) for row in self.service.links() if row["user"] == user)


def make_world(config: Config, database: Database, clock: Clock, google: FakeGoogleCalendar,
               graph: FakeGraph) -> World:
    service = Syncd(config, database, clock=clock)
    service.prepare()
    keys = {name: a.options["token_key"] for name, a in config.accounts.items() if a.options.get("token_key")}
    vault = CredentialVault(database, keys, clock)
    woken: list[str] = []
    onboarding = Onboarding(config, database, vault, clock, wake=lambda: woken.append("poll"))
    notices = LinkNotices(config, service.recorder.sinks, clock, onboarding)
    syncer = LinkSyncer(service, Connectors(config.accounts, refresh_tokens=vault), notices=notices)
    both = Path(config.path).parent / "fakes-ca.pem"  # the browser trusts both fakes
    both.write_text(Path(google.ca_bundle_path).read_text() + Path(graph.ca_bundle_path).read_text())
    return World(config, service, vault, onboarding, syncer, ConsentBrowser.trusting(str(both)), google, graph,
                 clock, woken)
