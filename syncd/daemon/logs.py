"""Log lines as operators' tools read them: ``daemon.log_format = "text"`` (the default) or
``"json"``.

JSON is one object per line: ``time`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``,
``message``; ``user``, ``link`` and ``account`` where the log call gives them
(``extra={"user": ..., "link": ..., "account": ...}``: the sync runner does for every line
about one calendar link); and ``exc_info`` (the traceback, as one string) and ``stack_info``
when the record has them. Newlines inside a message or a traceback are escaped by JSON, so a
record is always exactly one line.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

__all__ = ["CONTEXT_FIELDS", "JsonFormatter", "setup_logging"]

CONTEXT_FIELDS = ("user", "link", "account")  # ids a log call may pass with ``extra=``
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Configure the root logger for one command: ``fmt`` is ``"text"`` or ``"json"``.

    In JSON, Python warnings and uncaught exceptions (in any thread) are logged too, so that
    nothing the process writes to stderr breaks a line-per-object reader."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A tick skipped because the previous one still runs is by design (coalescing), not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    root = logging.getLogger()
    if root.handlers:  # like `logging.basicConfig`: whoever configured logging first (a test runner) keeps it
        return
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
    if fmt != "json":
        return
    logging.captureWarnings(True)

    def uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        logging.getLogger("syncd").critical("uncaught exception: %s", exc, exc_info=(kind, exc, tb))

    def uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        thread = args.thread.name if args.thread is not None else "?"
        logging.getLogger("syncd").critical("uncaught exception in thread %s: %s", thread, args.exc_value,
                                            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = uncaught
    threading.excepthook = uncaught_in_thread
