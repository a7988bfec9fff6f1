"""The HTTP API: how the helpdesk and its assignment engine talk to syncd.

- `app`: the application, its routers wired to the service;
- `routes`: one router per resource;
- `auth`: bearer tokens and scopes; `errors`: the one error body; `schemas`: the bodies;
- `context`: what the routers are built with.
"""

from __future__ import annotations

from syncd.api.app import create_app

__all__ = ["create_app"]
