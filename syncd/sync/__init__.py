"""The sync runner: keeps each calendar link and the user's blocks in step.

- `runner`: `LinkSyncer`, one pass over many links or over one;
- `listing`: many calendars listed together, and the links with nothing to do settled at once;
- `execute`: the reconcile plan of one link carried out, write by write;
- `schedule`: when each link is polled next, back-off, and logging failures once;
- `leases`: claiming links, and holding them while a replica works on them;
- `replica`: who this process is, and whether a lease's holder is still alive;
- `snapshot`: what a sync works from and what it reports.
"""

from __future__ import annotations

from syncd.sync.runner import LinkSyncer
from syncd.sync.snapshot import LinkOutcome

__all__ = ["LinkOutcome", "LinkSyncer"]
