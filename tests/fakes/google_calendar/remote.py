"""A fake in another process: the ``python -m tests.fakes.google_calendar`` entry point, ``serve_in_subprocess``
that runs it, and the handle that drives it through the control namespace."""

from __future__ import annotations

import argparse
import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.google_calendar.common import _Endpoints
from tests.fakes.google_calendar.fake import FakeGoogleCalendar
from tests.fakes.http_support import call_control, ready_subprocess, serve_until_signalled


@dataclass
class RemoteFakeGoogleCalendar(_Endpoints):
    """A fake served by another process (see ``serve_in_subprocess``), driven through ``control``.

    ``ca_bundle_path`` is the bundle of its test CA when it serves HTTPS (empty for plain HTTP).
    """

    base_url: str
    ca_bundle_path: str = ""

    def control(self, command: str, **args: Any) -> Any:
        context = ssl.create_default_context(cafile=self.ca_bundle_path) if self.ca_bundle_path else None
        return call_control(self.base_url, command, args, context=context)


@contextlib.contextmanager
def serve_in_subprocess(latency: float = 0.0, *, port: int = 0, tls: bool = False,
                        startup_timeout: float = 30.0) -> Iterator[RemoteFakeGoogleCalendar]:
    """Run ``python -m tests.fakes.google_calendar`` and yield a handle once it printed ``READY <base_url>``
    (``READY <base_url> <ca_bundle_path>`` with ``tls``).

    The process is terminated (then killed if need be) when the block ends.
    """
    args = ["--port", str(port), "--latency", repr(latency), *(["--tls"] if tls else [])]
    with ready_subprocess("tests.fakes.google_calendar", args, startup_timeout=startup_timeout) as ready:
        yield RemoteFakeGoogleCalendar(ready[0], ready[1] if len(ready) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.google_calendar",
        description="Serve the fake Google Calendar API on 127.0.0.1 until SIGTERM/SIGINT; "
        "prints 'READY <base_url>' once serving. Drive it with POST /_fake/<command>.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every API and /token request waits")
    parser.add_argument("--token-lifetime", type=int, default=3600, help="expires_in of issued access tokens")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS; the READY line adds the CA bundle's path")
    args = parser.parse_args(argv)
    fake = FakeGoogleCalendar(latency=args.latency, token_lifetime=args.token_lifetime, tls=args.tls)
    return serve_until_signalled(lambda: fake.start(port=args.port), fake.stop,
                                 lambda: f"READY {fake.base_url} {fake.ca_bundle_path}".rstrip())

