"""Agents connect their own calendars: connect links, the consent with each provider (the fake
Google and Microsoft identity platforms, driven as a browser would), the refusals, and the
link events that ask an agent to connect again and say when it worked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from store.db import Database
from syncd.core.errors import ConfigError, ConsentRefused, NotFoundInStore, UserInputError
from syncd.core.ooo import timed_content
from syncd.service.onboarding import CALLBACK_PATH
from tests.conftest import Clock
from tests.connectors.google.support import GooglePerson
from tests.connectors.outlook.support import OutlookPerson
from tests.consent_world import (
    ALICE,
    CAROL,
    PUBLIC,
    World,
    config_text,
    load,
    make_world,
    serve_google,
    serve_graph,
)
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph


@pytest.fixture
def google() -> Iterator[FakeGoogleCalendar]:
    yield from serve_google()


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    yield from serve_graph()


@pytest.fixture
def world(database: Database, clock: Clock, tmp_path: Path, google: FakeGoogleCalendar,
          graph: FakeGraph) -> Iterator[World]:
    clock.set(clock.now.replace(year=2026, month=12, day=1))  # near the fakes' real clock: events in the window
    built = make_world(load(config_text(google, graph, tmp_path), tmp_path), database, clock, google, graph)
    yield built
    built.browser.close()
    built.syncer.connectors.close()


def absence(world: World) -> Any:
    start = world.clock.now.astimezone(UTC).replace(hour=8, minute=0, second=0) + timedelta(days=2)
    return timed_content(start, start + timedelta(hours=8), "Dentist")


# -- the whole way ----------------------------------------------------------------------------------------------


def test_an_agent_connects_a_google_calendar(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    assert link.url.startswith(f"{PUBLIC}/connect/") and link.email == ALICE
    assert link.expires_at == world.clock.now + timedelta(days=7)
    invite = world.onboarding.invitation(link.url.rsplit("/", 1)[1])
    assert (invite.email, invite.provider, invite.calendars, invite.helpdesk) == (
        ALICE, "Google Calendar", ["primary"], "Acme Support")

    redirect = world.onboarding.begin(link.url.rsplit("/", 1)[1])
    asked = {k: v[0] for k, v in parse_qs(urlsplit(redirect.url).query).items()}
    assert redirect.url.startswith(world.google.auth_uri)
    assert (asked["response_type"], asked["access_type"], asked["prompt"]) == ("code", "offline", "consent")
    assert set(asked["scope"].split()) == {"openid", "https://www.googleapis.com/auth/userinfo.email",
                                           "https://www.googleapis.com/auth/calendar.events"}
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert (asked["redirect_uri"], asked["login_hint"]) == (PUBLIC + CALLBACK_PATH, ALICE)

    answer = world.browser.consent(redirect.url)
    done = world.onboarding.complete(answer, redirect.browser_secret)
    assert (done.email, done.provider, done.calendars) == (ALICE, "Google Calendar", ["primary"])
    assert world.woken == ["poll"]
    assert world.vault.refresh_token("workspace", ALICE)  # stored as `credentials set` stores it

    GooglePerson(world.google, user=ALICE).add(absence(world))
    (outcome,) = world.syncer.sync_once(["alice"])
    assert outcome.ok, outcome.error
    assert [b.title for b in world.service.list_blocks("alice")] == ["Dentist"]


def test_an_agent_connects_a_microsoft_365_calendar(world: World) -> None:
    link = world.onboarding.create("m365", CAROL)  # by email as well as by id
    answer = world.connect(link.url)
    done = world.complete(answer)
    assert (done.email, done.provider) == (CAROL, "Microsoft 365")
    assert world.vault.refresh_token("m365", CAROL)

    OutlookPerson(world.graph, user=CAROL).add(absence(world))
    (outcome,) = world.syncer.sync_once(["carol"])
    assert outcome.ok, outcome.error
    assert [b.title for b in world.service.list_blocks("carol")] == ["Dentist"]


# -- refusals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("account", "user", "other"), [("workspace", "alice", "mallory@example.com"),
                                                        ("m365", "carol", "mallory@contoso.com")])
def test_consent_from_another_account_stores_nothing(world: World, account: str, user: str, other: str) -> None:
    link = world.onboarding.create(account, user)
    with pytest.raises(ConsentRefused, match=f"as {other}, but this link is for") as refused:
        world.complete(world.connect(link.url, email=other))
    assert refused.value.reason == "wrong_account"
    email = ALICE if user == "alice" else CAROL
    assert world.vault.refresh_token(account, email) is None and world.woken == []
    # The link still works for its own user.
    world.complete(world.connect(link.url))
    assert world.vault.refresh_token(account, email)


def test_a_link_connects_once(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    world.complete(world.connect(link.url))
    token = link.url.rsplit("/", 1)[1]
    for attempt in (lambda: world.onboarding.invitation(token), lambda: world.onboarding.begin(token)):
        with pytest.raises(ConsentRefused, match="already been used") as refused:
            attempt()
        assert refused.value.reason == "used"


def test_the_answer_works_once_in_the_browser_that_started(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    answer = world.connect(link.url)
    browser = answer.pop("__browser")
    with pytest.raises(ConsentRefused, match="started in another browser") as refused:
        world.onboarding.complete(answer, "another-browser's-cookie")
    assert refused.value.reason == "browser"
    with pytest.raises(ConsentRefused, match="started in another browser"):
        world.onboarding.complete(answer, None)
    world.onboarding.complete(answer, browser)
    with pytest.raises(ConsentRefused, match="already finished") as replayed:
        world.onboarding.complete(answer, browser)
    assert replayed.value.reason == "invalid"


def test_a_newer_click_replaces_the_consent_under_way(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    first = world.connect(link.url)
    second = world.connect(link.url)
    with pytest.raises(ConsentRefused, match="a newer one was started"):
        world.complete(first)
    world.complete(second)


def test_saying_no_at_the_provider(world: World) -> None:
    for account, user in (("workspace", "alice"), ("m365", "carol")):
        link = world.onboarding.create(account, user)
        with pytest.raises(ConsentRefused, match="did not allow access") as refused:
            world.complete(world.connect(link.url, "deny"))
        assert refused.value.reason == "denied"


def test_links_and_consents_expire(world: World) -> None:
    link = world.onboarding.create("workspace", "alice", timedelta(hours=1))
    token = link.url.rsplit("/", 1)[1]
    answer = world.connect(link.url)
    world.clock.advance(timedelta(minutes=16))  # the consent took too long
    with pytest.raises(ConsentRefused, match="took longer than 15 minutes") as slow:
        world.complete(answer)
    assert slow.value.reason == "expired"
    world.clock.advance(timedelta(hours=1))
    with pytest.raises(ConsentRefused, match="has expired") as expired:
        world.onboarding.invitation(token)
    assert expired.value.reason == "expired"


def test_a_tampered_link_is_not_valid(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    token = link.url.rsplit("/", 1)[1]
    payload, _, signature = token.rpartition(".")
    other = "y" if signature[0] == "x" else "x"  # a signature's first character changed (1 in 64 is an "x")
    for bad in (payload + "." + other + signature[1:], "nonsense", "", token[:-2],
                token.replace(payload, payload[::-1])):
        with pytest.raises(ConsentRefused, match="not valid") as refused:
            world.onboarding.invitation(bad)
        assert refused.value.reason == "invalid"
    with pytest.raises(ConsentRefused, match="without a sign-in under way"):
        world.onboarding.complete({"code": "x"}, None)


def test_the_provider_refusing_the_code(world: World) -> None:
    link = world.onboarding.create("workspace", "alice")
    answer = world.connect(link.url)
    world.google.fail_next_code_exchange()
    with pytest.raises(ConsentRefused, match="Google refused the sign-in") as refused:
        world.complete(answer)
    assert refused.value.reason == "provider"
    assert world.vault.refresh_token("workspace", ALICE) is None


def test_an_address_google_has_not_verified(world: World) -> None:
    world.google.unverify_email(ALICE)
    link = world.onboarding.create("workspace", "alice")
    with pytest.raises(ConsentRefused, match="has not verified the address"):
        world.complete(world.connect(link.url))
    assert world.vault.refresh_token("workspace", ALICE) is None


def test_making_links_is_refused_clearly(world: World, database: Database, clock: Clock, tmp_path: Path) -> None:
    with pytest.raises(NotFoundInStore, match="no user 'nobody'"):
        world.onboarding.create("workspace", "nobody")
    with pytest.raises(UserInputError, match="has no calendar on account 'workspace'"):
        world.onboarding.create("workspace", "carol")
    with pytest.raises(UserInputError, match=r"accounts.folder \(local\) has no browser consent"):
        world.onboarding.create("folder", "dave")
    with pytest.raises(NotFoundInStore, match="no account 'elsewhere'"):
        world.onboarding.create("elsewhere", "alice")
    for expires in (timedelta(minutes=1), timedelta(days=31)):
        with pytest.raises(UserInputError, match="expires after 5 minutes to 30 days"):
            world.onboarding.create("workspace", "alice", expires)
    quiet = make_world(load(config_text(world.google, world.graph, tmp_path, public=None), tmp_path), database,
                       clock, world.google, world.graph)
    with pytest.raises(ConfigError, match="set api.public_url"):
        quiet.onboarding.create("workspace", "alice")
    assert not quiet.onboarding.can_connect("workspace") and world.onboarding.can_connect("m365")


def test_app_only_microsoft_accounts_take_no_consent(world: World, database: Database, clock: Clock,
                                                     tmp_path: Path) -> None:
    text = config_text(world.google, world.graph, tmp_path).replace('auth = "delegated"\n', "")
    app_only = make_world(load(text, tmp_path), database, clock, world.google, world.graph)
    with pytest.raises(ConfigError, match='only with auth = "delegated"'):
        app_only.onboarding.create("m365", "carol")


# -- a lost grant -------------------------------------------------------------------------------------------------


def test_a_lost_grant_asks_the_agent_to_connect_again(world: World) -> None:
    world.complete(world.connect(world.onboarding.create("workspace", "alice").url))
    (outcome,) = world.syncer.sync_once(["alice"])
    assert outcome.ok
    world.google.revoke_refresh_token(world.vault.refresh_token("workspace", ALICE) or "")

    world.clock.advance(timedelta(minutes=10))
    (outcome,) = world.syncer.sync_once(["alice"])
    assert not outcome.ok and world.state("alice") == "reauth_required"
    (lost,) = world.link_events()
    assert lost["type"] == "link.reauth_required"
    assert lost["user"] == {"id": "alice", "email": ALICE}
    assert lost["link"] == {"id": lost["link"]["id"], "account": "workspace", "provider": "google",
                            "calendar": "primary"}
    assert "invalid_grant" in lost["error"] or "cannot sign in" in lost["error"]
    url = lost["connect"]["url"]
    assert url.startswith(f"{PUBLIC}/connect/")
    # `syncd links` and GET /v1/links show the same link.
    (row,) = [r for r in world.onboarding.with_connect_urls(world.service.links()) if r["user"] == "alice"]
    assert row["connect_url"] == url

    # Still lost an hour later: no second event, the same link.
    world.clock.advance(timedelta(hours=1))
    world.syncer.sync_once(["alice"])
    assert len(world.link_events()) == 1

    # Six days on, the link would expire within a day: a fresh one is made, still no event.
    world.clock.advance(timedelta(days=6))
    world.syncer.sync_once(["alice"])
    (row,) = [r for r in world.onboarding.with_connect_urls(world.service.links()) if r["user"] == "alice"]
    assert row["connect_url"] != url and len(world.link_events()) == 1

    done = world.complete(world.connect(row["connect_url"]))
    assert done.email == ALICE
    world.clock.advance(timedelta(minutes=1))
    (outcome,) = world.syncer.sync_once(["alice"])
    assert outcome.ok and world.state("alice") == "ok"
    lost, restored = world.link_events()
    assert restored["type"] == "link.restored" and restored["link"] == lost["link"]
    assert [r.get("connect_url") for r in world.onboarding.with_connect_urls(world.service.links())
            if r["user"] == "alice"] == [None]


def test_a_lost_grant_without_a_public_url_still_says_so(database: Database, clock: Clock, tmp_path: Path,
                                                         google: FakeGoogleCalendar, graph: FakeGraph) -> None:
    quiet = make_world(load(config_text(google, graph, tmp_path, public=None), tmp_path), database, clock, google,
                       graph)
    quiet.vault.store("workspace", "alice", "1//never-issued-by-google")
    (outcome,) = quiet.syncer.sync_once(["alice"])
    assert not outcome.ok
    (lost,) = quiet.link_events()
    assert lost["type"] == "link.reauth_required" and lost["connect"] is None
    quiet.browser.close()
    quiet.syncer.connectors.close()
