"""``python -m tests.fakes.google_calendar``: serve the fake until SIGTERM/SIGINT, after printing
``READY <base_url>``."""

from __future__ import annotations

import sys

from tests.fakes.google_calendar.remote import main

if __name__ == "__main__":
    sys.exit(main())
