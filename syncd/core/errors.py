"""The one error hierarchy of syncd.

Subtrees are named by who must act::

    SyncdError
    ├── RetryLater                 the system retries by itself
    │   ├── TransientError         5xx, timeouts, a locked database
    │   └── RateLimited            the provider asked us to slow down (retry_after)
    ├── ReauthRequired             a person must log in again
    │   └── AuthError              credentials refused by the provider
    ├── ConfigError                the operator must fix the config file
    ├── UserInputError             the caller asked for something invalid
    │   ├── NotFoundInStore        no such user / block
    │   ├── AlreadyExists          another one has that (an email is one user's)
    │   ├── NotAllowed             the caller may not do this (a token's scope)
    │   ├── StaleRevision          If-Match on an older revision of a block
    │   ├── ConfirmationRequired   "set available" while an OOO block covers now
    │   └── ConsentRefused         a browser consent did not end in access (denied, expired,
    │                              another account): the person at the browser reads why
    ├── ConnectorError             a calendar said no to one operation
    │   ├── CursorExpired          the sync cursor is no longer valid: full resync
    │   ├── PreconditionFailed     etag mismatch: re-read and re-merge
    │   ├── NotFound               the event is gone
    │   └── BadEventData           one malformed event; skipped, the rest go on
    └── Bug                        an invariant broke: a traceback is warranted

The CLI and the API show the first lines of this tree as one line of text; only `Bug`
(and exceptions outside the tree) carry a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

__all__ = [
    "AlreadyExists",
    "AuthError",
    "BadEventData",
    "Bug",
    "ConfigError",
    "ConfirmationRequired",
    "ConnectorError",
    "ConsentRefused",
    "CursorExpired",
    "NotAllowed",
    "NotFound",
    "NotFoundInStore",
    "PreconditionFailed",
    "RateLimited",
    "ReauthRequired",
    "RetryLater",
    "StaleRevision",
    "SyncdError",
    "TransientError",
    "UserInputError",
]


class SyncdError(Exception):
    """Root of every error syncd raises on purpose."""


class RetryLater(SyncdError):
    """A failure that goes away by itself; the caller backs off and tries again."""


class TransientError(RetryLater):
    pass


class RateLimited(RetryLater):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReauthRequired(SyncdError):
    """The link cannot sync until somebody grants access again."""


class AuthError(ReauthRequired):
    pass


class ConfigError(SyncdError):
    """A mistake in the configuration; the message names the file and key."""


class UserInputError(SyncdError):
    """The request itself is wrong; the message says how to fix it."""


class NotFoundInStore(UserInputError):
    pass


class AlreadyExists(UserInputError):
    pass


class NotAllowed(UserInputError):
    """The request is valid, but not for this caller (a token without the scope it needs)."""


class StaleRevision(UserInputError):
    def __init__(self, message: str, current_revision: int) -> None:
        super().__init__(message)
        self.current_revision = current_revision


class ConfirmationRequired(UserInputError):
    """Setting `available` while OOO blocks cover now needs `end_ooo_early`."""

    def __init__(self, message: str, block_ids: Sequence[str], until: datetime | None) -> None:
        super().__init__(message)
        self.block_ids = list(block_ids)
        self.until = until


class ConsentRefused(UserInputError):
    """Connecting a calendar in the browser stopped; ``reason`` names the case (``invalid``,
    ``expired``, ``used``, ``browser``, ``denied``, ``scope``, ``provider``, ``wrong_account``,
    ``unavailable``) and the message tells the person at the browser what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectorError(SyncdError):
    """A calendar refused or could not carry out one operation."""


class CursorExpired(ConnectorError):
    pass


class PreconditionFailed(ConnectorError):
    pass


class NotFound(ConnectorError):
    pass


class BadEventData(ConnectorError):
    pass


class Bug(SyncdError):
    pass
