"""Talking HTTP to the CalDAV server: one ``requests`` session per thread with the account's
credentials and CA bundle, requests with one retry on a stale kept-alive connection, answers
read with a size limit (`connectors.responses.read_body`), the XML they carry parsed safely,
and HTTP failures translated into `syncd.core.errors`.

Requests go to the account's server only (its origin: scheme, host and port, `targets`): a
URL elsewhere is refused before it is sent (`OffOrigin`), whether it came from a link, an
href in a server's answer (`ClientMixin._resolve`) or a redirect. Redirects are followed by
hand, on the same origin only, so the credentials never go anywhere else. Proxies come from
the environment (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``), nothing else does
(`ProxySession`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import requests
import requests.utils
from lxml import etree

from connectors.caldav.base import CalDAVBase
from connectors.caldav.targets import describe, same_origin
from connectors.responses import ProxySession, read_body, retry_after, stale_connection
from syncd.core.errors import (
    AuthError,
    ConnectorError,
    NotFound,
    PreconditionFailed,
    RateLimited,
    SyncdError,
    TransientError,
)

__all__ = ["CAL", "CS", "DAV", "MAX_REDIRECTS", "NS", "XML_TYPE", "Answer", "ClientMixin", "OffOrigin",
           "etag_of", "precondition"]

DAV = "DAV:"
CAL = "urn:ietf:params:xml:ns:caldav"
CS = "http://calendarserver.org/ns/"
NS = {"d": DAV, "c": CAL, "cs": CS}
XML_TYPE = "application/xml; charset=utf-8"  # the Content-Type of every PROPFIND and REPORT body
# Safe for hostile servers: no entities, no DTD, no network, no huge trees.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_blank_text=True)
_NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, OSError)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5  # on the account's own server; a redirect elsewhere is never followed


class OffOrigin(ConnectorError):
    """The server pointed the client at another origin (an href, a redirect): refused."""



@dataclass
class Answer:
    """A server's answer, read in full (within the size limit)."""

    status: int
    body: bytes
    headers: Mapping[str, str]

    def xml(self) -> Any:
        try:
            return etree.fromstring(self.body, parser=_PARSER)
        except etree.XMLSyntaxError as exc:
            raise TransientError(f"caldav: the server's answer is not valid XML ({exc}); will retry") from exc


def etag_of(headers: Mapping[str, str]) -> str | None:
    value = headers.get("ETag") or headers.get("etag")
    return str(value) if value else None


def precondition(body: bytes, name: str) -> bool:
    """Whether an error body names the DAV precondition ``name`` (e.g. valid-sync-token)."""
    return name.encode() in body


class ClientMixin(CalDAVBase):
    """HTTP requests to the server, their errors as `syncd.core.errors`."""

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = ProxySession()
            session.verify = self.ca_bundle or True
            if self.username is not None:
                session.auth = (self.username, self.password or "")
            with self._lock:
                self._sessions.append(session)
        return session

    def _resolve(self, base: str, href: str, what: str) -> str:
        """``href`` from a server's answer as an absolute URL; `OffOrigin` if it leaves the
        account's server."""
        try:
            url = urljoin(base, href)
        except ValueError:  # e.g. a broken IPv6 host
            url = ""
        if not same_origin(url, self.url):
            raise OffOrigin(f"caldav: {what}: the server pointed at {describe(url)}, not at the account's server "
                            f"{describe(self.url)}; refused")
        return url

    def _request(self, method: str, url: str, *, body: bytes | str | None = None,
                 headers: Mapping[str, str] | None = None, what: str,
                 ok: Iterable[int] = (200, 201, 204, 207)) -> Answer:
        """One request to the account's server, following its redirects on that server only."""
        data = body.encode() if isinstance(body, str) else body
        sent = dict(headers or {})
        if not same_origin(url, self.url):
            raise OffOrigin(f"caldav: {what}: {describe(url)} is not the account's server {describe(self.url)}; "
                            "refused")
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, data, sent, what)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECTS or not location:
                break
            response.close()
            url = self._resolve(url, location, f"{what}: a redirect")
            if response.status_code == 303:  # see other: read it with GET
                method, data = "GET", None
                sent = {k: v for k, v in sent.items() if k.lower() not in ("content-type", "depth")}
        else:
            response.close()
            raise ConnectorError(f"caldav: {what}: more than {MAX_REDIRECTS} redirects")
        try:
            body = read_body(response, f"caldav: {what}")
        except (*_NETWORK_ERRORS, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientError(f"caldav: {what}: the answer was cut off ({type(exc).__name__}); will retry") from exc
        answer = Answer(response.status_code, body, response.headers)
        if answer.status in ok:
            return answer
        raise self._translate(answer, what)

    def _send(self, method: str, url: str, data: bytes | None, headers: Mapping[str, str],
              what: str) -> requests.Response:
        """One HTTP exchange, never following a redirect; once more on a new connection if a
        kept-alive one was closed by the server meanwhile."""
        for attempt in range(2):
            try:
                return self._session().request(method, url, data=data, headers=dict(headers), timeout=self.timeout,
                                               stream=True, allow_redirects=False)
            except requests.ConnectionError as exc:
                if attempt == 0 and not isinstance(exc, requests.ConnectTimeout) and stale_connection(exc):
                    continue  # a kept-alive connection the server had closed: once more on a new one
                raise TransientError(f"caldav: {what}: cannot reach the server ({type(exc).__name__}); "
                                     "will retry") from exc
            except _NETWORK_ERRORS as exc:
                raise TransientError(f"caldav: {what}: {type(exc).__name__}; will retry") from exc
        raise AssertionError("unreachable")

    def _translate(self, answer: Answer, what: str) -> SyncdError:
        status = answer.status
        text = f"caldav: {what}: HTTP {status}"
        if status == 401:
            return AuthError(f"{text}: the server refused the username or password")
        if status == 403:
            return AuthError(f"{text}: access denied to this calendar")
        if status in (404, 410):
            return NotFound(f"{text}: not found")
        if status == 412:
            return PreconditionFailed(f"{text}: changed since it was read")
        if status in (429, 503):
            return RateLimited(f"{text}: the server asks to slow down", retry_after=retry_after(answer.headers))
        if status >= 500 or status == 408:
            return TransientError(f"{text}: the server is having trouble; will retry")
        return ConnectorError(f"{text}: request refused")

    def _close_sessions(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
