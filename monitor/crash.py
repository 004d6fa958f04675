"""Test-only crash injection (RELIABILITY.md 3.0, G14).

``MONITOR_CRASH_AT=<point>`` makes the process die at that named point with
``os._exit(137)`` (the exit status of ``kill -9``): no finally blocks, no
flush, no commit, exactly what a killed process leaves behind. Points:
``before_commit``, ``after_commit``, ``after_send_before_record``.
"""

from __future__ import annotations

import os
import sys

POINTS = ("before_commit", "after_commit", "after_send_before_record")


def crash_point(name: str) -> None:
    """Die here if the environment asks for it; otherwise do nothing."""
    if os.environ.get("MONITOR_CRASH_AT") == name:
        sys.stderr.write(f"MONITOR_CRASH_AT={name}: exiting with 137\n")
        sys.stderr.flush()
        os._exit(137)
