"""What the API's routers are built with: the service and its engines, and the scope checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncd.service import Syncd
from syncd.service.coverage import CoverageWatch
from syncd.service.directory import Directory
from syncd.service.metrics import Metrics
from syncd.service.onboarding import Onboarding
from syncd.service.push import PushChannels
from syncd.service.rotations import RotationEngine

__all__ = ["ApiContext"]


@dataclass(frozen=True)
class ApiContext:
    service: Syncd
    directory: Directory
    rotations: RotationEngine
    metrics: Metrics | None
    push: PushChannels | None
    scheduler_alive: Callable[[], bool]
    caller: Any  # a dependency answering who the caller is, or None; it refuses nobody
    read: Any  # the dependencies that let a token of that scope through (FastAPI `Depends`)
    write: Any
    admin: Any
    onboarding: Onboarding | None = None  # connect links; None: not offered
    coverage: CoverageWatch | None = None  # made from the service when not given
