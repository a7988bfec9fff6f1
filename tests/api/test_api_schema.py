"""Schemathesis against the app's own `/openapi.json`, in-process, on SQLite.

Every documented operation gets generated requests, with a token of each scope (an admin
token, so auth passes and the handlers run; a read and a write token, so the refusals are
checked too): no 5xx, every status code documented, every response body and header as the
schema says. Path parameters are sometimes swapped for seeded objects (the config user
``alice``, an API user ``bob``, a team, a rotation, an OOO block, a calendar link) so the
requests reach real objects, not only 404s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from store.db import Database
from syncd.api import create_app
from syncd.config import ApiConfig, ApiToken
from syncd.service import Syncd
from syncd.service.metrics import Metrics
from tests.conftest import make_config, user

TOKENS = {scope: f"{scope}-token-of-at-least-24-characters" for scope in ("read", "write", "admin")}
ADMIN = {"Authorization": f"Bearer {TOKENS['admin']}"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


SEEDED: dict[str, list[Any]] = {}  # path parameter name -> ids of seeded objects (filled by `seeded_app`)


def _app(db: Database) -> tuple[Syncd, FastAPI]:
    tokens = tuple(ApiToken(scope, token, (scope,)) for scope, token in TOKENS.items())
    config = dataclasses.replace(make_config([user("alice", "work")]), api=ApiConfig(tokens=tokens, public_docs=True))
    service = Syncd(config, db)
    return service, create_app(service, metrics=Metrics(db, service.clock))


# The OpenAPI document does not depend on the data: load it from an app over a database that
# is never opened. The requests go to `seeded_app` (schemathesis' ``app=`` transport argument);
# `schemathesis.pytest.from_fixture` would be the natural tool but fails on pytest 9.
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(Database("sqlite://"))[1])


@schema.hook
def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Often point a path parameter at a seeded object, so requests reach real data, not only 404s."""
    if not path_parameters:
        return st.just(path_parameters)
    return st.fixed_dictionaries({
        name: st.sampled_from([value, *SEEDED[name]]) if SEEDED.get(name) else st.just(value)
        for name, value in path_parameters.items()})


@pytest.fixture(scope="module")
def seeded_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('schema') / 'syncd.db'}")
    service, app = _app(db)
    service.prepare()
    with TestClient(app, headers=ADMIN) as client:
        def ok(response: Any) -> dict[str, Any]:
            assert response.status_code < 300, response.text
            return dict(response.json())

        ok(client.put("/v1/users/bob", json={"email": "bob@example.com", "timezone": "America/New_York"}))
        ok(client.put("/v1/teams/support", json={"members": ["alice", "bob"]}))
        rotation = ok(client.post("/v1/rotations", json={"name": "Triage", "members": ["alice"],
                                                         "teams": ["support"]}))
        block = ok(client.post("/v1/users/alice/ooo", json={"date": "2030-01-02", "title": "Seeded"}))
        links = client.get("/v1/links").json()
    SEEDED.update(user_id=["alice", "bob"], team_id=["support"], rotation_id=[rotation["id"]],
                  block_id=[block["id"]], link_id=[link["id"] for link in links])
    yield app
    SEEDED.clear()
    db.dispose()


@pytest.mark.parametrize("scope", list(TOKENS))
@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Case[Any], seeded_app: FastAPI, scope: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKENS[scope]}"}, checks=CHECKS, app=seeded_app)
