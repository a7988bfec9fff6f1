"""How soon an edit in Google Calendar or Outlook reaches syncd through a push notification.

    python -m bench.push [--quick] [--edits N] [--provider google|outlook|both]

For each provider: runs `syncd run` in-process (the daemon with its HTTP API) against that
provider's fake server, with one user whose link has a live push channel (a Google watch
channel, a Graph subscription) and a poll interval of one hour, so only the notification can
bring a change in. Then, N times, the person adds an OOO event in their calendar; the fake
POSTs the notification to ``/v1/hooks/<provider>``; the time until the new block is in
syncd's store is measured.

Figures per provider: ``<provider>_median_s``, ``<provider>_max_s``; and ``edits``. The last
line printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.config import load_config
from syncd.daemon import Daemon
from syncd.daemon.runtime import build_runtime
from tests.connectors.google.support import account_toml as google_account_toml
from tests.connectors.outlook.support import account_toml as outlook_account_toml
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.fakes.graph import FakeGraph
from tests.support import free_port

EMAIL = "alice@example.com"

AddEvent = Callable[[int, datetime], None]


@contextlib.contextmanager
def google(root: Path, hook: str) -> Iterator[tuple[str, AddEvent, Callable[[], bool]]]:
    with FakeGoogleCalendar() as fake:
        account = google_account_toml(fake, root, name="cal", extra=f'push_url = "{hook}"\n')

        def add(n: int, start: datetime) -> None:
            fake.add_event(EMAIL, "primary", {
                "summary": f"Away {n}", "eventType": "outOfOffice", "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=4)).isoformat()}})
        yield account, add, lambda: bool(fake.channels)


@contextlib.contextmanager
def outlook(root: Path, hook: str) -> Iterator[tuple[str, AddEvent, Callable[[], bool]]]:
    with FakeGraph() as fake:
        account = outlook_account_toml(fake, name="cal", extra=f'push_url = "{hook}"\n')

        def add(n: int, start: datetime) -> None:
            fake.add_event(EMAIL, {
                "subject": f"Away {n}", "showAs": "oof",
                "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                "end": {"dateTime": (start + timedelta(hours=4)).replace(tzinfo=None).isoformat(), "timeZone": "UTC"}})
        yield account, add, lambda: bool(fake.subscriptions)


PROVIDERS = {"google": google, "outlook": outlook}


def measure(provider: str, edits: int) -> list[float]:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/v1/hooks/{provider}"
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, PROVIDERS[provider](Path(tmp), hook) as fake:
        account, add, subscribed = fake
        root = Path(tmp)
        config = root / "syncd.toml"
        config.write_text(f"""
[daemon]
database_url = "sqlite:///{root}/syncd.db"
poll_interval = "1h"
log_level = "WARNING"
[api]
listen = "127.0.0.1:{port}"
{account}
[[users]]
id = "alice"
email = "{EMAIL}"
timezone = "Europe/Stockholm"
calendars = [{{ account = "cal" }}]
""")
        rt = build_runtime(load_config(config))
        daemon = Daemon(rt)
        daemon.start()
        try:
            deadline = time.monotonic() + 30
            while (not subscribed() or rt.service.links()[0]["last_success"] is None) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not subscribed():
                raise SystemExit(f"{provider}: no push channel was opened")
            took: list[float] = []
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
            for n in range(edits):
                add(n, start + timedelta(days=n))
                edited = time.monotonic()
                while len(rt.service.list_blocks("alice")) <= n:
                    if time.monotonic() - edited > 30:
                        raise SystemExit(f"{provider}: edit {n} did not arrive within 30 s")
                    time.sleep(0.005)
                took.append(time.monotonic() - edited)
                print(f"{provider} edit {n + 1}: block after {took[-1]:.3f} s", flush=True)
            return took
        finally:
            daemon.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--edits", type=int)
    parser.add_argument("--provider", choices=("google", "outlook", "both"), default="both")
    args = parser.parse_args(argv)
    edits = args.edits or (5 if args.quick else 30)
    result: dict[str, float | int] = {"edits": edits}
    for provider in (("google", "outlook") if args.provider == "both" else (args.provider,)):
        took = measure(provider, edits)
        result[f"{provider}_median_s"] = round(statistics.median(took), 3)
        result[f"{provider}_max_s"] = round(max(took), 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
