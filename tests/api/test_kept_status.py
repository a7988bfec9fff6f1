"""The status read answered before routing (`syncd.api.kept_status`): only when every
condition holds, and then exactly what the route would answer; everything else reaches the
route, refusals included."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from store.db import Database
from syncd.api import create_app
from syncd.api.auth import TokenBook
from syncd.api.kept_status import KeptStatusMiddleware
from syncd.config import ApiConfig, ApiToken
from syncd.core.ooo import timed_content
from syncd.service import Syncd
from tests.conftest import Clock, listening, make_config, user

TOKENS = (ApiToken("ro", "r-token-r-token-r-token-1", ("read",)),
          ApiToken("hd", "w-token-w-token-w-token-1", ("write",)),
          ApiToken("none", "n-token-n-token-n-token-1", ()))
R = {"Authorization": "Bearer r-token-r-token-r-token-1"}
W = {"Authorization": "Bearer w-token-w-token-w-token-1"}
NO_SCOPE = {"Authorization": "Bearer n-token-n-token-n-token-1"}


@pytest.fixture
def service(database: Database, clock: Clock) -> Syncd:
    config = dataclasses.replace(make_config([user("alice", "work"), user("bob", "work")]),
                                 api=ApiConfig(tokens=TOKENS))
    svc = Syncd(config, database, clock=clock)
    svc.prepare()
    listening(database)
    return svc


@pytest.fixture
def client(service: Syncd) -> Iterator[TestClient]:
    with TestClient(create_app(service)) as c:
        yield c


class Downstream:
    """The app behind the middleware: answers 599 and counts what reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def through_middleware(service: Syncd, path: str, headers: dict[str, str], *, method: str = "GET",
                       query: bytes = b"") -> tuple[int, bytes, Downstream]:
    downstream = Downstream()
    middleware = KeptStatusMiddleware(downstream, service, TokenBook(service.config.api))
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query,
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), downstream


def test_a_kept_answer_is_the_routes_answer_byte_for_byte(client: TestClient, service: Syncd) -> None:
    first = client.get("/v1/users/alice/status", headers=R)  # not kept yet: the route answers, and keeps it
    assert first.status_code == 200
    assert service.kept_status("alice") is not None
    status, body, downstream = through_middleware(service, "/v1/users/alice/status", R)
    assert (status, downstream.paths) == (200, [])  # answered before routing
    again = client.get("/v1/users/alice/status", headers=R)
    assert again.content == first.content == body
    assert dict(again.headers) == dict(first.headers)


def test_the_route_answers_whatever_is_not_certain(service: Syncd) -> None:
    service.status("alice")  # kept from here on
    path = "/v1/users/alice/status"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "r-token-r-token-r-token-1"},
                    NO_SCOPE):
        assert through_middleware(service, path, headers)[2].paths == [path], headers
    assert through_middleware(service, path, R, method="HEAD")[2].paths == [path]
    assert through_middleware(service, path, R, query=b"at=2026-03-02T10:00:00Z")[2].paths == [path]
    for other in ("/v1/users/bob/status",  # never read, so not kept
                  "/v1/users/alice/status/", "/v1/users//status", "/v1/users/a/b/status", "/v1/users/status"):
        assert through_middleware(service, other, R)[2].paths == [other]
    assert through_middleware(service, path, W)[2].paths == []  # a write token may read


def test_refusals_and_changes_come_out_as_from_the_route(client: TestClient, service: Syncd, clock: Clock) -> None:
    assert client.get("/v1/users/alice/status", headers=R).json()["status"] == "available"
    assert client.get("/v1/users/alice/status").status_code == 401
    assert client.get("/v1/users/alice/status", headers=NO_SCOPE).status_code == 403
    assert client.get("/v1/users/nobody/status", headers=R).status_code == 404
    service.add_block("alice", timed_content(clock.now, clock.now.replace(hour=17)))
    assert client.get("/v1/users/alice/status", headers=R).json()["status"] == "away"
