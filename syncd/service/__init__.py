"""The service: the operations the CLI, the API and the daemon share.

Each public method is one transaction. Decisions are the core's (`syncd.core.availability`,
`syncd.core.reconcile`, `syncd.core.rotation`); the store does the reading and writing; this
layer loads, decides, and stores, with the status recorder turning every edit into the status
changes it causes, in the same transaction.
"""

from __future__ import annotations

from syncd.service.base import BlockInfo, StatusInfo, utc_now
from syncd.service.blocks import BlockOperations
from syncd.service.routes import RouteOperations
from syncd.service.status import StatusOperations
from syncd.service.users import UserOperations

__all__ = ["BlockInfo", "StatusInfo", "Syncd", "utc_now"]


class Syncd(UserOperations, BlockOperations, RouteOperations, StatusOperations):
    """Users and links, OOO blocks, status and routes, over one database."""
