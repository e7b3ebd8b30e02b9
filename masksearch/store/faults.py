"""Fault injection for crash tests: the writer passes named crash points (after each file
write, fsync, rename or removal); a test can arm the N-th point to SIGKILL the process there.

Armed by ``arm(n)`` or the environment variable ``MASKSEARCH_CRASH_AT=n``; disarmed (the
default) a point only counts.
"""

from __future__ import annotations

import os
import signal
import threading

_lock = threading.Lock()
_armed = int(os.environ.get("MASKSEARCH_CRASH_AT", "0") or 0)
_hits = 0
_trace: list[str] | None = None


def arm(n: int, trace: bool = False) -> None:
    """Kill this process at the ``n``-th crash point from now (0: never); optionally record
    the names of the points passed (``trace()``)."""
    global _armed, _hits, _trace
    with _lock:
        _armed, _hits = int(n), 0
        _trace = [] if trace else None


def point(name: str) -> None:
    """A place where a crash must leave the database consistent."""
    global _hits
    with _lock:
        _hits += 1
        if _trace is not None:
            _trace.append(name)
        if _hits == _armed:
            os.kill(os.getpid(), signal.SIGKILL)


def trace() -> list[str]:
    """Names of the points passed since ``arm(..., trace=True)``."""
    return list(_trace or [])
