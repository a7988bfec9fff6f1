"""How soon an edit in Google Calendar reaches syncd through a push notification.

    python -m bench.google_push [--quick] [--edits N]

Runs `syncd run` in-process (the daemon with its HTTP API) against the fake Google server,
with one user whose link has a live watch channel and a poll interval of one hour, so only
the notification can bring the change in. Then, N times: the person adds an OOO event in
Google; the fake POSTs the notification to ``/v1/hooks/google``; the time until the new
block is in syncd's store is measured.

Figures: ``push_to_block_median_s``, ``push_to_block_max_s``, ``edits``. The last line
printed is one JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncd.config import load_config
from syncd.daemon import Daemon, build_runtime
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.google_support import service_account_file
from tests.support import free_port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--edits", type=int)
    args = parser.parse_args(argv)
    edits = args.edits or (5 if args.quick else 30)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, FakeGoogleCalendar() as fake:
        root = Path(tmp)
        sa = service_account_file(root, fake)
        config = root / "syncd.toml"
        config.write_text(f"""
[daemon]
database_url = "sqlite:///{root}/syncd.db"
poll_interval = "1h"
log_level = "WARNING"
[api]
listen = "127.0.0.1:{port}"
[[accounts]]
name = "workspace"
provider = "google"
service_account_file = "{sa}"
api_endpoint = "{fake.api_endpoint}"
batch_uri = "{fake.batch_uri}"
push_url = "http://127.0.0.1:{port}/v1/hooks/google"
[[users]]
id = "alice"
email = "alice@example.com"
timezone = "Europe/Stockholm"
calendars = [{{ account = "workspace" }}]
""")
        rt = build_runtime(load_config(config))
        daemon = Daemon(rt)
        daemon.start()
        try:
            deadline = time.monotonic() + 30
            while (not fake.channels or rt.service.links()[0]["last_success"] is None) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not fake.channels:
                raise SystemExit("no push channel was opened")
            took: list[float] = []
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
            for n in range(edits):
                begin = start + timedelta(days=n)
                end = begin + timedelta(hours=4)
                fake.add_event("alice@example.com", "primary", {
                    "summary": f"Away {n}", "eventType": "outOfOffice",
                    "start": {"dateTime": begin.isoformat()}, "end": {"dateTime": end.isoformat()}})
                edited = time.monotonic()
                while len(rt.service.list_blocks("alice")) <= n:
                    if time.monotonic() - edited > 30:
                        raise SystemExit(f"edit {n} did not arrive within 30 s")
                    time.sleep(0.005)
                took.append(time.monotonic() - edited)
                print(f"edit {n + 1}: block after {took[-1]:.3f} s", flush=True)
        finally:
            daemon.stop()
    result = {"edits": edits, "push_to_block_median_s": round(statistics.median(took), 3),
              "push_to_block_max_s": round(max(took), 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
