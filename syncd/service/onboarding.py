"""Agents connect their own calendars in the browser.

An administrator (or syncd itself, when a grant is lost) makes a one-time **connect link** for
a user and an account. Its URL, under ``api.public_url``, is signed (itsdangerous, with a key
made once per deployment and kept in the database) and names the row that makes it work once
and expire. The agent opens it, sees what will be connected, and is sent to the provider's
consent page (`connectors.base.ConsentFlow`: OAuth 2.0 authorization code with PKCE). When the
browser comes back, the OAuth ``state`` finds the consent under way, a cookie set when it
started proves it is the same browser, and the account that consented must be the user's own:
only then is the refresh token stored, exactly as ``syncd credentials set`` stores it, and the
user's links on that account polled at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from connectors.base import AccountSettings, ConsentFlow, Provider
from connectors.registry import PROVIDERS
from store import connect, links, settings, users
from store.db import Database, Transaction
from store.models import ConnectLinkRow, UserRow
from syncd.config import AccountConfig, Config
from syncd.core.errors import ConfigError, ConsentRefused, NotFoundInStore, UserInputError
from syncd.core.time import format_utc
from syncd.service.credentials import CredentialVault

__all__ = ["CALLBACK_PATH", "DEFAULT_EXPIRY", "MAX_EXPIRY", "Connected", "ConnectLink", "Invitation", "Onboarding",
           "Redirect"]

log = logging.getLogger(__name__)

CALLBACK_PATH = "/connect/callback"  # register <api.public_url>/connect/callback with the provider
DEFAULT_EXPIRY = timedelta(days=7)
MAX_EXPIRY = timedelta(days=30)
CONSENT_TIME = timedelta(minutes=15)  # from the button to the browser's return
RENEW_BEFORE = timedelta(days=1)  # a renewal link closer than this to expiring is replaced
KEEP_USED = timedelta(days=30)  # used and expired links are forgotten after this
_KEY = "connect_link_key"
_SALT = "syncd connect link"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ConnectLink:
    url: str
    expires_at: datetime
    user_id: str
    email: str
    account: str

    def as_json(self) -> dict[str, Any]:
        return {"url": self.url, "expires_at": format_utc(self.expires_at), "user": self.user_id,
                "email": self.email, "account": self.account}


@dataclass(frozen=True)
class Invitation:
    """What the connect page shows."""

    email: str
    account: str
    provider: str  # as people call it
    calendars: list[str]
    helpdesk: str
    expires_at: datetime


@dataclass(frozen=True)
class Redirect:
    url: str  # the provider's consent page
    browser_secret: str  # for the cookie that proves the browser coming back is this one


@dataclass(frozen=True)
class Connected:
    email: str
    account: str
    provider: str
    calendars: list[str]
    helpdesk: str


@dataclass(frozen=True)
class _Flow:
    """A consent taken off its link when the browser came back (its state works once)."""

    link_id: int
    user_id: str
    email: str
    account: str
    kept: Mapping[str, Any]


class Onboarding:
    def __init__(self, config: Config, db: Database, vault: CredentialVault, clock: Callable[[], datetime],
                 wake: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.db = db
        self.vault = vault
        self.clock = clock
        self.wake = wake  # polls the links whose grant just arrived
        self._serializer: URLSafeSerializer | None = None

    # -- making links ------------------------------------------------------------------------
    def create(self, account: str, user: str, expires: timedelta | None = None) -> ConnectLink:
        """A one-time connect link for ``user`` (an id or email) and ``account``."""
        expires = DEFAULT_EXPIRY if expires is None else expires
        if not timedelta(minutes=5) <= expires <= MAX_EXPIRY:
            raise UserInputError(f"a connect link expires after 5 minutes to {MAX_EXPIRY.days} days; got {expires}")
        if account not in self.config.accounts:
            raise NotFoundInStore(f"no account {account!r} in the config file")
        self._flow_of(self._account(account))

        def work(session: Transaction) -> ConnectLink:
            row = users.by_id_or_email(session, user)
            if row is None:
                raise NotFoundInStore(f"no user {user!r} (give a user id or email)")
            if not links.calendars_of(session, row.id, account):
                raise UserInputError(f"{row.email} has no calendar on account {account!r}; link one first "
                                     "(the config file's calendars, or PUT /v1/users/{id})")
            return self._add(session, row, account, "invite", expires)
        return self.db.run(work, what="making a connect link")

    def renewal(self, session: Transaction, user: UserRow, account: str) -> ConnectLink | None:
        """A link for a user whose grant was lost: the one already made while it stays valid a
        while, else a new one; None where syncd cannot make one (no ``api.public_url``, or the
        account has no browser consent)."""
        if not self.can_connect(account):
            return None
        now = self.clock()
        row = connect.usable(session, user.id, account, now)
        if row is not None and row.expires_at - now > RENEW_BEFORE:
            return ConnectLink(self._url(session, row), row.expires_at, user.id, user.email, account)
        return self._add(session, user, account, "renewal", DEFAULT_EXPIRY)

    def with_connect_urls(self, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`Syncd.links` rows, each link that needs a grant with its usable connect link's URL
        (``connect_url``; None when there is none). Nothing is made here: links are made when
        a grant is lost, and renewed while it stays lost."""
        pairs = [(row["user"], row["account"]) for row in listed if row["state"] == "reauth_required"]
        urls: dict[tuple[str, str], str] = {}
        if pairs and self.config.api.public_url is not None:
            def read(session: Transaction) -> dict[tuple[str, str], str]:
                return {pair: self._url(session, row)
                        for pair, row in connect.usable_for(session, pairs, self.clock()).items()}
            urls = self.db.run(read, what="reading connect links")
        return [{**row, "connect_url": urls.get((row["user"], row["account"]))} for row in listed]

    def can_connect(self, account: str) -> bool:
        try:
            self._flow_of(self._account(account))
        except (ConfigError, UserInputError):
            return False
        return True

    def prune(self) -> int:
        return self.db.run(lambda s: connect.prune(s, self.clock() - KEEP_USED), what="forgetting old connect links")

    def _add(self, session: Transaction, user: UserRow, account: str, purpose: str,
             expires: timedelta) -> ConnectLink:
        now = self.clock()
        row = connect.add(session, user.id, account, purpose, now, now + expires)
        return ConnectLink(self._url(session, row), row.expires_at, user.id, user.email, account)

    # -- signing -----------------------------------------------------------------------------
    def _signer(self, session: Transaction) -> URLSafeSerializer:
        if self._serializer is None:
            key = settings.made_once(session, _KEY, lambda: {"key": secrets.token_urlsafe(32)}, self.clock())
            self._serializer = URLSafeSerializer(str(key["key"]), salt=_SALT)
        return self._serializer

    def _url(self, session: Transaction, row: ConnectLinkRow) -> str:
        token = self._signer(session).dumps([row.id, row.user_id, row.account, int(row.expires_at.timestamp())])
        return f"{self.config.api.public_url}/connect/{token}"

    def _link(self, session: Transaction, token: str, *, lock: bool = False) -> tuple[ConnectLinkRow, UserRow]:
        """The link a token names, if it may still be used."""
        invalid = ConsentRefused("invalid", "This connect link is not valid. Check that it was copied whole, or ask "
                                            "your helpdesk administrator for a new one.")
        try:
            link_id, user_id, account, expires = self._signer(session).loads(token)
        except (BadSignature, ValueError, TypeError) as exc:
            raise invalid from exc
        row = connect.get(session, int(link_id), lock=lock)
        if row is None or (row.user_id, row.account, int(row.expires_at.timestamp())) != (user_id, account, expires):
            raise invalid
        user = users.by_id(session, row.user_id)
        if user is None:
            raise invalid
        if row.used_at is not None:
            raise ConsentRefused("used", "This connect link has already been used. If your calendar still needs "
                                         "connecting, ask your helpdesk administrator for a new link.")
        if row.expires_at <= self.clock():
            raise ConsentRefused("expired", "This connect link has expired. Ask your helpdesk administrator for a "
                                            "new one.")
        return row, user

    # -- the browser's visit -----------------------------------------------------------------
    def invitation(self, token: str) -> Invitation:
        def read(session: Transaction) -> Invitation:
            row, user = self._link(session, token)
            account = self._account(row.account)
            return Invitation(user.email, row.account, _title(self._provider(account)),
                              links.calendars_of(session, user.id, row.account), self.config.api.helpdesk_name,
                              row.expires_at)
        return self.db.run(read, what="reading a connect link")

    def begin(self, token: str) -> Redirect:
        """Start the consent: the provider's URL, and the secret the browser must bring back."""
        row, user = self.db.run(lambda s: self._link(s, token), what="reading a connect link")
        account = self._account(row.account)
        state, browser = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        request = self._flow_of(account).begin(self._settings(account), self._redirect_uri(), state, user.email)

        def work(session: Transaction) -> None:
            current, _user = self._link(session, token, lock=True)
            # A newer click replaces a consent under way: only the last one can finish.
            current.state_digest, current.browser_digest = _digest(state), _digest(browser)
            current.flow, current.flow_started_at = dict(request.kept), self.clock()
        self.db.run(work, what="starting a consent")
        return Redirect(request.url, browser)

    def complete(self, answer: Mapping[str, str], browser_secret: str | None) -> Connected:
        """Finish the consent the browser came back from; `ConsentRefused` says why not."""
        flow = self._take(answer.get("state") or "", browser_secret or "")
        account = self._account(flow.account)
        provider = self._provider(account)
        grant = self._flow_of(account).complete(self._settings(account), self._redirect_uri(), flow.kept, answer)
        if flow.email.lower() not in {email.lower() for email in grant.emails}:
            shown = grant.emails[0] if grant.emails else "another account"
            raise ConsentRefused("wrong_account", f"You signed in to {_title(provider)} as {shown}, but this link is "
                                                  f"for {flow.email}. Nothing was stored. Open the link again and "
                                                  f"sign in as {flow.email}.")
        self.vault.store(flow.account, flow.user_id, grant.refresh_token)

        def work(session: Transaction) -> list[str]:
            connect.used(session, flow.user_id, flow.account, self.clock())
            return links.calendars_of(session, flow.user_id, flow.account)
        calendars = self.db.run(work, what="closing a connect link")
        self.wake()
        log.info("connect link %d: %s connected account %s", flow.link_id, flow.user_id, flow.account)
        return Connected(flow.email, flow.account, _title(provider), calendars, self.config.api.helpdesk_name)

    def _take(self, state: str, browser_secret: str) -> _Flow:
        """The consent this state belongs to, taken off its link: a state works once."""
        if not state:
            raise ConsentRefused("invalid", "This page was opened without a sign-in under way. Open your connect "
                                            "link again.")

        def work(session: Transaction) -> _Flow:
            row = connect.by_state(session, _digest(state))
            if row is None or row.flow is None or row.flow_started_at is None:
                raise ConsentRefused("invalid", "This sign-in has already finished, or a newer one was started. "
                                                "Open your connect link again.")
            if not hmac.compare_digest(row.browser_digest or "", _digest(browser_secret)):
                raise ConsentRefused("browser", "This sign-in was started in another browser (or its cookie was "
                                                "blocked). Open your connect link again in this browser.")
            now = self.clock()
            if row.flow_started_at + CONSENT_TIME <= now:
                raise ConsentRefused("expired", "The sign-in took longer than "
                                                f"{CONSENT_TIME.seconds // 60} minutes. Open your connect link again.")
            user = users.by_id(session, row.user_id)
            if row.used_at is not None or user is None:
                raise ConsentRefused("used", "This connect link has already been used.")
            if row.expires_at <= now:
                raise ConsentRefused("expired", "This connect link expired while you were signing in. Ask your "
                                                "helpdesk administrator for a new one.")
            flow = _Flow(row.id, row.user_id, user.email, row.account, dict(row.flow))
            row.state_digest = row.browser_digest = row.flow = row.flow_started_at = None
            return flow
        return self.db.run(work, what="finishing a consent")

    # -- accounts ----------------------------------------------------------------------------
    def _account(self, name: str) -> AccountConfig:
        account = self.config.accounts.get(name)
        if account is None:
            raise ConsentRefused("unavailable", f"The calendar account {name!r} is no longer set up here. Ask your "
                                                "helpdesk administrator for a new link.")
        return account

    def _provider(self, account: AccountConfig) -> Provider:
        provider = PROVIDERS.get(account.provider)
        if provider is None:
            raise ConfigError(f"accounts.{account.name}: provider {account.provider!r} is not available")
        return provider

    def _flow_of(self, account: AccountConfig) -> ConsentFlow:
        """The account's consent flow, once the config can serve one."""
        if self.config.api.public_url is None:
            raise ConfigError("set api.public_url (the address at which agents' browsers reach syncd) to make "
                              "connect links")
        provider = self._provider(account)
        if provider.consent is None:
            raise UserInputError(f"accounts.{account.name} ({account.provider}) has no browser consent; its "
                                 "credentials are set in the config file")
        flow = provider.consent()
        flow.check(self._settings(account))
        return flow

    def _settings(self, account: AccountConfig) -> AccountSettings:
        return AccountSettings(account.name, account.options, account.ooo_rules)

    def _redirect_uri(self) -> str:
        return f"{self.config.api.public_url}{CALLBACK_PATH}"


def _title(provider: Provider) -> str:
    return provider.title or provider.name
