"""An agent connects a calendar end to end, in a real browser: `syncd run` as operators run it,
a connect link from `syncd connect-link`, Chromium (through Playwright) on the connect page and
on the fake provider's consent page, then an OOO event in the calendar that reaches syncd.
Revoking the grant publishes ``link.reauth_required`` with a connect link that works, and
connecting again publishes ``link.restored``.

Needs Debian's ``chromium`` (``.ci/run`` installs it): skipped with a message elsewhere, a
failure under ``CI=true``."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

import pytest
import requests

from syncd.core.ooo import timed_content
from syncd.service.credentials import new_key
from tests.connectors.google.support import GooglePerson
from tests.connectors.outlook.support import OutlookPerson
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph
from tests.known_secrets import register
from tests.support import free_port
from tests.system.processes import running_daemon

GOOGLE_CLIENT = "1234-syncd.apps.googleusercontent.com"
GOOGLE_SECRET = "GOCSPX-browser-test-secret"
ADMIN_TOKEN = "browser-test-admin-token-0123456789"
register(ADMIN_TOKEN)
WAIT = 60.0  # seconds to wait for something that takes one poll; generous for a loaded machine


def chromium() -> str:
    path = os.environ.get("SYNCD_TEST_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    problem = None
    if path is None:
        problem = "Chromium is not installed (apt-get install chromium; .ci/run does)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e .[test])"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"{problem}; CI must run the browser test")
        pytest.skip(problem)
    assert path is not None
    return path


class Stream:
    """Lines of a daemon's output, read as they come (a pipe left unread would block it)."""

    def __init__(self, pipe: IO[str] | None) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert pipe is not None
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.put(line)

    def drain(self) -> list[str]:
        """The lines that came so far."""
        drained = []
        while not self.lines.empty():
            drained.append(self.lines.get())
        self.seen.extend(drained)
        return drained

    def wait_for(self, wanted: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if wanted(line):
                return line
        raise AssertionError(f"no {what} within {WAIT:.0f}s; last lines: {self.seen[-5:]}")


def event_of(kind: str) -> Callable[[str], bool]:
    def wanted(line: str) -> bool:
        try:
            return bool(json.loads(line).get("type") == kind)
        except ValueError:
            return False
    return wanted


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {WAIT:.0f}s")


class Provider(Protocol):
    """One fake provider: its account table, and what the person does there."""

    name: str
    account: str
    email: str

    def account_toml(self) -> str: ...
    def add_absence(self, title: str) -> None: ...
    def revoke(self) -> None: ...
    def answer_consent(self, page: Any) -> None: ...


class Google(Provider):
    name, account, email = "google", "workspace", "alice@example.com"

    def __init__(self, fake: FakeGoogleCalendar, redirect: str) -> None:
        self.fake = fake
        fake.add_oauth_client(GOOGLE_CLIENT, GOOGLE_SECRET, redirect_uris=[redirect])

    def account_toml(self) -> str:
        f = self.fake
        return (f'name = "workspace"\nprovider = "google"\nclient_id = "{GOOGLE_CLIENT}"\n'
                f'client_secret = "{GOOGLE_SECRET}"\nauth_uri = "{f.auth_uri}"\ntoken_uri = "{f.token_uri}"\n'
                f'certs_uri = "{f.certs_uri}"\napi_endpoint = "{f.api_endpoint}"\nbatch_uri = "{f.batch_uri}"\n'
                f'ca_bundle = "{f.ca_bundle_path}"\n')

    def add_absence(self, title: str) -> None:
        GooglePerson(self.fake, user=self.email).add(absence(title))

    def revoke(self) -> None:
        assert self.fake.revoke_grants(self.email) >= 1

    def answer_consent(self, page: Any) -> None:
        page.click("#allow")


class Microsoft(Provider):
    name, account, email = "outlook", "m365", "carol@contoso.com"

    def __init__(self, fake: FakeGraph, redirect: str) -> None:
        self.fake = fake
        fake.add_app(fake.client_id, secret=fake.client_secret, redirect_uris=[redirect])

    def account_toml(self) -> str:
        f = self.fake
        return (f'name = "m365"\nprovider = "outlook"\nauth = "delegated"\ntenant_id = "{f.tenant_id}"\n'
                f'client_id = "{f.client_id}"\nclient_secret = "{f.client_secret}"\nauthority = "{f.authority}"\n'
                f'graph_url = "{f.graph_url}"\nca_bundle = "{f.ca_bundle_path}"\n')

    def add_absence(self, title: str) -> None:
        OutlookPerson(self.fake, user=self.email).add(absence(title))

    def revoke(self) -> None:
        self.fake.revoke_user_sessions(self.email)

    def answer_consent(self, page: Any) -> None:
        page.click("#allow")
        page.click("#continue")  # the form_post page; Microsoft's own sends itself with a script


def absence(title: str) -> Any:
    start = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=2)
    return timed_content(start, start + timedelta(hours=8), title)


def config_for(provider: Provider, folder: Path, port: int) -> Path:
    path = folder / "syncd.toml"
    path.write_text(f'''
[daemon]
database_url = "sqlite:///{folder / 'syncd.db'}"
poll_interval = "2s"

[api]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
helpdesk_name = "Acme Support"
tokens = [{{ name = "root", token = "{ADMIN_TOKEN}", scopes = ["admin"] }}]

[[accounts]]
{provider.account_toml()}token_key = "{new_key()}"

[[users]]
id = "agent"
email = "{provider.email}"
timezone = "Europe/Stockholm"
calendars = [{{ account = "{provider.account}" }}]

[[sinks]]
type = "stdout"
''')
    return path


@pytest.fixture(params=["google", "microsoft"])
def provider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Provider, int]]:
    port = free_port()
    redirect = f"http://127.0.0.1:{port}/connect/callback"
    if request.param == "google":
        with FakeGoogleCalendar(tls=True) as google:
            yield Google(google, redirect), port
    else:
        with FakeGraph() as graph:
            yield Microsoft(graph, redirect), port


def connect_link(config: Path, provider: Provider) -> str:
    """What the operator runs: `syncd connect-link ACCOUNT USER`."""
    made = subprocess.run([sys.executable, "-m", "syncd", "-c", str(config), "connect-link", provider.account, "agent"],
                          capture_output=True, text=True, timeout=120, check=False, cwd=config.parent)
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip()
    register(url.rsplit("/", 1)[1])
    return url


def connect_in_browser(browser: Any, url: str, provider: Provider) -> str:
    """The agent opens the link, presses the button, consents; the text of the page they land on."""
    context = browser.new_context(ignore_https_errors=True)  # the fakes' throw-away CA
    try:
        page = context.new_page()
        page.goto(url)
        assert "Connect your calendar to Acme Support" in page.inner_text("h1")
        assert provider.email in page.inner_text("main")
        page.click("#connect")
        page.wait_for_selector("#allow")
        assert page.input_value("#email") == provider.email  # login_hint
        provider.answer_consent(page)
        page.wait_for_selector("#connected, #refused")
        return str(page.inner_text("main"))
    finally:
        context.close()


def test_an_agent_connects_in_chromium(provider: tuple[Provider, int], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = chromium()
    fake, port = provider
    config = config_for(fake, tmp_path, port)
    with running_daemon(config, stdout=subprocess.PIPE) as daemon, sync_playwright() as playwright:
        events, _logs = Stream(daemon.stdout), Stream(daemon.stderr)
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            landed = connect_in_browser(browser, connect_link(config, fake), fake)
            assert "Your calendar is connected" in landed and fake.email in landed

            fake.add_absence("Dentist")
            api = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            until(lambda: [b["title"] for b in requests.get(f"{api}/v1/users/agent/ooo", headers=headers,
                                                            timeout=10).json()] == ["Dentist"],
                  "the calendar's OOO event reaching syncd")

            # Until the first consent the link had no grant: syncd said so (with a connect link of its
            # own), and that it syncs since. What matters now is what revoking the grant does.
            events.drain()
            fake.revoke()
            lost = json.loads(events.wait_for(event_of("link.reauth_required"), "link.reauth_required event"))
            assert lost["user"]["email"] == fake.email and lost["link"]["account"] == fake.account
            url = lost["connect"]["url"]
            register(url.rsplit("/", 1)[1])
            assert url.startswith(f"{api}/connect/")
            listed = requests.get(f"{api}/v1/links", headers=headers, timeout=10).json()
            assert [link["connect_url"] for link in listed] == [url]

            landed = connect_in_browser(browser, url, fake)
            assert "Your calendar is connected" in landed
            restored = json.loads(events.wait_for(event_of("link.restored"), "link.restored event"))
            assert restored["link"] == lost["link"]
        finally:
            browser.close()
