"""syncd.daemon.heap against the real allocator (glibc here; elsewhere the calls are no-ops)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from syncd.daemon.heap import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="glibc only: malloc_trim and mallopt are glibc's")


def test_free_heap_pages_are_handed_back() -> None:
    """Freed blocks with a few survivors between them stay in glibc's heap until trimmed."""
    script = textwrap.dedent("""
        from syncd.daemon.heap import return_free_memory

        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

        blocks = [bytes(2000) for _ in range(50_000)]  # from malloc's heap, not pymalloc's
        survivors = blocks[::100]  # they keep the heap from shrinking at its top by itself
        del blocks
        before = rss_mb()
        released = return_free_memory()
        print(before, rss_mb(), released)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after, released = out.split()
    assert released == "True"
    assert float(before) - float(after) > 50  # of the ~100 MB freed


def test_arenas_are_limited_before_threads_start() -> None:
    script = "from syncd.daemon.heap import few_malloc_arenas; print(few_malloc_arenas())"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
