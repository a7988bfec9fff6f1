"""The calendar connector interface: all the sync engine knows about calendars.

The values a connector takes and returns (`SyncWindow`, `RemoteEvent`, `ChangeSet` ...) and
their terms (calendar, event id, etag, cursor, block id) are defined in `syncd.core.calendars`.

Contract (tested for every connector by ``tests/connector_contract.py``)
----------------------------------------------------------------------
- `changes` returns only OOO events (as recognised by the provider's rules). With
  ``full=True`` the change set lists every OOO event that overlaps the window and the
  caller treats linked events missing from it as deleted; otherwise it lists new or changed
  events and the ids of removed ones. An event that stops being OOO is reported as removed.
- `create` is idempotent per block id: creating again for the same block returns the
  existing event rather than a second one.
- `update` and `delete` raise `PreconditionFailed` when the etag is stale; `delete` of an
  event that is already gone succeeds; `update` of a missing event raises `NotFound`.
- Errors are translated at the boundary into `syncd.core.errors`: `AuthError`,
  `RateLimited`, `TransientError`, `CursorExpired`, `PreconditionFailed`, `NotFound`,
  `ConfigError`. No database access, no global state.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from syncd.core.calendars import ChangeSet, EventDraft, OooRules, PollRequest, RemoteEvent, SyncWindow, Watch
from syncd.core.errors import ConfigError, UserInputError
from syncd.core.hours import CalendarHours
from syncd.core.options import Option

__all__ = ["AccountSettings", "BadPush", "CalendarConnector", "ConsentFlow", "ConsentRequest", "Grant", "Provider",
           "PushNotice", "PushReceiver", "PushReply", "PushRequest", "RefreshTokens", "WorkingHoursSource"]


class CalendarConnector(abc.ABC):
    """One provider. Instances are made per account and may be shared between threads
    only if the implementation says so; the daemon gives each sync its own call sequence."""

    provider: str = ""

    @abc.abstractmethod
    def changes(self, calendar: str, cursor: str | None, window: SyncWindow) -> ChangeSet:
        """OOO events changed since ``cursor`` (all of them when ``cursor`` is None).

        Raises `CursorExpired` when the cursor is no longer accepted (call again with None).
        """

    def changes_many(self, requests: Sequence[PollRequest]) -> list[ChangeSet | Exception]:
        """`changes` for many calendars at once, each answer a change set or the error it raised.

        Providers with batch endpoints list many calendars per HTTP request; the default asks
        one by one. One calendar's failure never affects the others' answers."""
        return [self.changes_or_error(request) for request in requests]

    def changes_or_error(self, request: PollRequest) -> ChangeSet | Exception:
        """`changes` for one request, its error returned rather than raised."""
        try:
            return self.changes(request.calendar, request.cursor, request.window)
        except Exception as exc:  # noqa: BLE001 - handed to the caller, link by link
            return exc

    def address(self, owner: str, calendar: str) -> str:
        """The connector's name for ``owner``'s (an email) calendar ``calendar`` (from the config).

        Providers that act as each user (Google, Microsoft Graph) put the user in it."""
        return calendar

    #: The kind of push channel `watch` opens ("" when the provider has none).
    push_kind: str = ""

    def watch(self, calendar: str, channel_id: str, token: str, address: str, ttl: timedelta) -> Watch:
        """Ask the provider to POST to ``address`` when ``calendar`` changes, carrying ``token``."""
        raise ConfigError(f"{self.provider or 'this'} calendars have no push notifications")

    def stop_watch(self, calendar: str, channel_id: str, resource_id: str) -> None:  # noqa: B027 - optional
        """Close a channel opened by `watch`; an unknown channel is not an error."""

    @abc.abstractmethod
    def get(self, calendar: str, event_id: str) -> RemoteEvent | None:
        """The event now, or None if it is gone or no longer OOO."""

    @abc.abstractmethod
    def find_by_block_id(self, calendar: str, block_id: str) -> RemoteEvent | None:
        """The event syncd wrote for ``block_id``, if any (recovers from a crash after create)."""

    @abc.abstractmethod
    def create(self, calendar: str, draft: EventDraft) -> RemoteEvent:
        """Write a new OOO event carrying the block id; idempotent per block id."""

    @abc.abstractmethod
    def update(self, calendar: str, event_id: str, draft: EventDraft, etag: str) -> RemoteEvent:
        """Replace the event's OOO content. Raises `PreconditionFailed`, `NotFound`."""

    @abc.abstractmethod
    def delete(self, calendar: str, event_id: str, etag: str | None) -> None:
        """Remove the event (one occurrence, for an expanded series). Missing is success."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sockets and files."""


@runtime_checkable
class WorkingHoursSource(Protocol):
    """An optional capability: a connector whose calendars keep the owner's working hours.

    ``calendars`` are connector addresses (`CalendarConnector.address`). Each answer is the
    hours found, None when the calendar keeps none (the config's hours apply, no error), or
    the error reading them raised: `BadEventData` for hours that cannot be read (an unknown
    zone, an end before the start, a hostile recurrence), or any of the usual connector
    errors. One calendar's failure never affects the others' answers."""

    def working_hours_many(self, calendars: Sequence[str], now: datetime) -> list[CalendarHours | None | Exception]:
        ...


# -- what a provider's folder declares ------------------------------------------------------------


class RefreshTokens(Protocol):
    """Per-user OAuth refresh tokens, kept encrypted by syncd, for providers that act as each user."""

    def refresh_token(self, account: str, subject: str) -> str | None: ...

    def replace_refresh_token(self, account: str, subject: str, token: str) -> None:
        """Keep the token a provider issued in place of the one just used (Entra ID rotates them)."""


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """What a connector is built from: one account of the config file, its options checked."""

    name: str
    options: Mapping[str, Any]
    ooo_rules: OooRules = field(default_factory=OooRules)
    max_occurrences: int = 1000  # per recurring series, inside the sync window
    refresh_tokens: RefreshTokens | None = None


@dataclass(frozen=True, slots=True)
class PushRequest:
    """A provider's HTTP notification as it arrived at ``/v1/hooks/<provider>``."""

    headers: Mapping[str, str]  # names in lower case
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class PushNotice:
    """One notification: which channel, the token it carries, and what it says."""

    channel_id: str
    token: str | None
    state: str | None = None  # "sync" is the handshake after opening: nothing changed yet
    resource_id: str | None = None
    lifecycle: str | None = None  # a lifecycle event about the channel itself, not a change


@dataclass(frozen=True, slots=True)
class PushReply:
    """What a request carried, and how to answer it."""

    status: int  # the answer when the notices are taken
    text: str = ""  # its plain-text body (a validation handshake echoes a token)
    notices: tuple[PushNotice, ...] = ()
    refused_status: int | None = None  # the answer when a notice is not ours; None: ``status`` all the same


class BadPush(UserInputError):
    """A request to a push hook that is not a notification of this provider at all."""


class PushReceiver(Protocol):
    def parse(self, request: PushRequest) -> PushReply:
        """The notices in ``request``; raises `BadPush` for a request that is none."""


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """Where to send a browser to grant syncd access, and what syncd keeps until it comes back."""

    url: str
    kept: Mapping[str, Any]  # JSON: the PKCE verifier, a nonce ...; never sent to the browser


@dataclass(frozen=True, slots=True)
class Grant:
    """What a completed consent gives: a refresh token, and who granted it."""

    refresh_token: str = field(repr=False)
    emails: tuple[str, ...]  # the addresses the provider vouches for (an ID token's, the mailbox's)


class ConsentFlow(Protocol):
    """The OAuth 2.0 authorization-code flow with PKCE of a provider whose accounts act as each
    user. Errors: `ConsentRefused` for what the person at the browser must hear (denied, a
    scope left out, a code the provider refused), `ConfigError`, `TransientError`."""

    def check(self, account: AccountSettings) -> None:
        """Raises `ConfigError` when this account's settings cannot take a consent."""

    def begin(self, account: AccountSettings, redirect_uri: str, state: str, login_hint: str) -> ConsentRequest:
        """The provider's authorization URL for this account, carrying ``state``."""

    def complete(self, account: AccountSettings, redirect_uri: str, kept: Mapping[str, Any],
                 answer: Mapping[str, str]) -> Grant:
        """The grant, from the query the provider redirected back with (``code`` or ``error``)."""


def _no_check(options: Mapping[str, Any]) -> None:
    """No rule across keys."""


def _any_calendar(options: Mapping[str, Any], calendar: str) -> None:
    """Any calendar will do."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A calendar provider, as its folder under ``connectors/`` declares it to the registry."""

    name: str
    build: Callable[[AccountSettings], CalendarConnector]
    options: tuple[Option, ...] = ()
    check: Callable[[Mapping[str, Any]], None] = _no_check  # raises OptionError for a rule across keys
    ooo_rules: bool = False  # operators' iCalendar OOO rules (categories, keywords) apply to it
    default_calendar: str | None = None  # a link that names no calendar gets this one
    push: PushReceiver | None = None  # how its push notifications read, if it has any
    # (the account's options, a link's calendar): raises OptionError("calendar", <one line>) for
    # a calendar the account must not be aimed at; asked before anything is fetched
    check_calendar: Callable[[Mapping[str, Any], str], None] = _any_calendar
    title: str = ""  # what people call it ("Google Calendar"); the name when empty
    # how an agent grants access in the browser, where they can (made when first needed)
    consent: Callable[[], ConsentFlow] | None = None
