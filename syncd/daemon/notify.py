"""The systemd notification protocol (``sd_notify``): what a ``Type=notify`` unit listens to.

systemd sets ``NOTIFY_SOCKET`` to a Unix datagram socket: a path, or an abstract name written
with a leading ``@``. A message is one datagram of ``KEY=VALUE`` lines. syncd sends
``READY=1`` once the API and the scheduler run, ``WATCHDOG=1`` from a scheduler job every
half of ``WATCHDOG_USEC`` (when systemd asks for it), and ``STOPPING=1`` when it begins to stop.

Written here rather than taken from a package: the protocol is these few lines, the
``sdnotify`` package on PyPI has not been released since 2017, and ``systemd-python`` needs
libsystemd's headers to build. Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        where = env.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if where.startswith("@"):
            self.address = b"\0" + where[1:].encode()  # Linux's abstract namespace
        elif where.startswith("/"):
            self.address = where
        elif where:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket address; not notifying the service manager", where)
        self.watchdog_usec = _watchdog_usec(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings (half the manager's timeout), or None when none is asked for."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, *lines: str) -> bool:
        """Send one message (``"READY=1"``, ``"STATUS=…"``); False when it could not be sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._warned:  # once: a manager that went away is not news every 15 s
                log.warning("cannot notify the service manager at NOTIFY_SOCKET: %s", exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=stopping: finishing work in flight")


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """``WATCHDOG_USEC``, when it is meant for this process (``WATCHDOG_PID``, if set, is ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec)
