"""How `syncd run` keeps glibc's heap from creeping up over weeks (no-ops off glibc).

Two measures, both found with `bench.soak` (see the README):

- Few malloc arenas. glibc gives threads that allocate arenas of their own (up to eight per
  core), and those return memory poorly: the replica doing the syncing grew 20 % in 30
  minutes with them, 2.8 % with two.
- Free pages handed back. After a burst (a full poll pass, a sweep) the freed memory lies
  in holes inside the heap, which glibc keeps; RSS then climbs in steps to the highest burst
  seen. ``malloc_trim`` returns those pages to the system.
"""

from __future__ import annotations

import ctypes
import functools
import sys

__all__ = ["few_malloc_arenas", "return_free_memory"]

_M_ARENA_MAX = -8  # from malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - musl has no malloc_trim: treat it as not glibc
    except (OSError, AttributeError):
        return None
    return libc


def few_malloc_arenas(arenas: int = 2) -> bool:
    """Limit glibc to ``arenas`` malloc arenas; call before any thread starts. False if not glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, arenas))


def return_free_memory() -> bool:
    """Hand free heap pages back to the system. True if glibc released any."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
