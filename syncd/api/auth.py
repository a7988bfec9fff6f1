"""Bearer tokens and their scopes: ``read`` ⊂ ``write`` ⊂ ``admin``.

Tokens come from the config file and are kept only as SHA-256 digests; a presented token is
compared with every known one, so the time taken says nothing about which was close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Header

from syncd.api.errors import ApiError
from syncd.config import ApiConfig

__all__ = ["SCOPE_RANK", "Caller", "TokenBook", "caller_of", "scope_check"]

SCOPE_RANK = {"read": 0, "write": 1, "admin": 2}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from: the token's name, and the highest scope it carries."""

    name: str
    rank: int

    def may(self, scope: str) -> bool:
        return self.rank >= SCOPE_RANK[scope]


class TokenBook:
    """The configured bearer tokens, kept as SHA-256 digests only."""

    def __init__(self, api: ApiConfig) -> None:
        self._tokens = [(hashlib.sha256(t.token.encode()).digest(), t.name, t.scopes) for t in api.tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def caller(self, authorization: str | None) -> Caller | None:
        """Who sent ``authorization`` (the header's value), if it is a known bearer token."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        found = self.lookup(authorization[7:].strip())
        if found is None:
            return None
        return Caller(found[0], max((SCOPE_RANK.get(s, -1) for s in found[1]), default=-1))

    def lookup(self, presented: str) -> tuple[str, tuple[str, ...]] | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, name, scopes in self._tokens:  # compare with every token: timing says nothing
            if hmac.compare_digest(known, digest):
                found = (name, scopes)
        return found


def caller_of(tokens: TokenBook) -> Callable[..., Awaitable[Caller | None]]:
    """A dependency that tells who the caller is, if they sent a known token, and refuses nobody."""
    async def who(authorization: Annotated[str | None, Header()] = None) -> Caller | None:
        return tokens.caller(authorization)
    return who


def scope_check(tokens: TokenBook, needed: str) -> Callable[..., Awaitable[Caller]]:
    """A dependency that lets a request through with a token of ``needed`` scope (or more);
    it answers who the caller is."""
    async def check(authorization: Annotated[str | None, Header()] = None) -> Caller:  # async: no thread hop
        if not tokens:
            raise ApiError(401, "unauthorized", "no API tokens are configured; add [api].tokens to the config")
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
        caller = tokens.caller(authorization)
        if caller is None:
            raise ApiError(401, "unauthorized", "unknown token")
        if not caller.may(needed):
            raise ApiError(403, "forbidden", f"token {caller.name!r} lacks the {needed!r} scope")
        return caller
    return check
