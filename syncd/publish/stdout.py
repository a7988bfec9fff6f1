"""The stdout sink: one compact JSON line per event."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

from syncd.core.errors import TransientError
from syncd.core.events import encode
from syncd.core.text import one_line
from syncd.publish.sink import Sink

__all__ = ['StdoutSink']

class StdoutSink(Sink):
    """Writes each event as one compact JSON line (JSON Lines) and flushes."""

    def __init__(self, stream: TextIO | None = None, *, name: str = "stdout") -> None:
        self.name = name
        # Looked up now, not at import: tests and daemonisers replace sys.stdout.
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def deliver(self, event: Mapping[str, Any]) -> None:
        line = encode(event, ascii_only=True).decode("ascii") + "\n"
        with self._lock:  # one write + flush per line, so lines from several threads never interleave
            try:
                self._stream.write(line)
                self._stream.flush()
            except OSError as exc:
                raise TransientError(f"{self.name}: cannot write to output: {one_line(str(exc))}") from exc

    def close(self) -> None:
        # The stream belongs to whoever passed it (or to the process): flush, do not close.
        with self._lock:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                pass


