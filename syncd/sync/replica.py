"""Who this process is among the replicas, and whether a process that held leases is dead.

A link's lease names its holder twice: ``name`` (``host:pid``) for operators, and ``key`` for
this check. The key is ``<machine>:<pid>:<start>``: the machine is the kernel's boot id with
the PID namespace (two containers on one host, or one host before and after a reboot, are
different machines), and ``start`` is when the process started, in clock ticks since boot,
so that a PID used again by a later process (a restarted container's PID 1) is not mistaken
for the one that took the lease.

A replica killed with SIGKILL leaves its leases behind until they expire. A process of this
machine can see at once that the holder is gone and take them over; a holder on another
machine is judged by the lease's expiry alone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
from dataclasses import dataclass

__all__ = ["ProcessIdentity", "holder_is_dead", "this_process"]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    name: str  # host:pid, what `syncd links` shows
    key: str  # machine:pid:start, or "" where /proc cannot tell (then leases only expire)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


@functools.cache
def _machine() -> str | None:
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    if boot is None:
        return None
    return hashlib.sha256(f"{boot.strip()}|{namespace}".encode()).hexdigest()[:16]


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: when the process started (after the command, which may hold spaces)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def this_process() -> ProcessIdentity:
    pid = os.getpid()
    name = f"{socket.gethostname()}:{pid}"
    machine, start = _machine(), _start_ticks(pid)
    return ProcessIdentity(name, f"{machine}:{pid}:{start}" if machine and start else "")


def holder_is_dead(key: str | None) -> bool:
    """True only when ``key`` names a process of this machine that no longer runs."""
    if not key:
        return False
    machine, _, rest = key.partition(":")
    pid_text, _, start = rest.partition(":")
    if machine != _machine() or not pid_text.isdigit() or not start:
        return False  # another machine (or a key we cannot read): its lease expires by itself
    return _start_ticks(int(pid_text)) != start
