"""Connecting a calendar in the browser: the admin call that makes a connect link, and the
pages an agent sees (plain HTML rendered here, no script): the invitation, the hand-over to
the provider's consent page, and the return from it. Every refusal is a page that says what
to do, and one log line."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from syncd.api.context import ApiContext
from syncd.api.schemas import ConnectLinkIn, ConnectLinkOut
from syncd.core.errors import ConfigError, ConsentRefused, RetryLater, SyncdError, UserInputError
from syncd.core.text import first_line
from syncd.core.time import parse_duration
from syncd.service.onboarding import CALLBACK_PATH, CONSENT_TIME, Onboarding

__all__ = ["COOKIE", "router"]

log = logging.getLogger(__name__)

COOKIE = "syncd_connect"  # proves the browser coming back from the provider is the one that left
MAX_TOKEN = 512  # a connect link's token is about 100 characters
MAX_ANSWER = 64 * 1024  # a provider's form_post answer: a code, the state, a few ids
# What the pages may do: their own inline style, a form that posts here and is sent on to the
# provider (form-action covers the redirect), nothing else; never framed, never a referrer.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https:; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_TITLES = {
    "invalid": "This link does not work",
    "expired": "This link has expired",
    "used": "This link has already been used",
    "browser": "Finish in the browser you started in",
    "denied": "Access was not allowed",
    "scope": "Calendar access was not allowed",
    "provider": "The sign-in did not finish",
    "wrong_account": "That is not your helpdesk account's calendar",
    "unavailable": "Connecting calendars is not available right now",
}
_STATUS = {"invalid": 404, "expired": 410, "used": 410, "wrong_account": 403, "unavailable": 503}


class Pages:
    """The HTML pages, rendered with Jinja2 (every value escaped)."""

    def __init__(self, helpdesk: str) -> None:
        self.helpdesk = helpdesk
        self.env = Environment(loader=PackageLoader("syncd.api", "templates"), autoescape=select_autoescape(["html"]))

    def page(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(helpdesk=self.helpdesk, **values)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def refused(self, reason: str, message: str, status: int | None = None) -> HTMLResponse:
        return self.page("refused.html", status or _STATUS.get(reason, 400), reason=reason,
                         title=_TITLES.get(reason, _TITLES["provider"]), message=message)


def router(ctx: ApiContext) -> APIRouter:
    r = APIRouter()
    api = ctx.service.config.api
    pages = Pages(api.helpdesk_name)
    onboarding = ctx.onboarding
    cookie_path = (urlsplit(api.public_url).path if api.public_url else "") + "/connect"

    @r.post("/v1/users/{user_id}/connect-links", tags=["users"], status_code=201, response_model=ConnectLinkOut,
            dependencies=[ctx.admin])
    def make_link(user_id: str, body: ConnectLinkIn) -> dict[str, Any]:
        """A one-time link with which the user connects their calendar on ``account`` in the browser."""
        try:
            expires = parse_duration(body.expires) if body.expires is not None else None
        except ConfigError as exc:
            raise UserInputError(f"expires: {exc}") from exc
        return _onboarding(onboarding).create(body.account, user_id, expires).as_json()

    def finish(answer: dict[str, str], browser: str | None) -> Response:
        response = _shown(pages, lambda: _connected(pages, _onboarding(onboarding).complete(answer, browser)))
        response.delete_cookie(COOKIE, path=cookie_path, secure=True, httponly=True, samesite="none")
        return response

    # Declared before /connect/{token}, which would take "callback" for a token. Google answers
    # with a GET, Microsoft (response_mode=form_post) with a POST from its own page.
    @r.get(CALLBACK_PATH, include_in_schema=False)
    def callback(request: Request) -> Response:
        return finish(dict(request.query_params), request.cookies.get(COOKIE))

    @r.post(CALLBACK_PATH, include_in_schema=False)
    async def callback_posted(request: Request) -> Response:
        body = await _bounded_body(request)
        if body is None:
            return pages.refused("provider", "The answer from the sign-in page was too large.", 413)
        answer = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=32))
        return await run_in_threadpool(finish, answer, request.cookies.get(COOKIE))

    @r.get("/connect/{token}", include_in_schema=False)
    def invitation(token: str) -> Response:
        def show() -> Response:
            invite = _onboarding(onboarding).invitation(_bounded(token))
            return pages.page("connect.html", email=invite.email, provider=invite.provider,
                              calendars=invite.calendars, expires=invite.expires_at.strftime("%Y-%m-%d %H:%M UTC"))
        return _shown(pages, show)

    @r.post("/connect/{token}", include_in_schema=False)
    def go(token: str) -> Response:
        def hand_over() -> Response:
            redirect = _onboarding(onboarding).begin(_bounded(token))
            response = RedirectResponse(redirect.url, status_code=303, headers=_HEADERS)
            # SameSite=None: Microsoft's answer is a cross-site POST, which a Lax cookie would miss.
            # Browsers keep Secure cookies of http://127.0.0.1 and localhost too.
            response.set_cookie(COOKIE, redirect.browser_secret, max_age=int(CONSENT_TIME.total_seconds()),
                                path=cookie_path, secure=True, httponly=True, samesite="none")
            return response
        return _shown(pages, hand_over)

    return r


def _onboarding(onboarding: Onboarding | None) -> Onboarding:
    if onboarding is None:
        raise ConsentRefused("unavailable", "Connecting calendars is not set up on this server.")
    return onboarding


async def _bounded_body(request: Request) -> bytes | None:
    """The request's body, or None past MAX_ANSWER bytes (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ANSWER:
            return None
    return body


def _bounded(token: str) -> str:
    if len(token) > MAX_TOKEN:
        raise ConsentRefused("invalid", "This connect link is not valid. Check that it was copied whole.")
    return token


def _connected(pages: Pages, done: Any) -> Response:
    return pages.page("connected.html", email=done.email, provider=done.provider, calendars=done.calendars)


def _shown(pages: Pages, render: Callable[[], Response]) -> Response:
    """The page ``render`` makes, or the page that says why not (and one log line)."""
    try:
        return render()
    except ConsentRefused as exc:
        log.warning("connect: refused (%s): %s", exc.reason, first_line(exc))
        return pages.refused(exc.reason, str(exc))
    except RetryLater as exc:
        log.warning("connect: provider unavailable: %s", first_line(exc))
        return pages.refused("unavailable", "The calendar provider could not be reached. Try again in a few "
                                            "minutes; your link still works.", 503)
    except ConfigError as exc:
        log.error("connect: %s", first_line(exc))
        return pages.refused("unavailable", "Connecting calendars is not set up correctly on this server. Tell your "
                                            "helpdesk administrator.", 503)
    except Exception as exc:  # noqa: BLE001 - a person reads this page: no traceback, one log line
        log.error("connect: %s", first_line(exc), exc_info=not isinstance(exc, SyncdError))
        return pages.refused("provider", "Something went wrong on our side. Try again; if it happens again, tell "
                                         "your helpdesk administrator.", 500)

