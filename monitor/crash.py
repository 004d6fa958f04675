"""Test-only fault injection (RELIABILITY.md 3.0, G14).

``MONITOR_CRASH_AT=<point>`` makes the process die at that named point with
``os._exit(137)`` (the exit status of ``kill -9``): no finally blocks, no
flush, no commit, exactly what a killed process leaves behind.

``MONITOR_PAUSE_AT=<point>`` makes the process stop itself (SIGSTOP) the first
time it reaches the point, as a replica frozen by the OS would; the test
resumes it with SIGCONT. This is how a replica is made to hold a lease past
its expiry at a known place (RELIABILITY S18).

Points: ``after_fetch``, ``before_commit``, ``after_commit``,
``after_send_before_record``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

POINTS = ("after_fetch", "before_commit", "after_commit", "after_send_before_record")
_paused: set[str] = set()
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Die or pause here if the environment asks for it; otherwise do nothing."""
    if os.environ.get("MONITOR_CRASH_AT") == name:
        sys.stderr.write(f"MONITOR_CRASH_AT={name}: exiting with 137\n")
        sys.stderr.flush()
        os._exit(137)
    if os.environ.get("MONITOR_PAUSE_AT") == name:
        with _lock:
            if name in _paused:
                return
            _paused.add(name)
        sys.stderr.write(f"MONITOR_PAUSE_AT={name}: stopping pid {os.getpid()}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
