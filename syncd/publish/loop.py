"""A private asyncio loop on a thread of its own, for sinks whose clients are asyncio (webhook, NATS)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ['LoopThread']

class LoopThread:
    """A private asyncio event loop in a daemon thread, for sinks whose client is asyncio:
    started on first use, so the synchronous, thread-safe `Sink` face can wait on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coroutine`` on the loop and wait for it; `TimeoutError` (after cancelling it) if
        it takes longer than ``timeout``."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout:g}s") from None

    def stop(self, last: Callable[[], Coroutine[Any, Any, None]] | None = None, timeout: float = 5.0) -> bool:
        """Run ``last`` on the loop (closing what lives there), then stop it; it starts again if
        used again. False if either did not finish within ``timeout``."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return True
        clean = True
        if last is not None:
            future = asyncio.run_coroutine_threadsafe(last(), loop)
            try:
                future.result(timeout)
            except Exception:  # noqa: BLE001 - closing is best effort; the loop still stops below
                future.cancel()
                clean = False
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        return clean and not thread.is_alive()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_run_loop, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


