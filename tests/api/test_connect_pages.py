"""The connect pages over HTTP (the real ASGI app): the admin call that makes a link, the page
an agent opens, the hand-over to the provider with its cookie, the return (a GET from Google,
a form POST from Microsoft), and a page for every refusal, with the headers a browser needs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from store.db import Database
from syncd.api import create_app
from syncd.api.routes.connect import COOKIE
from tests.conftest import Clock
from tests.consent_world import (
    ADMIN_TOKEN,
    ALICE,
    CAROL,
    PUBLIC,
    WRITE_TOKEN,
    World,
    config_text,
    load,
    make_world,
    serve_google,
    serve_graph,
)
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph
from tests.known_secrets import register

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITE = {"Authorization": f"Bearer {WRITE_TOKEN}"}
HELPDESK = 'Acme <b>"Support"</b>'  # the pages escape what the config says


@pytest.fixture
def google() -> Iterator[FakeGoogleCalendar]:
    yield from serve_google()


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    yield from serve_graph()


@dataclass
class Site:
    world: World
    client: TestClient

    def link(self, user: str = "alice", account: str = "workspace") -> str:
        """A connect link's path, made through the API (its token is a secret: never logged)."""
        made = self.client.post(f"/v1/users/{user}/connect-links", json={"account": account}, headers=ADMIN)
        assert made.status_code == 201, made.text
        url = str(made.json()["url"])
        register(url.rsplit("/", 1)[1])
        return url.removeprefix(PUBLIC)

    def hand_over(self, path: str) -> tuple[str, str]:
        """Press the button on the page: (the provider's consent URL, the cookie's value)."""
        went = self.client.post(path, follow_redirects=False)
        assert went.status_code == 303, went.text
        cookie = went.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        return went.headers["location"], cookie.split(";", 1)[0].split("=", 1)[1]


@pytest.fixture(autouse=True)
def quiet_test_client() -> Iterator[None]:
    """The test's HTTP client logs every URL it requests, connect tokens included; syncd logs
    none (uvicorn's access log is off), which is what the secrets check is for."""
    client_log = logging.getLogger("httpx2")
    level = client_log.level
    client_log.setLevel(logging.WARNING)
    yield
    client_log.setLevel(level)


@pytest.fixture
def site(database: Database, clock: Clock, tmp_path: Path, google: FakeGoogleCalendar,
         graph: FakeGraph) -> Iterator[Site]:
    clock.set(clock.now.replace(year=2026, month=12, day=1))
    world = make_world(load(config_text(google, graph, tmp_path, helpdesk=HELPDESK), tmp_path), database, clock,
                       google, graph)
    app = create_app(world.service, onboarding=world.onboarding)
    with TestClient(app, base_url=PUBLIC) as client:
        yield Site(world, client)
    world.browser.close()
    world.syncer.connectors.close()


def page(response: Response, status: int) -> str:
    """An HTML page a person can read, with the headers that keep it to itself."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    headers = response.headers
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert (headers["referrer-policy"], headers["x-frame-options"], headers["cache-control"]) == (
        "no-referrer", "DENY", "no-store")
    text = response.text
    assert "<script" not in text and "Traceback" not in text
    assert 'Acme &lt;b&gt;&#34;Support&#34;&lt;/b&gt;' in text and HELPDESK not in text
    return text


def test_an_admin_makes_connect_links(site: Site) -> None:
    made = site.client.post("/v1/users/alice/connect-links", json={"account": "workspace", "expires": "12h"},
                            headers=ADMIN)
    assert made.status_code == 201, made.text
    body = made.json()
    register(body["url"].rsplit("/", 1)[1])
    assert body["url"].startswith(f"{PUBLIC}/connect/")
    assert (body["user"], body["email"], body["account"], body["expires_at"]) == (
        "alice", ALICE, "workspace", "2026-12-01T21:00:00Z")

    def refused(user: str, payload: dict[str, str], status: int, words: str) -> None:
        answer = site.client.post(f"/v1/users/{user}/connect-links", json=payload, headers=ADMIN)
        assert answer.status_code == status and words in answer.json()["message"], answer.text

    refused("alice", {"account": "workspace", "expires": "soon"}, 422, "expires: bad duration 'soon'")
    refused("alice", {"account": "workspace", "expires": "90d"}, 422, "5 minutes to 30 days")
    refused("alice", {"account": "elsewhere"}, 404, "no account 'elsewhere'")
    refused("nobody", {"account": "workspace"}, 404, "no user 'nobody'")
    refused("carol", {"account": "workspace"}, 422, "has no calendar on account 'workspace'")
    refused("dave", {"account": "folder"}, 422, "has no browser consent")
    writer = site.client.post("/v1/users/alice/connect-links", json={"account": "workspace"}, headers=WRITE)
    assert writer.status_code == 403
    assert site.client.post("/v1/users/alice/connect-links", json={"account": "workspace"}).status_code == 401


def test_an_agent_connects_google_through_the_pages(site: Site) -> None:
    path = site.link()
    text = page(site.client.get(path), 200)
    assert ALICE in text and "Google Calendar" in text and "primary" in text and '<form method="post">' in text

    consent, browser_secret = site.hand_over(path)
    cookie = site.client.post(path, follow_redirects=False).headers["set-cookie"].lower()
    for attribute in ("httponly", "secure", "samesite=none", "path=/connect", "max-age=900"):
        assert attribute in cookie
    assert consent.startswith(site.world.google.auth_uri)

    consent, browser_secret = site.hand_over(path)  # the last click is the one that finishes
    answer = site.world.browser.consent(consent)
    back = site.client.get(f"/connect/callback?{urlencode(answer)}", headers={"Cookie": f"{COOKIE}={browser_secret}"})
    text = page(back, 200)
    assert 'id="connected"' in text and ALICE in text
    assert f"{COOKIE}=" in back.headers["set-cookie"] and "max-age=0" in back.headers["set-cookie"].lower()
    assert site.world.vault.refresh_token("workspace", ALICE)
    page(site.client.get(path), 410)  # used


def test_microsoft_answers_with_a_form_post(site: Site) -> None:
    consent, browser_secret = site.hand_over(site.link("carol", "m365"))
    answer = site.world.browser.consent(consent)
    assert {"code", "state"} <= set(answer)
    back = site.client.post("/connect/callback", data=answer, headers={"Cookie": f"{COOKIE}={browser_secret}"})
    assert 'id="connected"' in page(back, 200)
    assert site.world.vault.refresh_token("m365", CAROL)


def test_every_refusal_is_a_page_and_one_log_line(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    def refused(request: Callable[[], Response], status: int, reason: str) -> None:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="syncd.api"):
            text = page(request(), status)
        assert f'data-reason="{reason}"' in text
        lines = [r for r in caplog.records if r.name.startswith("syncd.api")]
        assert len(lines) == 1 and f"refused ({reason})" in lines[0].getMessage()

    refused(lambda: site.client.get("/connect/not-a-link"), 404, "invalid")
    refused(lambda: site.client.get("/connect/" + "a" * 600), 404, "invalid")
    refused(lambda: site.client.get("/connect/callback"), 404, "invalid")

    path = site.link()
    consent, browser_secret = site.hand_over(path)
    answer = site.world.browser.consent(consent)
    refused(lambda: site.client.get(f"/connect/callback?{urlencode(answer)}"), 400, "browser")  # no cookie

    def back(answer: dict[str, str], secret: str) -> Callable[[], Response]:
        return lambda: site.client.get(f"/connect/callback?{urlencode(answer)}",
                                       headers={"Cookie": f"{COOKIE}={secret}"})

    consent, browser_secret = site.hand_over(path)
    refused(back(site.world.browser.consent(consent, "deny"), browser_secret), 400, "denied")
    consent, browser_secret = site.hand_over(path)
    refused(back(site.world.browser.consent(consent, email="mallory@example.com"), browser_secret), 403,
            "wrong_account")
    assert site.world.vault.refresh_token("workspace", ALICE) is None

    huge = site.client.post("/connect/callback", content=b"code=" + b"x" * 70_000,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert huge.status_code == 413 and "<script" not in huge.text


def test_links_needing_a_grant_show_where_to_connect(site: Site) -> None:
    listed = site.client.get("/v1/links", headers=ADMIN)
    assert listed.status_code == 200
    assert {row["user"]: row["connect_url"] for row in listed.json()} == {"alice": None, "carol": None, "dave": None}
