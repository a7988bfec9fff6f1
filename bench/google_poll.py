"""An incremental poll cycle over many Google Calendar users, batched and not.

    python -m bench.google_poll [--quick] [--users N] [--latency S] [--changed SHARE]

Starts the fake Google Calendar server in its own process (so its CPU is not ours), with N
users (default 10,000) each holding two OOO events, and syncd on a fresh SQLite database
with one two-way Google link per user, signing in through a service account. After a first
full sync (with the fake answering at once, to save time; it is not what is measured), the
fake adds ``--latency`` (default 50 ms) to every HTTP request, a share of the users
(default 1 %) edit an OOO event, and one poll cycle over every link is timed: the same
`LinkSyncer.sync_many` pass the daemon's poll job runs. Then the same again with batching
off (``batch_size = 1``: one HTTP request per calendar, from the same worker pool).

The fake enforces no quota; the account's request budget is raised to 1,000,000 a minute,
as a 10,000-user deployment would have Google raise it (the default, 10,000 a minute, is
used up by the first full sync of 10,000 users).

Figures: ``cycle_s`` (wall time of the batched cycle), ``requests`` and
``requests_per_user`` (top-level HTTP requests in that cycle; a batch is one), ``batch_parts``,
``floor_s`` (the same batch requests with the same parts, answered with empty change lists,
through the same client, nothing processed; see `bench.pollbench`), ``floor_requests``,
``floor_ratio`` (``cycle_s / floor_s``), ``unbatched_cycle_s``, ``unbatched_requests``,
``first_sync_s``, ``first_sync_per_user_ms``, ``peak_rss_mb``. The last line printed is one
JSON object with them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.pollbench import Provider, arguments, measure, report
from tests.connectors.google.support import private_key_pem
from tests.fakes.google_calendar import RemoteFakeGoogleCalendar, serve_in_subprocess

TZ = "Europe/Stockholm"


def _event(n: int, k: int, now: datetime) -> dict[str, Any]:
    start = (now + timedelta(days=3 + 7 * k + n % 7, hours=n % 9)).replace(minute=0, second=0, microsecond=0)
    return {"summary": f"Away {n}-{k}", "eventType": "outOfOffice",
            "start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
            "end": {"dateTime": (start + timedelta(hours=8)).isoformat(), "timeZone": "UTC"}}


def seed(fake: RemoteFakeGoogleCalendar, users: int, now: datetime) -> list[list[str]]:
    ids: list[list[str]] = []
    chunk: list[list[Any]] = []
    for n in range(users):
        chunk += [[f"u{n}@example.com", "primary", _event(n, k, now)] for k in range(2)]
        if len(chunk) >= 4000 or n == users - 1:
            made = fake.control("add_events", items=chunk)["ids"]
            ids += [made[i:i + 2] for i in range(0, len(made), 2)]
            chunk = []
    return ids


def write_config(root: Path, fake: RemoteFakeGoogleCalendar, users: int) -> Path:
    sa = root / "google-sa.json"
    sa.write_text(json.dumps({"type": "service_account", "project_id": "bench", "private_key_id": "k",
                              "private_key": private_key_pem(), "client_email": "syncd@bench.iam.gserviceaccount.com",
                              "client_id": "1", "token_uri": fake.token_uri}))
    lines = [f'[daemon]\ndatabase_url = "sqlite:///{root}/syncd.db"\nlog_level = "WARNING"\n',
             f'[[accounts]]\nname = "workspace"\nprovider = "google"\nservice_account_file = "{sa}"\n'
             f'api_endpoint = "{fake.api_endpoint}"\nbatch_uri = "{fake.batch_uri}"\n'
             'project_quota = 1000000\nuser_quota = 600\n']
    for n in range(users):
        lines.append(f'[[users]]\nid = "u{n}"\nemail = "u{n}@example.com"\ntimezone = "{TZ}"\n'
                     'calendars = [{ account = "workspace" }]\n')
    path = root / "syncd.toml"
    path.write_text("\n".join(lines))
    return path


def edit_some(fake: RemoteFakeGoogleCalendar, ids: list[list[str]], share: float, round_: int,
              now: datetime) -> int:
    step = max(1, round(1 / share))
    changed = 0
    for n in range(round_, len(ids), step):
        start = (now + timedelta(days=2, hours=round_ + 1)).replace(minute=0, second=0, microsecond=0)
        fake.control("edit_event", user=f"u{n}@example.com", calendar="primary", event_id=ids[n][0],
                     changes={"start": {"dateTime": start.isoformat(), "timeZone": "UTC"},
                              "end": {"dateTime": (start + timedelta(hours=3)).isoformat(), "timeZone": "UTC"}})
        changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__ or "", argv, "users")
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp, serve_in_subprocess(0.0) as fake:
        provider = Provider(
            fake=fake, account="workspace", people="users", requests_key="requests",
            first_sync_note=f"no latency, {args.users} service-account sign-ins",
            seed=lambda users, now: seed(fake, users, now),
            edit=lambda ids, share, round_, now: edit_some(fake, ids, share, round_, now),
            write_config=lambda root, users: write_config(root, fake, users),
            counts_detail=lambda counts: f"({counts['batch_parts']} batch parts)",
            batch_size=lambda connector: int(connector.options.batch_size))
        return report(measure(provider, Path(tmp), args))


if __name__ == "__main__":
    sys.exit(main())
