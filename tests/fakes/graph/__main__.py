"""``python -m tests.fakes.graph``: serve the fake until SIGTERM/SIGINT, after printing
``READY <base_url> <ca_bundle_path>``."""

from __future__ import annotations

import sys

from tests.fakes.graph.fake import main

if __name__ == "__main__":
    sys.exit(main())
