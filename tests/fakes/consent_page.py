"""What the fakes' browser side of OAuth 2.0 shares: the consent, error and form-post pages (plain HTML without
JavaScript, every echoed value escaped), the authorization requests and codes they keep, the PKCE check, redirect
URLs back to the client, and the RSA key that signs ID tokens.

The Google and Microsoft fakes phrase their errors and validate their parameters their own way (see
``tests/fakes/google_calendar/consent.py`` and ``tests/fakes/graph/consent.py``); this module only holds the shapes
both use.  A consent page is a form with a text input ``id="email"`` (prefilled from ``login_hint``), the scopes
listed in ``<ul id="scopes">``, a hidden ``request_id`` naming the request kept on the server, and two submit buttons
``id="allow"`` and ``id="deny"`` (``name="decision"``), so a browser (or Playwright, or a plain POST) can answer it.
``read_form`` reads such a form back for tests that play the browser without one.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

#: RFC 7636: a code verifier (and a plain challenge) is 43-128 characters from the unreserved set
_PKCE_VALUE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def html_headers() -> dict[str, str]:
    """The headers of every page the fakes render: HTML that no cache keeps (it may carry a request id)."""
    return {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# ---------------------------------------------------------------------------------------------- pages
def _document(title: str, body: str) -> bytes:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{escape(title)}</title>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    ).encode()


def consent_page(*, title: str, service: str, client: str, action: str, request_id: str, email: str,
                 scopes: Iterable[str], problem: str = "") -> bytes:
    """The page that asks the user who they are and whether ``client`` may have ``scopes``."""
    items = "\n".join(f"<li>{escape(scope)}</li>" for scope in scopes)
    notice = f'<p id="problem" role="alert">{escape(problem)}</p>\n' if problem else ""
    body = (
        f"<h1>{escape(service)}</h1>\n"
        f"<p>The application <strong id=\"client\">{escape(client)}</strong> asks for access to your account.</p>\n"
        f"{notice}"
        f'<form method="post" action="{escape(action)}">\n'
        f'<input type="hidden" name="request_id" value="{escape(request_id)}">\n'
        '<p><label for="email">Email address</label>\n'
        f'<input type="text" id="email" name="email" value="{escape(email)}" autocomplete="username" '
        'spellcheck="false"></p>\n'
        f'<p>If you allow it, the application may use:</p>\n<ul id="scopes">\n{items}\n</ul>\n'
        '<p><button type="submit" id="allow" name="decision" value="allow">Allow</button>\n'
        '<button type="submit" id="deny" name="decision" value="deny">Deny</button></p>\n'
        "</form>"
    )
    return _document(title, body)


def error_page(*, title: str, heading: str, message: str, details: Mapping[str, str] | None = None) -> bytes:
    """A page that tells the user the request cannot go on (the browser is not sent back to the client)."""
    rows = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in (details or {}).items())
    listing = f'\n<dl id="details">\n{rows}\n</dl>' if rows else ""
    body = f'<h1 id="error">{escape(heading)}</h1>\n<p id="message">{escape(message)}</p>{listing}'
    return _document(title, body)


def form_post_page(*, title: str, action: str, fields: Sequence[tuple[str, str]]) -> bytes:
    """The ``response_mode=form_post`` answer: the response as hidden fields the user sends on with ``#continue``
    (the page runs no script, so nothing is submitted on its own)."""
    hidden = "\n".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields)
    body = (
        f'<form method="post" action="{escape(action)}">\n{hidden}\n'
        "<p>Signing in is done; continue to return to the application.</p>\n"
        '<p><button type="submit" id="continue">Continue</button></p>\n</form>'
    )
    return _document(title, body)


# ---------------------------------------------------------------------------------------------- reading a page
@dataclass
class PageForm:
    """The first form of a page as a browser sees it: where it posts, its named fields and its buttons."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (name, value)

    def submit(self, button_id: str, **typed: str) -> dict[str, str]:
        """The form data a browser sends when ``button_id`` is pressed after the user typed ``typed``."""
        name, value = self.buttons[button_id]
        data = {**self.fields, **typed}
        if name:
            data[name] = value
        return data


class _FormReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: PageForm | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = PageForm(values.get("action", ""), values.get("method", "get").lower())
        elif self.form is None or self._done:
            return
        elif tag == "input" and values.get("name") and values.get("type", "text") not in ("submit", "button"):
            self.form.fields[values["name"]] = values.get("value", "")
        elif tag == "button" and values.get("type", "submit") == "submit":
            self.form.buttons[values.get("id", "")] = (values.get("name", ""), values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.form is not None:
            self._done = True


def read_form(page: str) -> PageForm:
    """The first form in ``page`` (``ValueError`` if there is none), for tests that act as the browser."""
    reader = _FormReader()
    reader.feed(page)
    reader.close()
    if reader.form is None:
        raise ValueError("the page has no form")
    return reader.form


# ---------------------------------------------------------------------------------------------- parameters
def single_values(raw: str) -> tuple[dict[str, str], list[str]]:
    """A query or form body as a dict, and the names that came more than once (OAuth forbids repeats)."""
    parsed = parse_qs(raw, keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}, sorted(k for k, v in parsed.items() if len(v) > 1)


def redirect_url(redirect_uri: str, params: Sequence[tuple[str, str]], *, fragment: bool = False) -> str:
    """``redirect_uri`` with ``params`` added to its query (or as its fragment), each value percent-encoded."""
    encoded = urlencode(params, quote_via=quote)
    base = redirect_uri.partition("#")[0]
    if fragment:
        return f"{base}#{encoded}"
    return f"{base}{'&' if '?' in base else '?'}{encoded}"


def pkce_value_ok(value: str) -> bool:
    return bool(_PKCE_VALUE.fullmatch(value))


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """Whether ``verifier`` answers ``challenge`` made with ``method`` (``S256`` or ``plain``), as RFC 7636 says."""
    if not pkce_value_ok(verifier):
        return False
    if method == "S256":
        expected = b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    else:
        expected = verifier
    return hmac.compare_digest(expected, challenge)


def left_half_hash(token: str) -> str:
    """OpenID Connect's ``at_hash``/``c_hash`` for RS256: the left half of the SHA-256 of ``token``, base64url."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest()[:16])


# ---------------------------------------------------------------------------------------------- bookkeeping
@dataclass(frozen=True)
class ConsentRecord:
    """One consent the user gave on a fake's page: who (the email typed), to which client, for which scopes."""

    email: str
    client_id: str
    scopes: tuple[str, ...]


@dataclass
class AuthorizationRequest:
    """A validated authorization request, kept on the server while its consent page is open."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str = "plain"
    login_hint: str = ""
    redirect_uri_sent: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # provider specifics: access_type, response_mode, ...


@dataclass
class IssuedCode:
    """An authorization code: the request it answers, the user and scopes consented, and what its redemption
    issued (so a replay can revoke it)."""

    request: AuthorizationRequest
    email: str
    granted: tuple[str, ...]
    issued_at: float
    redeemed: bool = False
    access_tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- signing
class SigningKey:
    """The RSA key (2048 bits) and self-signed certificate a fake signs its ID tokens with.

    Made on first use (key generation takes a noticeable fraction of a second, and most tests never ask for an ID
    token), then kept for the fake's lifetime, so every token and every published key agree.  ``kid_style`` is
    ``hex`` (Google's key ids) or ``b64url`` (Entra's, equal to the certificate's ``x5t``).
    """

    def __init__(self, common_name: str, *, kid_style: str = "hex") -> None:
        self._common_name = common_name
        self._kid_style = kid_style
        self._lock = threading.Lock()
        self._material: tuple[Any, Any] | None = None

    def _key_and_certificate(self) -> tuple[Any, Any]:
        with self._lock:
            if self._material is None:
                self._material = _make_key_and_certificate(self._common_name)
            return self._material

    @property
    def certificate_der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return bytes(self._key_and_certificate()[1].public_bytes(serialization.Encoding.DER))

    @property
    def certificate_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return str(self._key_and_certificate()[1].public_bytes(serialization.Encoding.PEM).decode())

    @property
    def kid(self) -> str:
        thumbprint = hashlib.sha1(self.certificate_der).digest()  # noqa: S324 - a key id, not a security check
        return thumbprint.hex() if self._kid_style == "hex" else b64url(thumbprint)

    def public_jwk(self) -> dict[str, str]:
        """The public key's JWK members ``kty``, ``n``, ``e`` (callers add ``kid``, ``use``, ``alg``, ...)."""
        numbers = self._key_and_certificate()[0].public_key().public_numbers()
        return {"kty": "RSA", "n": b64url(_int_bytes(numbers.n)), "e": b64url(_int_bytes(numbers.e))}

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str:
        """``claims`` as an RS256 JWT with this key's ``kid`` (and ``headers``) in its header."""
        import jwt  # PyJWT

        return jwt.encode(dict(claims), self._key_and_certificate()[0], algorithm="RS256",
                          headers={"typ": "JWT", "kid": self.kid, **(headers or {})})


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _make_key_and_certificate(common_name: str) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, certificate
